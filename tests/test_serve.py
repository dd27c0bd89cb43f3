"""`emotion serve`: the JSON API (200 and 4xx) and the upload page driven in headless Chromium."""
import base64
import io
import socket
import threading
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from PIL import Image

from emotion.data import CLASSES
from emotion.errors import EmotionError
from emotion.serve import create_app
from conftest import skip_or_fail
from inference_fixtures import photos, tiny_export  # noqa: F401

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run"]


@pytest.fixture(scope="module")
def app(tiny_export):  # noqa: F811
    return create_app(tiny_export, max_upload_mb=1)


@pytest.fixture(scope="module")
def client(app):
    return TestClient(app)


def _post(client, path, content_type="image/jpeg", query=""):
    with open(path, "rb") as handle:
        return client.post(f"/predict{query}", files={"file": (Path(path).name, handle, content_type)})


def test_predict_returns_faces_as_json(client, photos):  # noqa: F811
    response = _post(client, photos["face.jpg"])
    assert response.status_code == 200
    body = response.json()
    assert (body["filename"], body["width"], body["height"], body["runtime"]) == ("face.jpg", 512, 600, "onnxruntime")
    (face,) = body["faces"]
    assert set(face) == {"box", "detector", "emotion", "confidence", "probabilities"}
    assert list(face["probabilities"]) == list(CLASSES) and face["emotion"] in CLASSES
    assert sum(face["probabilities"].values()) == pytest.approx(1, abs=1e-3)
    assert body["annotated_image"] is None


def test_annotated_image_is_a_jpeg_of_the_photo(client, photos):  # noqa: F811
    body = _post(client, photos["face.jpg"], query="?annotated=true").json()
    prefix = "data:image/jpeg;base64,"
    assert body["annotated_image"].startswith(prefix)
    with Image.open(io.BytesIO(base64.b64decode(body["annotated_image"][len(prefix):]))) as image:
        assert image.format == "JPEG" and image.size == (512, 600)


def test_crop_and_no_face(client, photos):  # noqa: F811
    crop = _post(client, photos["crop.png"], "image/png").json()
    assert [f["detector"] for f in crop["faces"]] == ["whole"]
    assert _post(client, photos["noface.jpg"]).json()["faces"] == []


def test_not_an_image_is_415(client, photos):  # noqa: F811
    for name in ("notes.txt", "corrupt.jpg"):
        response = _post(client, photos[name], "text/plain")
        assert response.status_code == 415
        assert name in response.json()["detail"] and "upload a photo" in response.json()["detail"]


def test_too_large_is_413(client):
    for size in (1_100_000, 3_000_000):  # under the header pre-check's slack, then over it
        response = client.post("/predict", files={"file": ("big.jpg", b"\xff" * size, "image/jpeg")})
        assert response.status_code == 413 and "over the 1 MB limit" in response.json()["detail"]


def test_missing_or_empty_file_and_bad_option_are_422(client, photos):  # noqa: F811
    assert client.post("/predict").status_code == 422
    empty = client.post("/predict", files={"file": ("e.jpg", b"", "image/jpeg")})
    assert empty.status_code == 422 and "empty" in empty.json()["detail"]
    assert _post(client, photos["face.jpg"], query="?faces=everything").status_code == 422


def test_openapi_schema_documents_predict(client):
    schema = client.get("/openapi.json").json()
    responses = schema["paths"]["/predict"]["post"]["responses"]
    assert {"200", "413", "415", "422"} <= set(responses)
    assert {"faces", "width", "height", "annotated_image"} <= set(schema["components"]["schemas"]["PredictOut"]["properties"])
    assert client.get("/health").json()["status"] == "ok"


def test_page_and_bad_model(client, tmp_path):
    page = client.get("/")
    assert page.status_code == 200 and 'type="file"' in page.text and "up to 1 MB" in page.text
    with pytest.raises(EmotionError, match="model not found"):
        create_app(tmp_path / "missing")


@pytest.fixture(scope="module")
def server_url(app):
    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    server.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def browser_page():
    if not CHROMIUM.exists():
        skip_or_fail(f"{CHROMIUM} not found: install Debian's chromium (apt-get install -y chromium) for the browser test")
    try:
        from playwright import sync_api
    except ImportError:
        skip_or_fail("playwright is not installed (make setup-test installs it)")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        yield browser.new_page(viewport={"width": 1100, "height": 760})
        browser.close()


def test_page_in_a_browser_shows_the_result(browser_page, server_url, photos):  # noqa: F811
    page = browser_page
    page.goto(server_url)
    assert page.locator("#output").is_hidden()
    page.set_input_files("#file", str(photos["face.jpg"]))
    page.click("#submit")
    page.wait_for_selector("#output:not([hidden]) .face", timeout=15_000)
    assert page.eval_on_selector("#result", "img => img.complete && img.naturalWidth") == 512
    assert page.locator(".face h2").inner_text().startswith("Face 1: ")
    widths = page.eval_on_selector_all(".bar", "bars => bars.map(b => parseFloat(b.style.width))")
    assert len(widths) == 7 and sum(widths) == pytest.approx(100, abs=1)
    assert page.locator("#error").inner_text() == ""


def test_page_in_a_browser_explains_a_bad_upload(browser_page, server_url, photos):  # noqa: F811
    page = browser_page
    page.goto(server_url)
    page.set_input_files("#file", str(photos["notes.txt"]))
    page.click("#submit")
    page.wait_for_function("document.querySelector('#error').textContent.length > 0", timeout=15_000)
    assert "not an image" in page.locator("#error").inner_text()
    assert page.locator("#output").is_hidden()
