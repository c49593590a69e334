"""A ``/v1/predict`` request body as a list of (name, image bytes), bounded before it is read.

The body is read as a stream and refused (413) once it passes ``max_request_bytes``, whatever
Content-Length claimed; multipart parts go through starlette's parser (python-multipart) from the
bytes read, JSON through :class:`~cnn_tracker.serve.schemas.PredictJSON`.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

from pydantic import ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.requests import Request

from cnn_tracker.serve.images import BadInput, check_size, decode_base64
from cnn_tracker.serve.schemas import PredictJSON

FIELD = "files"  # the multipart field that carries images (repeat it for several)
# starlette >= 0.40 caps a text part (default 1 MiB); older ones (fastapi 0.110-0.115.2) lack the
# keyword and would fail every upload with a TypeError. The body is bounded before parsing anyway.
_PART_CAP = "max_part_size" in inspect.signature(Request.form).parameters


@dataclass
class Limits:
    max_image_bytes: int
    max_images: int
    max_pixels: int

    @property
    def max_request_bytes(self) -> int:
        """A request may carry one image at the limit as base64 (4/3 larger) plus headroom."""
        return self.max_image_bytes * 2 + 65536


async def read_body(request: Request, limit: int) -> bytes:
    claimed = request.headers.get("content-length")
    if claimed and claimed.isdigit() and int(claimed) > limit:
        raise _too_large(int(claimed), limit)
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise _too_large(size, limit, more=True)
        chunks.append(chunk)
    body = b"".join(chunks)
    if not body:
        raise BadInput(400, "empty_body", f"the request body is empty: send images as multipart "
                                          f"field '{FIELD}' or JSON {{\"images\": [base64, ...]}}.")
    return body


def _too_large(size: int, limit: int, more: bool = False) -> BadInput:
    said = f"more than {limit:,}" if more else f"{size:,}"
    return BadInput(413, "request_too_large", f"the request body is {said} bytes: at most "
                                              f"{limit:,} are read (twice --max-image-bytes, plus "
                                              "64 KiB); send fewer or smaller images.")


async def images_of(request: Request, body: bytes, limits: Limits) -> list[tuple[str, bytes]]:
    """(name, bytes) of each image in the body, by its Content-Type; sizes and count checked."""
    kind = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if kind == "multipart/form-data":
        images = await _multipart(request, body, limits)
    elif kind == "application/json" or kind.endswith("+json"):
        images = _json(body)
    else:
        raise BadInput(415, "unsupported_media_type", f"Content-Type {kind or '(none)'!r} is not "
                       f"accepted: send multipart/form-data (field '{FIELD}') or application/json.")
    if len(images) > limits.max_images:
        raise BadInput(413, "too_many_images", f"the request has {len(images)} images: at most "
                                               f"{limits.max_images} per request.")
    for name, data in images:
        check_size(data, name, limits.max_image_bytes)
    return images


async def _multipart(request: Request, body: bytes, limits: Limits) -> list[tuple[str, bytes]]:
    async def replay():
        return {"type": "http.request", "body": body, "more_body": False}

    caps = {"max_part_size": limits.max_image_bytes} if _PART_CAP else {}
    try:
        form = await Request(request.scope, replay).form(
            max_files=limits.max_images + 1, max_fields=16, **caps)
    except HTTPException as exc:  # starlette's MultiPartException, as a 400
        if "Too many files" in str(exc.detail):
            raise BadInput(413, "too_many_images", f"the request has more than {limits.max_images} "
                                                   "files: send fewer per request.") from None
        raise BadInput(400, "bad_multipart", f"the multipart body cannot be parsed "
                                             f"({exc.detail}).") from None
    try:
        return await _parts(form)
    finally:
        await form.close()


async def _parts(form) -> list[tuple[str, bytes]]:
    images, others = [], []
    for key, value in form.multi_items():
        if key != FIELD:
            others.append(key)
        elif not isinstance(value, UploadFile):
            raise BadInput(422, "not_a_file", f"multipart field '{FIELD}' holds text, not a file: "
                                              "attach the image as a file.")
        else:
            images.append((value.filename or f"{FIELD}[{len(images)}]", await value.read()))
    if others:
        raise BadInput(422, "unknown_field", f"unknown multipart field {others[0]!r}: send images "
                                             f"as field '{FIELD}' (repeat it for several).")
    if not images:
        raise BadInput(422, "no_images", f"the multipart body has no field '{FIELD}': send at "
                                         "least one image file.")
    return images


def _json(body: bytes) -> list[tuple[str, bytes]]:
    try:
        parsed = PredictJSON.model_validate_json(body)
    except ValidationError as exc:
        raise _json_error(exc.errors()) from None
    if not parsed.images:
        raise BadInput(422, "no_images", "'images' is empty: send at least one base64 image.")
    names = [f"images[{i}]" for i in range(len(parsed.images))]
    return [(n, decode_base64(text, n)) for n, text in zip(names, parsed.images)]


def _json_error(errors: list[dict]) -> BadInput:
    """Every problem of a JSON body in one message: unknown keys, a missing ``images``, types."""
    if errors[0].get("type") == "json_invalid":
        return BadInput(400, "bad_json", f"the body is not valid JSON ({errors[0]['msg']}).")
    said = []
    for e in errors[:5]:
        where = ".".join(str(p) for p in e.get("loc", ())) or "body"
        said.append({"extra_forbidden": f"unknown field {where!r}",
                     "missing": f"{where!r} is missing"}.get(e.get("type"), f"{where}: {e['msg']}"))
    return BadInput(422, "bad_field", f"{'; '.join(said)}: send {{\"images\": [base64, ...]}}.")
