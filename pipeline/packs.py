"""Packs: images of one training shape trained together in one task (`singan_core.train_pack`).

    units = make_units(triage.todo, cfg, pack=None, gpus=0.25, highres=False)   # Unit([item, item]), ...
    pack_size_for(shapes, cfg, gpus=0.25)      # the default K on a GPU: as many as fit in its memory share

The driver reads each image's size from its header (no decoding) and applies the config's max_size rule
(`pyramid_for`) to get the shapes x_N .. x_0 it will train at; images of equal shapes are grouped, at
most K to a pack. A file whose header cannot be read, or that is too small, trains alone (its task gives
it its failed row, as for any bad input); so does a file the driver could not even read (no task).
With High-Res, each image is a unit of its own: its base pyramid trains alone and its four quadrant
pyramids (of one shape by construction) in packs of `Unit.quadrants`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from singan_core.config import Config
from singan_core.images import image_size
from singan_core.pyramid import pyramid_for

from .dataset import ImageItem

Shapes = tuple[tuple[int, int], ...]

HEADER_THREADS = 16  # headers read at once by the driver
PACK_MAX = 16  # the default never packs more (the largest K benchmarks/pack_throughput.py was run with)
GPU_MEMORY_GB = 24.0  # assumed memory of one GPU: the A10G of cluster.yaml's worker.gpu (Ray does not report it)
MEMORY_USE = 0.75  # share of a task's part of that memory the pack may fill (the rest: CUDA context, allocator)
BYTES_PER_ACTIVATION = 48  # 4 bytes x 3 saved tensors per layer (conv, BatchNorm, LeakyReLU) x 4 passes alive


def training_shapes(url: str, cfg: Config) -> Shapes:
    """The shapes x_N .. x_0 `url` trains at under `cfg`, from its header; ImageError for bad input."""
    height, width = image_size(url)
    return pyramid_for(height, width, cfg).shapes


def image_bytes(shapes: Shapes, cfg: Config) -> int:
    """Estimated GPU memory one image of a pack needs at its finest scale (the largest): the activations kept
    for backward, BYTES_PER_ACTIVATION x H_0 x W_0 x channels x num_layer. The 4 passes alive at once are a
    D step's D(x_0), D(x~_0) and the gradient penalty's D(x^) with its double backward (a G step keeps
    fewer: G's adversarial and reconstruction passes and one D pass). Parameters (about 0.6 M per scale at
    128 channels) and the coarser scales' frozen generators are small beside it."""
    h, w = shapes[-1]
    return BYTES_PER_ACTIVATION * h * w * cfg.channels(len(shapes) - 1) * cfg.num_layer


def pack_size_for(shapes: Shapes, cfg: Config, gpus: float, gpu_memory_gb: float = GPU_MEMORY_GB) -> int:
    """The default K of a pack on a GPU: as many images as fit in the task's share of the GPU's memory,
    floor(gpus x gpu_memory_gb x MEMORY_USE / image_bytes), at least 1 and at most PACK_MAX."""
    budget = gpus * gpu_memory_gb * 1e9 * MEMORY_USE
    return max(1, min(PACK_MAX, int(budget // image_bytes(shapes, cfg))))


@dataclass(frozen=True)
class Unit:
    """Images whose training is one task (High-Res: one image; its quadrants packed `quadrants` at a time)."""

    items: list[ImageItem]
    quadrants: int = 1


def make_units(items: Sequence[ImageItem], cfg: Config, *, pack: int | None, gpus: float,
               highres: bool) -> list[Unit]:
    """The job's images as training units (see `make_packs`; High-Res: `quadrant_pack`)."""
    if highres:
        return [Unit([item], quadrant_pack(item, cfg, pack, gpus)) for item in items]
    return [Unit(members) for members in make_packs(items, cfg, pack, gpus)]


def quadrant_pack(item: ImageItem, cfg: Config, pack: int | None, gpus: float) -> int:
    """How many of an image's four quadrant pyramids train together: `pack` (at most 4) when given, else
    1 on the CPU and as many as fit (`pack_size_for`) on a GPU."""
    if pack is not None:
        return max(1, min(4, pack))
    if gpus == 0 or item.error:
        return 1
    try:
        height, width = image_size(item.url)
        scale = min(1.0, 2 * cfg.max_size / max(height, width))  # highres.full_image: longer side <= 2 max_size
        shapes = pyramid_for(round(height * scale) // 2, round(width * scale) // 2, cfg).shapes
    except ValueError:
        return 1
    return min(4, pack_size_for(shapes, cfg, gpus))


def make_packs(items: Sequence[ImageItem], cfg: Config, pack: int | None, gpus: float) -> list[list[ImageItem]]:
    """The items grouped into training units, in the order of their first member.

    `pack`: at most this many images per unit (1: every image alone); None: the default, one image per
    task on the CPU (gpus == 0) and `pack_size_for` on a GPU. Unreadable items and bad input stay alone.
    """
    if pack == 1 or (pack is None and gpus == 0):
        return [[item] for item in items]
    with ThreadPoolExecutor(HEADER_THREADS) as pool:  # object stores: one small read each, latency-bound
        all_shapes = list(pool.map(lambda item: _shapes_or_none(item, cfg), items))
    units: list[list[ImageItem]] = []
    open_packs: dict[Shapes, tuple[list[ImageItem], int]] = {}  # shapes -> the pack being filled, its K
    for item, shapes in zip(items, all_shapes, strict=True):
        if shapes is None:
            units.append([item])
            continue
        members, k = open_packs.get(shapes, ([], 0))
        if not members:
            k = pack if pack is not None else pack_size_for(shapes, cfg, gpus)
            units.append(members)
        members.append(item)
        open_packs[shapes] = ([], 0) if len(members) >= k else (members, k)
    return units


def _shapes_or_none(item: ImageItem, cfg: Config) -> Shapes | None:
    if item.error:
        return None
    try:
        return training_shapes(item.url, cfg)
    except ValueError:  # ImageError and a config the image does not fit: its own task reports it
        return None


def pack_id(members: Sequence[str]) -> str:
    """A pack's name: the short sha256 of its members ("image_id/variant"), the same in every re-run."""
    return "p" + hashlib.sha256("\n".join(sorted(members)).encode()).hexdigest()[:11]
