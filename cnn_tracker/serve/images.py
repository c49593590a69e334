"""Uploaded image bytes as model inputs, with ``cnn-tracker predict``'s own preprocessing.

Every refusal is a :class:`BadInput` carrying its HTTP status: 413 over a size or pixel limit,
415 for bytes no image decoder reads, 400 for a truncated or damaged image or an empty one. The
pixel count is read from the header (``Image.open`` decodes nothing yet) and checked before any
bitmap is allocated, so a small file claiming 10,000 x 10,000 pixels costs nothing.
"""

from __future__ import annotations

import base64
import binascii
import io
import struct
import warnings

import numpy as np
import torch

from cnn_tracker.inputs import clip

MAX_PIXELS = 16_777_216  # pixels of one uploaded image (4096 x 4096); predict's file cap is 50 M


class BadInput(Exception):
    """A request the server refuses: HTTP ``status``, a short ``code`` and a message."""

    def __init__(self, status: int, code: str, message: str):
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


def decode_base64(text: str, name: str) -> bytes:
    """Bytes of a base64 string, also in the ``data:image/png;base64,...`` form of a data URL."""
    if text.startswith("data:") and "," in text[:200]:
        text = text.split(",", 1)[1]
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(400, "bad_base64", f"{name} is not valid base64: send each image as the "
                                          "base64 of its file bytes.") from None


def check_size(data: bytes, name: str, max_bytes: int) -> None:
    if not data:
        raise BadInput(400, "empty_image", f"{name} is empty (0 bytes): send an image file.")
    if len(data) > max_bytes:
        raise BadInput(413, "image_too_large", f"{name} is {len(data):,} bytes: at most "
                                               f"{max_bytes:,} are accepted (--max-image-bytes).")


def decode_image(data: bytes, name: str, spec, max_pixels: int = MAX_PIXELS) -> torch.Tensor:
    """An uploaded image as uint8 [1, 28, 28], exactly as ``predict`` prepares an image file."""
    from PIL import Image, UnidentifiedImageError

    from cnn_tracker.tools.inference import dataset_image, grayscale

    try:
        with warnings.catch_warnings():  # PIL's notes on odd files (bomb sizes, TIFF tags)
            warnings.simplefilter("ignore")
            _check_pixels(data, name, max_pixels, Image)
            gray = grayscale(io.BytesIO(data), Image)
    except BadInput:
        raise
    except Image.DecompressionBombError:
        raise _too_many(name, None, max_pixels) from None
    except UnidentifiedImageError:
        raise BadInput(415, "not_an_image", f"{name} is not an image any decoder reads: send a "
                                            "PNG, JPEG, BMP, GIF, TIFF or WebP file.") from None
    except (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, KeyError,
            struct.error) as exc:  # what PIL's decoders raise on damaged data
        what = "is truncated" if "truncated" in str(exc) else f"cannot be decoded ({type(exc).__name__})"
        raise BadInput(400, "truncated_image" if "truncated" in what else "damaged_image",
                       f"{name} {what}: send the complete file.") from None
    except Exception as exc:  # noqa: BLE001 - predict's UserError (its own pixel cap) and the like
        raise BadInput(400, "damaged_image", f"{name} cannot be read: {clip(str(exc))}") from None
    return torch.from_numpy(dataset_image(gray, digits=spec.name == "mnist"))[None]


def _check_pixels(data: bytes, name: str, max_pixels: int, Image) -> None:
    """Refuse before decoding: the header's size against ``max_pixels`` (and PIL's own
    ``Image.MAX_IMAGE_PIXELS``, which ``Image.open`` enforces as DecompressionBombError)."""
    with Image.open(io.BytesIO(data)) as img:
        width, height = img.size
        frames = getattr(img, "n_frames", 1)
    if width < 1 or height < 1 or width * height > max_pixels:
        raise _too_many(name, (width, height), max_pixels)
    if frames > 1000:  # an animation is read as its first frame, but a huge count is a bomb
        raise BadInput(413, "too_many_frames", f"{name} has {frames:,} frames: send one image.")


def _too_many(name: str, size: tuple[int, int] | None, max_pixels: int) -> BadInput:
    said = f"is {size[0]:,}x{size[1]:,} pixels" if size else "claims more pixels than PIL allows"
    return BadInput(413, "too_many_pixels", f"{name} {said}: at most {max_pixels:,} pixels are "
                                            "decoded; send a smaller image.")


def input_png(image: torch.Tensor) -> str:
    """Base64 PNG of a uint8 [1, 28, 28] input: what the model saw, for the page."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image[0].numpy()), "L").save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()
