"""Images in chat messages: find them, and decode `data:` URLs into RGB PIL images under size limits.

The API checks (and so decodes) each image before queueing, so a bad image is a 400 and never a job; the
worker decodes it again, off the engine's event loop, to hand the pixels to the engine.
"""

from __future__ import annotations

import base64
import binascii
import re
from typing import Callable, TypeVar

from PIL import Image

from maoocr.config import ModelConfig, Settings
from maoocr.documents import DocumentLimits, LoadedDocument, load_document, sniff_format
from maoocr.errors import InvalidRequest, MaoOCRError, PayloadTooLarge, UnsupportedMediaType
from maoocr.protocol.generation import GenerationParams

# data:[<media type>][;param=value]*;base64,<payload>
_DATA_URL = re.compile(r"data:(?P<media>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[^;,]*)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)
# What documents.py can read, less PDF: a chat image is one picture, not a document to render.
_IMAGE_FORMATS = ("png", "jpeg", "webp", "bmp", "tiff")
T = TypeVar("T")


def image_urls(params: GenerationParams) -> list[str]:
    """The URLs of every image part in the request's messages, in prompt order."""
    return [part.image_url.url if part.image_url else ""
            for message in params.messages or [] if not isinstance(message.content, str)
            for part in message.content if part.type == "image_url"]


def check_image_count(count: int, name: str, model: ModelConfig, vision_models: list[str] | None = None) -> None:
    """Refuse images for a text model, and more images than the model is configured to take."""
    if count and model.image_limit == 0:
        hint = f"; send them to a multimodal model ({', '.join(vision_models)})" if vision_models else ""
        raise InvalidRequest(f"model {name!r} is a text model (model_type: text) and cannot take images "
                             f"(this request has {count}){hint}")
    if count > model.image_limit:
        raise InvalidRequest(f"{count} images in one prompt; model {name!r} takes at most {model.image_limit} "
                             "(its max_images_per_prompt)")


def decode_image_url(url: str, limits: DocumentLimits, number: int = 1) -> Image.Image:
    """One image part's pixels as RGB. Raises InvalidRequest (or PayloadTooLarge) with a message for the user."""
    document = load_image_url(url, limits, number)
    return _guarded(lambda: document.render_page(0), number)


def load_image_url(url: str, limits: DocumentLimits, number: int = 1) -> LoadedDocument:
    """Check one image part (scheme, base64, format, bytes, pixels; decoded once) without converting it."""
    where = f"image {number}"
    if not url:
        raise InvalidRequest(f"{where}: an image_url part needs image_url.url")
    if url[:8].lower().startswith(("http://", "https://")):
        raise InvalidRequest(f"{where}: http(s) image URLs are not fetched (MaoOCR workers have no network "
                             "access); send the image inline as a data: URL, e.g. data:image/png;base64,...")
    match = _DATA_URL.match(url)
    if match is None:
        raise InvalidRequest(f"{where}: image_url.url must be a data: URL with base64 image bytes "
                             f"(data:image/png;base64,...), got {url[:40]!r}")
    if not match["b64"]:
        raise InvalidRequest(f"{where}: the data: URL must be base64-encoded (data:image/png;base64,...)")
    payload = url[match.end():]
    # Refuse oversized payloads before allocating their decoded bytes (4 base64 characters per 3 bytes).
    if len(payload) > (limits.max_bytes + 2) // 3 * 4 + 4:
        raise PayloadTooLarge(f"{where} is over the limit of {limits.max_bytes} bytes per image")
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidRequest(f"{where}: the data: URL payload is not valid base64: {exc}") from exc
    try:
        fmt = sniff_format(data)
    except UnsupportedMediaType as exc:
        detail = exc.message.split("; accepted")[0].replace("unsupported document type: ", "")
        raise InvalidRequest(f"{where} is not an image we can read ({detail}); accepted: "
                             f"{', '.join(_IMAGE_FORMATS)}") from exc
    if fmt not in _IMAGE_FORMATS:
        raise InvalidRequest(f"{where} is a {fmt.upper()} document, not an image; send each page as its own "
                             "image, or post the document to /v1/documents")
    document = _guarded(lambda: load_document(data, limits), number)
    if document.total_pages != 1:
        raise InvalidRequest(f"{where} is a {document.total_pages}-page {fmt.upper()}; send one image per "
                             "image_url part, or post the document to /v1/documents")
    return document


def _guarded(load: Callable[[], T], number: int) -> T:
    try:
        return load()
    except InvalidRequest:
        raise
    except PayloadTooLarge as exc:
        raise PayloadTooLarge(f"image {number}: {exc.message}") from exc
    except MaoOCRError as exc:  # corrupt or truncated: a bad request, whatever the document loader calls it
        raise InvalidRequest(f"image {number}: {exc.message}") from exc


def decode_images(params: GenerationParams, limits: DocumentLimits) -> list[Image.Image]:
    return [decode_image_url(url, limits, i + 1) for i, url in enumerate(image_urls(params))]


def image_limits(settings: Settings) -> DocumentLimits:
    # Same pixel bound as documents: documents.py sets PIL's process-wide decompression guard from it, so one
    # value for both keeps a chat image from changing the guard under a concurrent document upload.
    return settings.documents.model_copy(update={"max_bytes": settings.limits.max_image_bytes})
