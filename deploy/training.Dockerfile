# The training image: the admin runner (`imgserve admin`) and the retrain Job (`imgserve retrain`) run from
# it; both need TensorFlow, which the serving image (the bento, `bentoml containerize`) never contains.
# Build from the repository root:
#   docker build -f deploy/training.Dockerfile -t registry.example.com/imgserve-train:0.1.0 .
# (training.Dockerfile.dockerignore keeps .venv, runs and data out of the context.) No Docker engine was
# available where this was written: tests/unit/test_k8s_manifests.py checks its COPY sources, extras and
# entry point, not a build.
FROM python:3.11-slim-bookworm

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/imgserve
COPY pyproject.toml README.md ./
COPY inference/ inference/
COPY serving/ serving/
COPY training/ training/
COPY export/ export/
COPY admin/ admin/
COPY imgserve/ imgserve/
# serve: the admin API's web stack (FastAPI, uvicorn, Jinja2) and ONNX Runtime for evaluation;
# train: TensorFlow, tf2onnx, onnx.
RUN pip install ".[serve,train]"

RUN useradd --create-home --uid 10001 --user-group imgserve \
    && mkdir -p /data && chown imgserve:imgserve /data
USER 10001
WORKDIR /home/imgserve
ENV IMGSERVE_DATA_DIR=/data

EXPOSE 3001
ENTRYPOINT ["imgserve"]
CMD ["admin", "--host", "0.0.0.0", "--port", "3001"]
