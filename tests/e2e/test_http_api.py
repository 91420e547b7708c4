"""The HTTP API of a real ``bentoml serve .`` process: predictions, bad inputs, metadata, probes, metrics."""

from __future__ import annotations

import time
from collections.abc import Iterator

import httpx
import pytest

from serving.metrics import METRIC_NAMES
from tests.e2e.conftest import Server, tiny_server
from tests.e2e.images import animated_gif, exif_rotated_pngs, png_bomb, truncated_jpeg
from tests.fixtures import encode_image, sample_image

pytestmark = pytest.mark.e2e

TOKEN = "s3cret-token"
MAX_IMAGE_BYTES = 300_000


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with tiny_server(
        tmp_path_factory, "http-api", poll_interval_s=0, max_batch_images=8, max_image_bytes=MAX_IMAGE_BYTES, admin_token=TOKEN,
        lanes=2, decode_threads=2,
    ) as srv:
        yield srv


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[httpx.Client]:
    with server.client() as c:
        yield c


def png(mode: str = "RGB", size: tuple[int, int] = (64, 48), seed: int = 0) -> bytes:
    return encode_image(sample_image(size, mode, seed), "PNG")


def check_prediction(body: dict, k: int = 5) -> None:
    assert body["model"] == {"name": "tiny", "version": 1, "variant": "int8"}
    assert body["label"].startswith("class_") and 0.0 < body["score"] <= 1.0
    assert len(body["top_k"]) == k and body["top_k"][0] == {"label": body["label"], "score": body["score"]}
    scores = [t["score"] for t in body["top_k"]]
    assert scores == sorted(scores, reverse=True)


def check_error(resp: httpx.Response, status: int, *words: str) -> dict:
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"error", "type"}, body
    text = body["error"].lower()
    for word in words:
        assert word.lower() in text, f"{word!r} not in {body['error']!r}"
    assert "traceback" not in resp.text.lower() and "/tmp" not in resp.text and ".py" not in resp.text
    return body


# ---- good inputs -------------------------------------------------------------------------------------
@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA"])
@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_predict_multipart(client: httpx.Client, mode: str, fmt: str) -> None:
    if fmt == "JPEG" and mode == "RGBA":
        pytest.skip("JPEG has no alpha")
    data = encode_image(sample_image(mode=mode), fmt)
    resp = client.post("/predict", files={"image": (f"x.{fmt.lower()}", data, f"image/{fmt.lower()}")})
    assert resp.status_code == 200, resp.text
    check_prediction(resp.json())


def test_predict_raw_body_and_file_field(client: httpx.Client) -> None:
    data = encode_image(sample_image(), "JPEG")
    raw = client.post("/predict", content=data, headers={"content-type": "image/jpeg"})
    octet = client.post("/predict", content=data, headers={"content-type": "application/octet-stream"})
    field = client.post("/predict", files={"file": ("x.jpg", data, "image/jpeg")})
    for resp in (raw, octet, field):
        assert resp.status_code == 200, resp.text
        check_prediction(resp.json())
    assert raw.json() == octet.json() == field.json()


def test_top_k_from_query_and_form(client: httpx.Client) -> None:
    files = {"image": ("x.png", png(), "image/png")}
    check_prediction(client.post("/predict?top_k=2", files=files).json(), k=2)
    check_prediction(client.post("/predict", files=files, data={"top_k": "3"}).json(), k=3)
    check_prediction(client.post("/predict?top_k=500", files=files).json(), k=10)  # capped at the classes


def test_exif_orientation_is_applied(client: httpx.Client) -> None:
    tagged, upright, untagged = exif_rotated_pngs()

    def probs(data: bytes) -> list[float]:
        resp = client.post("/predict?top_k=10", content=data, headers={"content-type": "image/png"})
        assert resp.status_code == 200, resp.text
        return [t["score"] for t in sorted(resp.json()["top_k"], key=lambda t: t["label"])]

    assert probs(tagged) == pytest.approx(probs(upright), abs=1e-6)
    assert probs(tagged) != pytest.approx(probs(untagged), abs=1e-6)


def test_exif_rotated_jpeg(client: httpx.Client) -> None:
    from PIL import Image

    exif = Image.Exif()
    exif[0x0112] = 8
    data = encode_image(sample_image((60, 30)), "JPEG", exif=exif.tobytes())
    resp = client.post("/predict", content=data, headers={"content-type": "image/jpeg"})
    assert resp.status_code == 200
    check_prediction(resp.json())


def test_predict_batch(client: httpx.Client) -> None:
    images = [png(seed=i) for i in range(3)] + [encode_image(sample_image(mode="L"), "JPEG")]
    files = [("images", (f"{i}.img", d, "application/octet-stream")) for i, d in enumerate(images)]
    resp = client.post("/predict_batch?top_k=2", files=files)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["model"] == {"name": "tiny", "version": 1, "variant": "int8"}
    assert len(body["predictions"]) == 4
    single = client.post("/predict?top_k=2", files={"image": ("0.png", images[0], "image/png")}).json()
    first = body["predictions"][0]
    assert first["label"] == single["label"] and first["score"] == pytest.approx(single["score"], abs=1e-6)
    assert all(len(p["top_k"]) == 2 for p in body["predictions"])


# ---- bad inputs: each a clear 4xx, JSON, no internals ------------------------------------------------
def raw(client: httpx.Client, data: bytes, ctype: str = "image/png", path: str = "/predict") -> httpx.Response:
    return client.post(path, content=data, headers={"content-type": ctype})


def test_empty_body(client: httpx.Client) -> None:
    check_error(raw(client, b""), 400, "empty")
    check_error(client.post("/predict", files={"image": ("x.png", b"", "image/png")}), 400, "empty")


def test_not_an_image(client: httpx.Client) -> None:
    check_error(raw(client, b"hello, this is text"), 400, "not a recognised image")


def test_truncated_jpeg(client: httpx.Client) -> None:
    check_error(raw(client, truncated_jpeg(), "image/jpeg"), 400, "truncated")


def test_decompression_bomb(client: httpx.Client) -> None:
    bomb = png_bomb(6000, 6000)  # 35 KB that would inflate to 36 MB
    assert len(bomb) < 100_000
    check_error(raw(client, bomb), 413, "6000x6000", "limit")


def test_huge_dimensions_refused_before_decoding(client: httpx.Client) -> None:
    # Only one row of pixel data is present: had the server tried to decode, it would say "truncated".
    check_error(raw(client, png_bomb(100_000, 100_000, full=False)), 413, "dimensions", "too large")
    check_error(raw(client, png_bomb(20_000, 10, full=False)), 413, "20000x10", "a side")


def test_animated_gif(client: httpx.Client) -> None:
    check_error(raw(client, animated_gif(), "image/gif"), 400, "animated")


def test_unsupported_content_type(client: httpx.Client) -> None:
    check_error(raw(client, b'{"image": "..."}', "application/json"), 415, "content-type", "multipart", "image/*")
    check_error(raw(client, png(), "image/png", "/predict_batch"), 415, "multipart", "images")


def test_wrong_multipart_field(client: httpx.Client) -> None:
    check_error(client.post("/predict", files={"picture": ("x.png", png(), "image/png")}), 400, "'image'", "'picture'")
    check_error(client.post("/predict", data={"image": "not a file"}, files={"x": ("x", b"1")}), 400, "file upload")
    batch = [("image", ("x.png", png(), "image/png"))]
    check_error(client.post("/predict_batch", files=batch), 400, "'images'")


def test_two_images_to_predict(client: httpx.Client) -> None:
    files = [("image", ("a.png", png(), "image/png")), ("image", ("b.png", png(), "image/png"))]
    check_error(client.post("/predict", files=files), 400, "one image", "/predict_batch")


@pytest.mark.parametrize("bad", ["abc", "0", "-3", "1.5", "99999"])
def test_bad_top_k(client: httpx.Client, bad: str) -> None:
    check_error(client.post(f"/predict?top_k={bad}", files={"image": ("x.png", png(), "image/png")}), 400, "top_k")


def test_too_many_images(client: httpx.Client) -> None:
    files = [("images", (f"{i}.png", png(seed=i), "image/png")) for i in range(9)]
    check_error(client.post("/predict_batch", files=files), 400, "too many", "8")


def test_bad_image_in_batch_names_it(client: httpx.Client) -> None:
    files = [("images", ("a.png", png(), "image/png")), ("images", ("b.png", b"garbage", "image/png"))]
    check_error(client.post("/predict_batch", files=files), 400, "image 1", "not a recognised image")


def test_body_over_the_limit(client: httpx.Client) -> None:
    big = b"\xff" * (MAX_IMAGE_BYTES + 1)
    check_error(raw(client, big, "image/jpeg"), 413, "limit", str(MAX_IMAGE_BYTES))
    check_error(client.post("/predict", files={"image": ("x.jpg", big * 2, "image/jpeg")}), 413, "limit")


def test_malformed_multipart(client: httpx.Client) -> None:
    resp = raw(client, b"--xyz\r\nnonsense", "multipart/form-data")  # no boundary parameter
    check_error(resp, 400, "multipart")


# ---- the rest of the surface -------------------------------------------------------------------------
def test_model_metadata(client: httpx.Client) -> None:
    body = client.get("/model").json()
    assert body["name"] == "tiny" and body["version"] == 1 and body["variant"] == "int8"
    assert body["labels"] == [f"class_{i}" for i in range(10)]
    assert body["preprocessing"]["height"] == 28 and body["preprocessing"]["channels"] == 1
    assert "metrics" in body and body["created_at"]


def test_reload_needs_the_token(client: httpx.Client) -> None:
    resp = client.post("/reload")
    check_error(resp, 401, "authorization: bearer")
    assert resp.headers["www-authenticate"] == "Bearer"
    check_error(client.post("/reload", headers={"authorization": "Bearer nope"}), 401)
    ok = client.post("/reload", headers={"authorization": f"Bearer {TOKEN}"})
    assert ok.status_code == 200 and ok.json()["version"] == 1 and ok.json()["changed"] is False


def test_probes(client: httpx.Client) -> None:
    assert client.get("/livez").status_code == 200
    assert client.get("/readyz").status_code == 200


def test_metrics_expose_custom_names(client: httpx.Client) -> None:
    client.post("/predict", files={"image": ("x.png", png(), "image/png")})
    assert client.post("/predict", content=b"not an image", headers={"Content-Type": "image/png"}).status_code == 400
    text = client.get("/metrics").text
    missing = [name for name in METRIC_NAMES if f"\n{name}" not in text and not text.startswith(name)]
    assert not missing, missing
    assert 'imgserve_model_info{model="tiny",provider="CPUExecutionProvider",variant="int8",version="1"} 1.0' in text
    assert 'imgserve_requests_total{endpoint="/predict",protocol="http",status="200"}' in text
    assert 'imgserve_requests_total{endpoint="/predict",protocol="http",status="400"}' in text


def test_one_log_line_per_request(server: Server, client: httpx.Client) -> None:
    before = server.log_text().count('"path":"/model"')
    client.get("/model")
    for _ in range(20):  # the log is written by another process
        if server.log_text().count('"path":"/model"') == before + 1:
            break
        time.sleep(0.05)
    assert server.log_text().count('"path":"/model"') == before + 1
    assert '"status":200' in server.log_text()


def test_still_serving_and_no_500s(server: Server, client: httpx.Client) -> None:
    """Runs last in this module: after every bad input above, the server answers normally and never 500'd."""
    resp = client.post("/predict", files={"image": ("x.png", png(), "image/png")})
    assert resp.status_code == 200
    text = client.get("/metrics").text
    assert 'status="500"' not in text
    assert "Traceback" not in server.log_text()


def test_idle_keep_alive_connections_outlive_the_clients_own_idle_timeout(server: Server) -> None:
    """The server keeps an idle connection open longer than clients do (IMGSERVE_KEEP_ALIVE_S, 120 s), instead
    of uvicorn's 5 s under BentoML: a client reusing a pooled connection must never race the server closing
    it (the cause of the hot-swap test's rare ReadError; serving/keepalive.py)."""
    assert "HTTP keep-alive: 120 s" in server.log_text()
    limits = httpx.Limits(max_connections=1, keepalive_expiry=60)  # this client would reuse it for 60 s
    with server.client(limits=limits) as c:

        def local_port() -> int:
            resp = c.post("/predict", content=png(), headers={"content-type": "image/png"})
            assert resp.status_code == 200, resp.text
            return resp.extensions["network_stream"].get_extra_info("client_addr")[1]

        first = local_port()
        time.sleep(6.5)  # idle past uvicorn's (and httpx's) 5 s default
        # httpx checks an idle pooled connection before reusing it: had the server closed it, this would be a new one
        assert local_port() == first
