"""`emotion serve`: a web page to upload a photo and see its faces' emotions, and a JSON API
(POST /predict; OpenAPI schema at /openapi.json, interactive docs at /docs)."""
from __future__ import annotations

import asyncio
import base64
import contextlib
import errno
import socket
import threading
import time
from pathlib import Path

import anyio
from fastapi import FastAPI, File, HTTPException, Query, UploadFile
from fastapi.exceptions import RequestValidationError
from fastapi.concurrency import run_in_threadpool
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import HTMLResponse, JSONResponse
from pydantic import BaseModel, Field

from emotion.data import CLASSES
from emotion.detectors import DEFAULT_DETECTOR
from emotion.errors import EmotionError
from emotion.faces import DEFAULT_ALIGN, FaceMode
from emotion.images import ImageTooLarge, image_size, open_image
from emotion.analyzer import DEFAULT_TTA, Analyzer
from emotion.drawing import annotate, encode_image
from emotion.predict import IMAGE_SUFFIXES

PAGE = Path(__file__).with_name("static") / "index.html"
MAX_UPLOAD_MB = 10.0
MAX_MEGAPIXELS = 40.0  # decoding is the cost that grows with the image; 40 MP covers phone photos
CONCURRENCY = 2  # photos decoded and analysed at once (the reference machine has 2 cores)
QUEUE = 32  # uploads waiting for a turn beyond those; room for 32 clients one request each
RETRY_AFTER_S = 1
UPLOAD_TIMEOUT_S = 60.0  # for the whole body: a client that trickles it in cannot hold a place for ever
MULTIPART_OVERHEAD = 64 * 1024  # form boundaries and headers around the file in the request body
LOOPBACK = ("127.0.0.1", "::1", "localhost")
CLOSE = {"Connection": "close"}  # on a refusal with the body unread: the server hangs up instead of reading the rest
FORMATS = ", ".join(s.lstrip(".").upper() for s in sorted(IMAGE_SUFFIXES - {".jpeg", ".jpe", ".jfif", ".tif"}))


class Box(BaseModel):
    x: int
    y: int
    w: int
    h: int


class FaceOut(BaseModel):
    box: Box = Field(description="the detected face in image pixels (the whole image for a face crop)")
    detector: str = Field(description="the face detector that found it ('blazeface', 'haar', ...) or 'whole' "
                                      "(image taken as one face)")
    emotion: str = Field(description=f"most likely of: {', '.join(CLASSES)}")
    confidence: float = Field(description="probability of `emotion`")
    probabilities: dict[str, float] = Field(description="all seven class probabilities (sum to 1)")


class SkippedFaceOut(BaseModel):
    box: Box = Field(description="the face the detector found, in image pixels")
    detector: str = Field(description="the face detector that found it")
    reason: str = Field(description="why it was not classified: its size against the detector's minimum")


class PredictOut(BaseModel):
    filename: str | None
    width: int
    height: int
    faces: list[FaceOut] = Field(description="largest face first; empty when no face was found")
    skipped_faces: list[SkippedFaceOut] = Field(default_factory=list,
                                                description="faces found but below the detector's minimum size, "
                                                            "largest first: reported, not classified")
    detector: str = Field(description="the face detector that searched the photo (blazeface, haar...)")
    reason: str | None = Field(None, description="why `faces` is empty (no face found, and the smallest size "
                                                 "looked for; or every face found too small); null when faces "
                                                 "were found")
    runtime: str = Field(description="inference runtime that ran the model (onnxruntime, litert, keras...)")
    annotated_image: str | None = Field(None, description="data: URL of a JPEG with boxes and labels, "
                                                          "when annotated=true")


class ErrorOut(BaseModel):
    detail: str


class Admission:
    """How many POST /predict are in progress (body streaming in, queued or running), out of `capacity`."""

    def __init__(self, capacity: int):
        self.capacity, self.active = capacity, 0


class PixelBudget:
    """At most `total` pixels decoded and analysed at once: a large photo waits for room (one alone
    always fits), so memory stays bounded whatever mix of photo sizes arrives."""

    def __init__(self, total: int):
        self.total = self.free = total
        self._changed = threading.Condition()

    @contextlib.contextmanager
    def hold(self, pixels: int):
        pixels = min(pixels, self.total)
        with self._changed:
            self._changed.wait_for(lambda: self.free >= pixels)
            self.free -= pixels
        try:
            yield
        finally:
            with self._changed:
                self.free += pixels
                self._changed.notify_all()


class Guard:
    """ASGI middleware. Every request body is cut off at the upload limit as it streams in, chunked
    or not (413), or when it has taken `upload_timeout_s` (408): nothing more is read or stored.
    POST /predict is turned away with 503 + Retry-After, its body unread, while
    `admission.capacity` of them are in progress."""

    def __init__(self, app, max_bytes: int, admission: Admission, upload_timeout_s: float = UPLOAD_TIMEOUT_S):
        self.app, self.max_bytes, self.admission, self.upload_timeout_s = app, max_bytes, admission, upload_timeout_s

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length", b"")
        if length.isdigit() and int(length) > self.max_bytes + MULTIPART_OVERHEAD:
            return await _error(413, _too_large(int(length), self.max_bytes), CLOSE)(scope, receive, send)
        if scope["method"] != "POST" or scope["path"] != "/predict":
            return await self.app(scope, self._limited(receive), send)
        if self.admission.active >= self.admission.capacity:
            busy = (f"busy: {self.admission.capacity} uploads already in progress; "
                    f"retry in {RETRY_AFTER_S} s (or start the server with a larger --queue)")
            return await _error(503, busy, {"Retry-After": str(RETRY_AFTER_S), **CLOSE})(scope, receive, send)
        self.admission.active += 1
        try:
            await self.app(scope, self._limited(receive), send)
        finally:
            self.admission.active -= 1

    def _limited(self, receive):
        received, complete, deadline = 0, False, time.monotonic() + self.upload_timeout_s

        async def limited_receive():  # FastAPI passes an HTTPException raised here on as it is
            nonlocal received, complete
            if complete:
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), max(0.0, deadline - time.monotonic()))
            except asyncio.TimeoutError:
                raise HTTPException(408, f"upload took over {self.upload_timeout_s:g} s; send it again over a "
                                         "faster connection", CLOSE) from None
            received, complete = received + len(message.get("body", b"")), not message.get("more_body", False)
            if received > self.max_bytes + MULTIPART_OVERHEAD:
                raise HTTPException(413, _too_large(received, self.max_bytes, so_far=True), CLOSE)
            return message

        return limited_receive


def create_app(model: str | Path = "models/export", max_upload_mb: float = MAX_UPLOAD_MB,
               analyzer: Analyzer | None = None, max_megapixels: float = MAX_MEGAPIXELS,
               concurrency: int = CONCURRENCY, queue: int = QUEUE, cors_origins: list[str] | None = None,
               upload_timeout_s: float = UPLOAD_TIMEOUT_S, detector: str = DEFAULT_DETECTOR,
               tta: str = DEFAULT_TTA, align: bool = DEFAULT_ALIGN) -> FastAPI:
    """The app, with the model loaded now so that a bad --model fails before the server starts."""
    _check_limits(max_upload_mb, max_megapixels, concurrency, queue)
    analyzer = analyzer or Analyzer(model, detector=detector, tta=tta, align=align)
    max_bytes, max_pixels = int(max_upload_mb * 1024 * 1024), int(max_megapixels * 1_000_000)
    admission, slots = Admission(concurrency + queue), anyio.Semaphore(concurrency)
    budget, lock = PixelBudget(max_pixels), threading.Lock()  # the lock: detector and model, one at a time
    app = FastAPI(title="Facial emotion recognition", version="1", description=__doc__)
    app.state.analyzer, app.state.admission = analyzer, admission
    app.add_middleware(Guard, max_bytes=max_bytes, admission=admission, upload_timeout_s=upload_timeout_s)
    if cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(cors_origins), allow_methods=["GET", "POST"])
    page = PAGE.read_text(encoding="utf-8").replace("{{MAX_MB}}", f"{max_upload_mb:g}")

    @app.exception_handler(RequestValidationError)
    async def one_line_validation_error(request, error: RequestValidationError) -> JSONResponse:
        """FastAPI's list of errors as one line, with how to send the photo when the `file` field is missing."""
        first = error.errors()[0]
        where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
        how = "; send the photo as the multipart field 'file', e.g. curl -F file=@photo.jpg" if where == "file" else ""
        return JSONResponse({"detail": f"{where}: {first.get('msg', 'invalid')}{how}"}, status_code=422)

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def index() -> str:
        return page

    @app.get("/health")
    async def health() -> dict:  # async: answered on the event loop, never queued behind the analysis threads
        return {"status": "ok", "model": analyzer.model_name, "runtime": analyzer.runtime,
                "in_progress": admission.active, "capacity": admission.capacity}

    @app.post("/predict", response_model=PredictOut,
              responses={408: {"model": ErrorOut, "description": f"upload took over {UPLOAD_TIMEOUT_S:g} s"},
                         413: {"model": ErrorOut, "description": "upload or image over the size limit"},
                         415: {"model": ErrorOut, "description": "upload is not a readable image"},
                         503: {"model": ErrorOut, "description": "too many uploads in progress; see Retry-After"}})
    async def predict(file: UploadFile = File(description=f"the photo ({FORMATS})"),
                      annotated: bool = Query(False, description="also return the annotated image"),
                      faces: FaceMode = Query("auto", description="auto: images up to 128 px are face crops, "
                                                                  "larger ones are searched; detect; whole")):
        async with slots:
            return await run_in_threadpool(analyze_upload, file, annotated, faces)

    def analyze_upload(file: UploadFile, annotated: bool, faces: FaceMode) -> PredictOut:
        data, name = _read(file, max_bytes)
        with _refusals():
            width, height = image_size(data, name, max_pixels)
        with budget.hold(width * height):
            with _refusals():
                image = open_image(data, name, max_pixels)
            with lock:
                found = analyzer.find_faces(image, faces)
                (results,) = analyzer.classify([found.faces])
            picture = _annotated(image, results) if annotated else None
        return PredictOut(filename=file.filename, width=image.width, height=image.height,
                          faces=[r.as_dict() for r in results], detector=analyzer.detector.name,
                          skipped_faces=[f.as_dict() for f in found.too_small], reason=found.reason,
                          runtime=analyzer.runtime, annotated_image=picture)

    return app


def _check_limits(max_upload_mb: float, max_megapixels: float, concurrency: int, queue: int) -> None:
    if not max_upload_mb > 0:
        raise EmotionError(f"--max-upload-mb {max_upload_mb}: use a positive size in MiB, e.g. 10")
    if not max_megapixels > 0:
        raise EmotionError(f"--max-megapixels {max_megapixels}: use a positive number of megapixels, e.g. 40")
    if concurrency < 1:
        raise EmotionError(f"--concurrency {concurrency}: use a positive number of photos at once, e.g. 2")
    if queue < 0:
        raise EmotionError(f"--queue {queue}: use 0 or more waiting uploads, e.g. 32")


def _read(file: UploadFile, max_bytes: int) -> tuple[bytes, str]:
    data = file.file.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise HTTPException(413, _too_large(len(data), max_bytes))
    name = file.filename or "upload"
    if not data:
        raise HTTPException(422, f"{name}: the upload is empty; choose a photo file")
    return data, name


@contextlib.contextmanager
def _refusals():
    """A photo we will not decode, as the HTTP error that says why."""
    try:
        yield
    except ImageTooLarge as err:
        raise HTTPException(413, f"{err} (or start the server with a larger --max-megapixels)") from None
    except EmotionError as err:
        raise HTTPException(415, f"{err}; upload a photo ({FORMATS})") from None


def _annotated(image, results) -> str:
    jpeg = encode_image(annotate(image, results, max_side=1280), ".jpg", quality=85)
    return "data:image/jpeg;base64," + base64.b64encode(jpeg).decode("ascii")


def _error(status: int, detail: str, headers: dict | None = None) -> JSONResponse:
    return JSONResponse({"detail": detail}, status_code=status, headers=headers)


def _too_large(size: int, limit: int, so_far: bool = False) -> str:
    size_text = f"stopped reading at {size / 1048576:.1f} MiB" if so_far else f"{size / 1048576:.1f} MiB"
    return (f"upload is over the {limit / 1048576:g} MiB limit ({size_text}); "
            "send a smaller photo (or start the server with a larger --max-upload-mb)")


def run(model: str | Path, host: str, port: int, max_upload_mb: float = MAX_UPLOAD_MB,
        max_megapixels: float = MAX_MEGAPIXELS, concurrency: int = CONCURRENCY, queue: int = QUEUE,
        cors_origins: list[str] | None = None, detector: str = DEFAULT_DETECTOR, tta: str = DEFAULT_TTA,
        align: bool = DEFAULT_ALIGN) -> None:
    import uvicorn

    sock = listening_socket(host, port)  # before the model loads: a port in use fails in one line, at once
    with sock:
        app = create_app(model, max_upload_mb, max_megapixels=max_megapixels, concurrency=concurrency, queue=queue,
                         cors_origins=cors_origins, detector=detector, tta=tta, align=align)
        print(f"serving {model} ({app.state.analyzer.runtime}) on http://{host}:{port}/  (API docs: /docs)",
              flush=True)
        if host not in LOOPBACK:
            print(f"note: {host} is reachable from other machines; put a reverse proxy with TLS in front "
                  "(README: emotion serve, Security notes)", flush=True)
        _return_freed_images_to_the_os()
        config = uvicorn.Config(app, host=host, port=port, log_level="warning", server_header=False)
        try:
            uvicorn.Server(config).run(sockets=[sock])
        except KeyboardInterrupt:  # Ctrl-C: uvicorn has shut down cleanly and re-raises the signal
            pass


_BIND_ADVICE = {errno.EADDRINUSE: "choose another --port, or stop the program that holds it",
                errno.EACCES: "ports below 1024 need administrator rights; use one such as 8000",
                errno.EADDRNOTAVAIL: "--host is not an address of this machine; use 127.0.0.1 or 0.0.0.0"}


def listening_socket(host: str, port: int) -> socket.socket:
    """A TCP socket bound to host:port as uvicorn binds one (IPv6 for a host with a colon), or a one-line
    error naming the address and the fix."""
    if not 1 <= port <= 65535:
        raise EmotionError(f"--port {port}: use a port from 1 to 65535, e.g. 8000")
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn does: a restart reuses the port at once
    try:
        sock.bind((host, port))
    except OSError as err:  # socket.gaierror too: a host name that does not resolve
        sock.close()
        advice = _BIND_ADVICE.get(err.errno, "check --host and --port")
        if isinstance(err, socket.gaierror):
            advice = _BIND_ADVICE[errno.EADDRNOTAVAIL]
        raise EmotionError(f"{host}:{port}: cannot listen there ({err.strerror}); {advice}") from None
    return sock


def _return_freed_images_to_the_os() -> None:
    """glibc raises its mmap threshold as large blocks are freed; decoded images then come from
    per-thread heaps that keep the memory. A fixed 4 MiB threshold hands each image buffer back when
    it is freed: peak RSS for a run of 38 MP RGBA uploads went from 1.45 to 0.85 GiB."""
    import ctypes
    import ctypes.util

    try:
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(-3, 4 * 1024 * 1024)  # M_MMAP_THRESHOLD
    except (OSError, AttributeError):  # not glibc: nothing to tune
        pass
