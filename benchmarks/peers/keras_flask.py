"""Peer: the seed projects' baseline, Flask calling Keras ``model.predict`` once per request.

Knobs: Flask's threaded development server (1 process, a thread per connection), TensorFlow with
``intra_op`` = ``--workers`` (default: one per core) and ``inter_op`` = 1, the version's ``model.keras``
(fp32; no ONNX, no batching), ``model.predict(x, verbose=0)`` per request. Preprocessing is imgserve's own
(``inference.preprocess``), so only the serving stack differs. Needs the ``train`` extra (TensorFlow).
"""

from __future__ import annotations

import os
from typing import Any

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


def create_app(keras_model: Any, card: Any) -> Any:
    from flask import Flask, jsonify, request

    from inference.errors import ImgServeError

    from .common import decode_to_pixels, predictions, to_input

    app = Flask(__name__)

    @app.errorhandler(ImgServeError)
    def _error(exc: ImgServeError) -> Any:
        return jsonify(exc.to_dict()), exc.http_status

    @app.post("/predict")
    def predict() -> Any:
        upload = request.files.get("image")
        data = upload.read() if upload is not None else request.get_data()
        x = to_input(decode_to_pixels(data, card)[None], card)
        probs = keras_model.predict(x, verbose=0)
        return jsonify(predictions(probs, card)[0])

    @app.get("/readyz")
    def readyz() -> Any:
        return jsonify({"status": "ready"})

    return app


def main() -> None:
    from .common import peer_parser, quiet_logs

    args = peer_parser(__doc__.splitlines()[0]).parse_args()
    quiet_logs()
    import logging

    import tensorflow as tf

    tf.config.threading.set_intra_op_parallelism_threads(args.workers)
    tf.config.threading.set_inter_op_parallelism_threads(1)
    import keras

    from inference.registry import Registry

    registry = Registry(args.models_dir)
    version = registry.resolve(args.model, args.version)
    card = registry.card(args.model, version)
    path = registry.version_dir(args.model, version) / "model.keras"
    model = keras.models.load_model(path, compile=False)
    h, w, c = card.preprocessing.shape
    import numpy as np

    model.predict(np.zeros((1, h, w, c), dtype=np.float32), verbose=0)  # build the predict function once
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # no access log line per request
    create_app(model, card).run(host=args.host, port=args.port, threaded=True, use_reloader=False)


if __name__ == "__main__":
    main()
