"""The scale rule: how many scales an image gets, the exact factor r, and each x_n's shape.

Indexing: the paper names scales n = 0 (finest) .. N (coarsest) and trains from N down to 0. In code
we keep lists in training order, stage k = N - n, so `shapes[0]` is x_N and `shapes[-1]` is x_0.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .config import Config
from .images import ImageError, resize


@dataclass(frozen=True)
class Pyramid:
    num_scales: int  # N + 1
    scale_factor: float  # r, the exact per-image factor
    shapes: tuple[tuple[int, int], ...]  # stage k = N - n, coarsest first

    @property
    def N(self) -> int:  # noqa: N802 - the paper's name
        return self.num_scales - 1


def _ceil(x: float) -> int:
    return math.ceil(x - 1e-9)


def pyramid_for(height: int, width: int, cfg: Config) -> Pyramid:
    """The reference rule (SinGAN's `adjust_scales2image`).

    The input is first resized so its longer side is at most `max_size`. N is chosen from the
    original size with the nominal factor, then r = (min_size / shorter side) ** (1 / N) so that the
    coarsest shorter side is exactly `min_size`; x_n has shape ceil(shape_0 * r ** n).
    """
    short, long = min(height, width), max(height, width)
    if short < cfg.min_size:
        raise ImageError(f"image is {width}x{height}: its shorter side is below min_size={cfg.min_size}")
    num_scales = _ceil(math.log(cfg.min_size / short) / math.log(cfg.scale_factor)) + 1
    scale_to_stop = _ceil(math.log(min(cfg.max_size, long) / long) / math.log(cfg.scale_factor))
    n_coarsest = max(num_scales - scale_to_stop, 1)
    scale1 = min(cfg.max_size / long, 1.0)
    h0, w0 = _ceil(height * scale1), _ceil(width * scale1)
    if min(h0, w0) < cfg.min_size:
        raise ImageError(
            f"image is {width}x{height}: after resizing to max_size={cfg.max_size} its shorter side "
            f"({min(h0, w0)}) is below min_size={cfg.min_size}"
        )
    r = (cfg.min_size / min(h0, w0)) ** (1.0 / n_coarsest)
    shapes = tuple((_ceil(h0 * r**n), _ceil(w0 * r**n)) for n in range(n_coarsest, -1, -1))
    return Pyramid(num_scales=n_coarsest + 1, scale_factor=r, shapes=shapes)


def build_reals(image: torch.Tensor, pyramid: Pyramid) -> list[torch.Tensor]:
    """The real images x_N .. x_0 (coarsest first), each resized from x_0 with antialiased bicubic."""
    x0 = resize(image, pyramid.shapes[-1])
    return [resize(x0, shape).clamp(-1, 1) for shape in pyramid.shapes]
