"""Finding the images of a dataset (any fsspec URL, recursive) and naming them by their content."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from dataclasses import dataclass

import fsspec
from fsspec.implementations.local import LocalFileSystem

from singan_core.images import IMAGE_EXTENSIONS

HASH_CHARS = 16  # 64 bits of sha256: collisions are negligible for any realistic dataset
_GLOB_CHARS = set("*?[")


@dataclass(frozen=True)
class ImageItem:
    """One input file: its URL and its id (the short sha256 of its bytes).

    `error` is set when the file could not even be read; its id is then derived from the URL.
    """

    url: str
    image_id: str
    error: str | None = None

    @property
    def name(self) -> str:
        return os.path.basename(self.url.rstrip("/"))


def is_image_name(path: str) -> bool:
    return path.lower().endswith(IMAGE_EXTENSIONS)


def _full_url(fs: fsspec.AbstractFileSystem, path: str, keep_protocol: bool) -> str:
    """A found file's URL as the user wrote the input: local paths stay plain paths unless the input was a
    file:// URL; other filesystems keep their protocol (s3://, gs://...)."""
    return path if isinstance(fs, LocalFileSystem) and not keep_protocol else fs.unstrip_protocol(path)


def _under(path: str, folders: Iterable[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders)


@dataclass(frozen=True)
class Discovery:
    """The files under an input: the images taken, and the other (visible) files, not taken for their
    extension."""

    images: list[str]
    others: list[str]


def discover_files(input_url: str, exclude: Iterable[str] = ()) -> Discovery:
    """Every image (png, jpg, jpeg, webp, bmp, tif/tiff; any letter case) under `input_url`, sorted, and the
    other files found there (sorted), which the job lists as not taken.

    `input_url` may be a folder (searched recursively), a glob pattern or a single file (used
    whatever its extension, so a wrongly named file still gets a clear error of its own). Hidden
    files and folders are skipped, and so are the paths in `exclude` (the job's own output).
    """
    fs, path = fsspec.core.url_to_fs(input_url)
    keep = "://" in input_url
    excluded = [fsspec.core.url_to_fs(url)[1].rstrip("/") for url in exclude]
    if _GLOB_CHARS & set(path):
        found = [p for p in fs.glob(path) if fs.isfile(p)]
    elif fs.isfile(path):
        return Discovery([_full_url(fs, path, keep)], [])
    elif fs.isdir(path):
        found = fs.find(path)
    else:
        raise FileNotFoundError(f"{input_url}: no such file or folder")
    root = path.rstrip("/")
    images, others = [], []
    for p in found:
        relative = p[len(root):] if p.startswith(root) else p
        if any(part.startswith(".") for part in relative.split("/") if part) or _under(p, excluded):
            continue
        (images if is_image_name(p) else others).append(_full_url(fs, p, keep))
    if not images:
        left = f"; {len(others)} other file(s), e.g. {os.path.basename(others[0])}" if others else ""
        raise ValueError(f"{input_url}: no images found ({', '.join(e[1:] for e in IMAGE_EXTENSIONS)}){left}")
    return Discovery(sorted(images), sorted(others))


def discover_images(input_url: str, exclude: Iterable[str] = ()) -> list[str]:
    """The images of `discover_files`."""
    return discover_files(input_url, exclude).images


def content_hash(url: str, chunk_size: int = 1 << 20) -> str:
    """Short sha256 of the file's bytes, read in chunks (a huge file never sits in memory)."""
    digest = hashlib.sha256()
    with fsspec.open(url, "rb") as f:
        while block := f.read(chunk_size):
            digest.update(block)
    return digest.hexdigest()[:HASH_CHARS]


def identify(url: str) -> ImageItem:
    """The ImageItem of `url`; a file that cannot be read gets an id from its URL and the error."""
    try:
        return ImageItem(url, content_hash(url))
    except (OSError, ValueError) as e:
        url_id = "u" + hashlib.sha256(url.encode()).hexdigest()[: HASH_CHARS - 1]
        return ImageItem(url, url_id, f"{url}: cannot read ({type(e).__name__}: {e})")
