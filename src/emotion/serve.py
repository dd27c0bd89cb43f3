"""`emotion serve`: a web page to upload a photo and see its faces' emotions, and a JSON API
(POST /predict; OpenAPI schema at /openapi.json, interactive docs at /docs)."""
from __future__ import annotations

import base64
import threading
from pathlib import Path

from fastapi import FastAPI, File, HTTPException, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from emotion.data import CLASSES
from emotion.errors import EmotionError
from emotion.faces import FaceMode
from emotion.predict import IMAGE_SUFFIXES, Analyzer, annotate, encode_image, open_image

PAGE = Path(__file__).with_name("static") / "index.html"
MAX_PIXELS = 40_000_000  # decoding is the cost that grows with the image; 40 MP covers phone photos
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and headers around the file in the request body
FORMATS = ", ".join(s.lstrip(".").upper() for s in sorted(IMAGE_SUFFIXES - {".jpeg", ".tif"}))


class Box(BaseModel):
    x: int
    y: int
    w: int
    h: int


class FaceOut(BaseModel):
    box: Box = Field(description="the detected face in image pixels (the whole image for a face crop)")
    detector: str = Field(description="'haar' (found by the face detector) or 'whole' (image taken as one face)")
    emotion: str = Field(description=f"most likely of: {', '.join(CLASSES)}")
    confidence: float = Field(description="probability of `emotion`")
    probabilities: dict[str, float] = Field(description="all seven class probabilities (sum to 1)")


class PredictOut(BaseModel):
    filename: str | None
    width: int
    height: int
    faces: list[FaceOut] = Field(description="largest face first; empty when no face was found")
    runtime: str = Field(description="inference runtime that ran the model (onnxruntime, litert, keras...)")
    annotated_image: str | None = Field(None, description="data: URL of a JPEG with boxes and labels, "
                                                          "when annotated=true")


class ErrorOut(BaseModel):
    detail: str


def create_app(model: str | Path = "models/export", max_upload_mb: float = 10.0,
               analyzer: Analyzer | None = None) -> FastAPI:
    """The app, with the model loaded now so that a bad --model fails before the server starts."""
    analyzer = analyzer or Analyzer(model)
    max_bytes = int(max_upload_mb * 1024 * 1024)
    lock = threading.Lock()  # one request at a time through the detector and the model
    app = FastAPI(title="Facial emotion recognition", version="1", description=__doc__)
    app.state.analyzer = analyzer

    @app.middleware("http")
    async def reject_large_bodies(request: Request, call_next):
        length = request.headers.get("content-length", "")
        if request.url.path == "/predict" and length.isdigit() and int(length) > max_bytes + MULTIPART_OVERHEAD:
            return JSONResponse({"detail": _too_large(int(length), max_bytes)}, status_code=413)
        return await call_next(request)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def page() -> str:
        return PAGE.read_text(encoding="utf-8").replace("{{MAX_MB}}", f"{max_upload_mb:g}")

    @app.get("/health")
    def health() -> dict:
        return {"status": "ok", "model": analyzer.model_name, "runtime": analyzer.runtime}

    @app.post("/predict", response_model=PredictOut,
              responses={413: {"model": ErrorOut, "description": "upload over the size limit"},
                         415: {"model": ErrorOut, "description": "upload is not a readable image"}})
    def predict(file: UploadFile = File(description=f"the photo ({FORMATS})"),
                annotated: bool = Query(False, description="also return the annotated image"),
                faces: FaceMode = Query("auto", description="auto: images up to 128 px are face crops, "
                                                            "larger ones are searched; detect; whole")):
        data = file.file.read(max_bytes + 1)
        if len(data) > max_bytes:
            raise HTTPException(413, _too_large(len(data), max_bytes))
        image = _decode(data, file.filename)
        with lock:
            results = analyzer.analyze([image], faces)[0]
        picture = None
        if annotated:
            jpeg = encode_image(annotate(image, results, max_side=1280), ".jpg", quality=85)
            picture = "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")
        return PredictOut(filename=file.filename, width=image.width, height=image.height,
                          faces=[r.as_dict() for r in results], runtime=analyzer.runtime, annotated_image=picture)

    return app


def _decode(data: bytes, filename: str | None):
    name = filename or "upload"
    if not data:
        raise HTTPException(422, f"{name}: the upload is empty; choose a photo file")
    try:
        image = open_image(data, name)
    except EmotionError as err:
        raise HTTPException(415, f"{err}; upload a photo ({FORMATS})") from None
    if image.width * image.height > MAX_PIXELS:
        raise HTTPException(413, f"{name}: {image.width}×{image.height} pixels is over the "
                                 f"{MAX_PIXELS // 1_000_000} MP limit; resize the photo")
    return image


def _too_large(size: int, limit: int) -> str:
    return (f"upload is {size / 1048576:.1f} MB, over the {limit / 1048576:g} MB limit; "
            "send a smaller photo (or start the server with a larger --max-upload-mb)")


def run(model: str | Path, host: str, port: int, max_upload_mb: float) -> None:
    import uvicorn

    app = create_app(model, max_upload_mb)
    print(f"serving {model} ({app.state.analyzer.runtime}) on http://{host}:{port}/  (API docs: /docs)",
          flush=True)
    uvicorn.run(app, host=host, port=port, log_level="warning")
