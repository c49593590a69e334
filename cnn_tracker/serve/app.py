"""The FastAPI application: ``/v1/predict``, ``/v1/model``, ``/healthz``, ``/readyz`` and the page.

:func:`create_app` takes a *loader* (a callable returning a
:class:`~cnn_tracker.serve.model.ServedModel`) and runs it in a thread when the server starts:
``/readyz`` answers 503 until it has returned and the model has run once, then 200. Every error
is JSON ``{"error": code, "detail": message}`` with a 4xx/5xx status (``schemas.ErrorResponse``).
"""

from __future__ import annotations

import asyncio
import threading
from contextlib import asynccontextmanager
from dataclasses import dataclass
from importlib import resources
from typing import Callable

from fastapi import FastAPI, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException

from cnn_tracker import __version__
from cnn_tracker.serve import schemas
from cnn_tracker.serve.batcher import MAX_BATCH, MAX_WAIT_S, Batcher, Stopped
from cnn_tracker.serve.images import MAX_PIXELS, BadInput, decode_image, input_png
from cnn_tracker.serve.model import ServedModel
from cnn_tracker.serve.parse import FIELD, Limits, images_of, read_body

MAX_IMAGE_BYTES = 4 * 1024 * 1024  # default --max-image-bytes: one uploaded file (4 MiB)
MAX_IMAGES = 64  # images per request
DECODERS = 4  # images decoded at once (each can hold a 4096 x 4096 bitmap: memory stays bounded)


@dataclass
class Settings:
    max_batch: int = MAX_BATCH
    max_wait_s: float = MAX_WAIT_S
    batching: bool = True
    max_image_bytes: int = MAX_IMAGE_BYTES
    max_images: int = MAX_IMAGES
    max_pixels: int = MAX_PIXELS
    follow_seconds: float | None = None  # --follow-best: seconds between looks at the best run


class Service:
    """The app's state: the live model (None while loading), its batcher, a load failure."""

    def __init__(self, loader: Callable[[], ServedModel], settings: Settings, refresh=None):
        self.loader, self.settings, self.refresh = loader, settings, refresh
        self.stopping = threading.Event()
        self.follow = {"seconds": settings.follow_seconds, "swaps": 0, "checks": 0,
                       "last_error": None}
        self.limits = Limits(settings.max_image_bytes, settings.max_images, settings.max_pixels)
        self.model: ServedModel | None = None
        self.failure: str | None = None
        self.batcher = Batcher(lambda model, x: model.probabilities(x),
                               max_batch=settings.max_batch, max_wait_s=settings.max_wait_s,
                               enabled=settings.batching)
        self.decoders = threading.BoundedSemaphore(DECODERS)

    def load(self) -> None:
        try:
            model = self.loader()
            model.warm_up()
        except Exception as exc:  # noqa: BLE001 - shown by /readyz; the CLI checks SOURCE first
            self.failure = f"{type(exc).__name__}: {exc}"
            return
        if self.stopping.is_set():  # the server stopped while the model loaded: start nothing
            return
        self.batcher.start()
        self.model = model
        if self.refresh is not None and self.settings.follow_seconds:
            threading.Thread(target=self._follow, name="cnn-tracker-follow", daemon=True).start()

    def _follow(self) -> None:
        """--follow-best: every few seconds, the sweep's best again; a new one is loaded and
        warmed up aside, then swapped in with one assignment. A request keeps the model it
        started with (its preprocessing, forward pass and class names all come from it: the
        batcher never puts two models in one batch), so none is dropped or sees two models."""
        while not self.stopping.wait(self.settings.follow_seconds):
            try:
                new = self.refresh(self.model)
                if new is not None:
                    new.warm_up()
                    self.model = new
                    self.follow["swaps"] += 1
                self.follow["last_error"] = None
            except Exception as exc:  # noqa: BLE001 - the live model keeps serving
                self.follow["last_error"] = f"{type(exc).__name__}: {exc}"
            self.follow["checks"] += 1

    def ready(self) -> ServedModel:
        if self.model is None and self.failure:
            raise BadInput(503, "not_ready", f"the model failed to load: {self.failure}")
        if self.model is None:
            raise BadInput(503, "not_ready", "the model is still loading: retry shortly (GET "
                                             "/readyz answers 200 once it is ready).")
        return self.model

    def decode(self, images: list[tuple[str, bytes]], spec):
        import torch

        with self.decoders:
            return torch.stack([decode_image(d, n, spec, self.limits.max_pixels) for n, d in images])


def error(status: int, code: str, detail: str) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


ERRORS = {code: {"model": schemas.ErrorResponse, "description": text} for code, text in (
    (400, "Empty body or image, truncated or damaged image, bad base64 or JSON"),
    (413, "Image or request over the size limit, too many pixels or images"),
    (415, "Not an image, or a Content-Type other than multipart/form-data or JSON"),
    (422, "Wrong field (multipart field other than 'files', JSON key other than 'images')"),
    (503, "The model is not loaded yet, or the server is shutting down"),
)}

PREDICT_BODY = {"requestBody": {"required": True, "content": {
    "multipart/form-data": {"schema": {
        "type": "object", "required": [FIELD],
        "properties": {FIELD: {"type": "array", "items": {"type": "string", "format": "binary"},
                               "description": "One or several image files."}}}},
    "application/json": {"schema": schemas.PredictJSON.model_json_schema()},
}}}


def create_app(loader: Callable[[], ServedModel], settings: Settings | None = None,
               refresh: Callable[[ServedModel], ServedModel | None] | None = None) -> FastAPI:
    """The app; ``refresh`` (with ``settings.follow_seconds``) is ``--follow-best``'s lookup."""
    service = Service(loader, settings or Settings(), refresh)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        threading.Thread(target=service.load, name="cnn-tracker-load", daemon=True).start()
        yield
        service.stopping.set()
        service.batcher.stop()

    app = FastAPI(title="cnn-tracker serve", version=__version__, lifespan=lifespan,
                  description="Class probabilities of images under a cnn-tracker checkpoint, with "
                              "the preprocessing of `cnn-tracker predict`.")
    app.state.service = service
    _errors(app)
    _routes(app, service)
    return app


def _errors(app: FastAPI) -> None:
    @app.exception_handler(BadInput)
    async def bad_input(request: Request, exc: BadInput):
        return error(exc.status, exc.code, exc.message)

    @app.exception_handler(RequestValidationError)
    async def bad_parameter(request: Request, exc: RequestValidationError):
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ()))
        return error(422, "bad_parameter", f"{where}: {first.get('msg')}")

    @app.exception_handler(Exception)
    async def internal(request: Request, exc: Exception):
        return error(500, "internal_error", f"{type(exc).__name__}: {exc}")

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        return error(exc.status_code, code, str(exc.detail))


def _routes(app: FastAPI, service: Service) -> None:
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    async def page():
        return resources.files("cnn_tracker.serve").joinpath("page.html").read_text("utf-8")

    @app.get("/healthz", response_model=schemas.Health, summary="The process is alive")
    async def healthz():
        return {"status": "ok"}

    @app.get("/readyz", response_model=schemas.Readiness, summary="200 once the model is loaded",
             responses={503: {"model": schemas.Readiness, "description": "Loading or failed"}})
    async def readyz():
        if service.model is None:
            state = "failed" if service.failure else "loading"
            return JSONResponse({"status": state, "model": None, "detail": service.failure},
                                status_code=503)
        return {"status": "ready", "model": service.model.checkpoint["model"]}

    @app.get("/v1/model", response_model=schemas.ModelInfo, responses={503: ERRORS[503]},
             summary="The served model: name, dataset, classes, metrics, digest, batching stats")
    async def model_info():
        s = service.settings
        return {**service.ready().describe(), "stats": service.batcher.stats(),
                "batching": {"enabled": s.batching, "max_batch": s.max_batch,
                             "max_wait_ms": s.max_wait_s * 1000},
                "limits": {"max_image_bytes": s.max_image_bytes, "max_images": s.max_images,
                           "max_request_bytes": service.limits.max_request_bytes,
                           "max_pixels": s.max_pixels},
                "follow": dict(service.follow) if s.follow_seconds else None}

    @app.post("/v1/predict", response_model=schemas.PredictResponse, response_model_by_alias=True,
              responses=ERRORS, openapi_extra=PREDICT_BODY,
              summary="Top-k classes of one or several images (multipart files or base64 JSON)")
    async def predict(request: Request,
                      top_k: int = Query(3, ge=1, le=10, description="Classes per image."),
                      input: bool = Query(False, description="Return the 28x28 input the "
                                          "model received, as base64 PNG.")):
        served = service.ready()
        with service.batcher.incoming():  # a batch being gathered waits for this request
            body = await read_body(request, service.limits.max_request_bytes)
            images = await images_of(request, body, service.limits)
            inputs = await run_in_threadpool(service.decode, images, served.spec)
            try:
                future = service.batcher.submit(served, inputs)
            except Stopped:
                raise BadInput(503, "shutting_down", "the server is shutting down: retry once "
                                                     "it is back.") from None
        try:
            probs = await asyncio.wrap_future(future)
        except Stopped:
            raise BadInput(503, "shutting_down", "the server stopped before this request ran: "
                                                 "retry.") from None
        return _response(served, images, inputs, probs, top_k, input)


def _response(served: ServedModel, images, inputs, probs, top_k: int, with_input: bool) -> dict:
    """The same fields as ``cnn-tracker predict --json`` (image, predicted, top), and more."""
    import torch

    names = served.class_names
    k = min(top_k, len(names))
    out = []
    for (name, _), image, row in zip(images, inputs, probs):
        top = torch.topk(row, k)
        out.append({
            "image": name, "predicted": names[int(top.indices[0])],
            "top": [{"class": names[int(i)], "probability": float(v)}
                    for v, i in zip(top.values, top.indices)],
            "probabilities": [float(p) for p in row],
            "input_png": input_png(image) if with_input else None,
        })
    return {"model": served.checkpoint["model"], "dataset": served.checkpoint["dataset"],
            "classes": names, "predictions": out}
