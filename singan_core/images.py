"""Reading and writing images: any mode, any size, any fsspec URL, in and out of [-1, 1] tensors."""

from __future__ import annotations

import io
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager

import fsspec
import numpy as np
import torch
import torch.nn.functional as F
from fsspec.implementations.local import LocalFileSystem
from PIL import Image, ImageFile, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")
# Above this many pixels an image is first reduced by an integer box filter while decoding, so a
# 20000x20000 input never becomes a multi-gigabyte float tensor.
_DECODE_LIMIT = 4096 * 4096


class ImageError(ValueError):
    """An input that cannot be used as an image; the message is one line meant for the user."""


def _to_rgb_array(img: Image.Image) -> np.ndarray:
    """Any PIL mode (1, L, P, RGBA, LA, I;16, I, F, CMYK, ...) to float32 RGB in [0, 1]."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        arr = np.asarray(img, dtype=np.float32)
        arr = arr / (65535.0 if arr.max(initial=0) > 255 or img.mode.startswith("I;16") else 255.0)
        return np.repeat(np.clip(arr, 0, 1)[..., None], 3, axis=2)
    if img.mode == "F":
        arr = np.asarray(img, dtype=np.float32)
        lo, hi = float(arr.min()), float(arr.max())
        arr = (arr - lo) / (hi - lo) if hi > lo else np.zeros_like(arr)
        return np.repeat(arr[..., None], 3, axis=2)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0  # alpha, if any, is dropped


def _open(url: str) -> Image.Image:
    try:
        with fsspec.open(url, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise ImageError(f"{url}: no such file") from None
    except IsADirectoryError:
        raise ImageError(f"{url}: is a directory, not an image") from None
    except OSError as e:
        raise ImageError(f"{url}: cannot read ({e})") from None
    if not data:
        raise ImageError(f"{url}: empty file")
    Image.MAX_IMAGE_PIXELS = None  # we reduce huge images ourselves
    try:
        img = Image.open(io.BytesIO(data))
        img.draft("RGB", (8192, 8192))  # JPEG: decode at a reduced scale when huge
        if _reduction(img) > 1:
            img = img.reduce(_reduction(img))
        img.load()
    except UnidentifiedImageError:
        raise ImageError(f"{url}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{url}: corrupt or truncated image ({e})") from None
    return img


def _reduction(img: Image.Image) -> int:
    """The integer factor a huge image is reduced by while decoding (1: none)."""
    if img.width * img.height <= _DECODE_LIMIT:
        return 1
    return int(np.ceil(np.sqrt(img.width * img.height / _DECODE_LIMIT)))


def image_size(url: str) -> tuple[int, int]:
    """(H, W) that `load_image(url)` gives, read from the file's header without decoding the pixels
    (the decoder's draft and reduction of huge images included). Raises ImageError like `load_image`."""
    Image.MAX_IMAGE_PIXELS = None
    try:
        with fsspec.open(url, "rb") as f, Image.open(f) as img:
            img.draft("RGB", (8192, 8192))
            factor = _reduction(img)
            return -(-img.height // factor), -(-img.width // factor)  # Image.reduce rounds up
    except FileNotFoundError:
        raise ImageError(f"{url}: no such file") from None
    except UnidentifiedImageError:
        raise ImageError(f"{url}: not an image file (or an unsupported format)") from None
    except (OSError, SyntaxError, ValueError) as e:
        raise ImageError(f"{url}: cannot read its header ({e})") from None


def load_image(url: str, max_size: int | None = None) -> torch.Tensor:
    """Read an image as a [1, 3, H, W] float tensor in [-1, 1].

    If `max_size` is given the image is resized (antialiased bicubic) so its longer side is at
    most `max_size`; smaller images are kept as they are.
    """
    ImageFile.LOAD_TRUNCATED_IMAGES = False
    img = _open(url)
    arr = _to_rgb_array(img)
    # contiguous NCHW: a channels-last view here would make every convolution on it much slower
    x = torch.from_numpy(np.ascontiguousarray(arr)).permute(2, 0, 1).unsqueeze(0).contiguous() * 2.0 - 1.0
    if max_size is not None and max(x.shape[-2:]) > max_size:
        scale = max_size / max(x.shape[-2:])
        shape = (max(1, round(x.shape[-2] * scale)), max(1, round(x.shape[-1] * scale)))
        x = resize(x, shape)
    return x


def resize(x: torch.Tensor, shape: tuple[int, int]) -> torch.Tensor:
    """Antialiased bicubic resize of a [B, C, H, W] tensor to `shape` (H, W); the result is contiguous."""
    if tuple(x.shape[-2:]) == tuple(shape):
        return x.contiguous()
    return F.interpolate(x, size=tuple(shape), mode="bicubic", align_corners=False, antialias=True).contiguous()


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """[1, 3, H, W] or [3, H, W] tensor in [-1, 1] to an H x W x 3 uint8 array."""
    if x.dim() == 4:
        x = x[0]
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().byte()
    return arr.permute(1, 2, 0).numpy()


def to_pil(x: torch.Tensor) -> Image.Image:
    return Image.fromarray(to_uint8(x))


@contextmanager
def atomic_write(url: str, mode: str = "wb") -> Iterator:
    """Open `url` for writing so that readers see either the old file or the whole new one.

    Local paths: a temporary file in the same folder, renamed into place. Other fsspec URLs: the
    filesystem's own write, which object stores make visible only when complete.
    """
    fs, path = fsspec.core.url_to_fs(url)
    parent = os.path.dirname(path)
    if parent:
        fs.makedirs(parent, exist_ok=True)
    if isinstance(fs, LocalFileSystem):
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with open(tmp, mode) as f:
                yield f
            os.replace(tmp, path)
        finally:
            if os.path.exists(tmp):
                os.remove(tmp)
    else:
        tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}"
        try:
            with fs.open(tmp, mode) as f:
                yield f
            fs.mv(tmp, path)
        finally:
            if fs.exists(tmp):
                fs.rm(tmp)


def save_image(x: torch.Tensor, url: str) -> None:
    """Write a [1, 3, H, W] / [3, H, W] tensor in [-1, 1] as PNG, atomically."""
    buf = io.BytesIO()
    to_pil(x).save(buf, format="PNG")
    with atomic_write(url) as f:
        f.write(buf.getvalue())
