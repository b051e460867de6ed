"""Super-resolution (SinGAN section 4.1), as the authors' code does it.

Train on the low-resolution image with the pyramid factor r equal to the SR step: the upsampling is
done in steps of about 2^(1/3) (x4 = 6 steps of 4^(1/6) = 1.26, training factor 1 / 1.26 = 0.7937)
with reconstruction weight alpha = 100. Then upsample step by step, each time applying the finest
generator G_0 with zero noise: x <- G_0(0, up(x)). G_0 learned to add the detail that one step of r
removes, and patches recur across scales, so it adds plausible detail at every step.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from ..config import Config
from ..images import ImageError, resize
from ..singan import SinGAN
from ..train import train
from .common import as_image, training_image

SR_STEP = 2 ** (1 / 3)  # the reference's nominal SR step
SR_ALPHA = 100.0  # the reference's reconstruction weight for SR training
SR_MIN_SIZE = 18  # the reference's coarsest size for SR training


def sr_steps(factor: float) -> tuple[int, float]:
    """(number of steps, exact step) for an SR factor: round(log factor / log 2^(1/3)) steps of factor^(1/steps)."""
    if not factor >= 1:
        raise ValueError(f"the super-resolution factor must be at least 1, got {factor}")
    if factor == 1:
        return 0, 1.0
    steps = max(1, round(math.log(factor) / math.log(SR_STEP)))
    return steps, factor ** (1 / steps)


def sr_config(cfg: Config, factor: float, image_shape: tuple[int, int]) -> Config:
    """The config to train an SR model on a low-resolution image of `image_shape` (H, W).

    Pyramid factor 1 / step, alpha 100, min_size 18 (or the receptive field if larger), and max_size the
    image's longer side so the model's x_0 is the input itself.
    """
    _, step = sr_steps(factor)
    step = step if step > 1 else SR_STEP
    min_size = max(SR_MIN_SIZE, cfg.receptive_field)
    if min(image_shape) < min_size:
        h, w = image_shape
        raise ImageError(f"image is {w}x{h}: super-resolution needs a shorter side of at least {min_size} px")
    return cfg.replace(scale_factor=1 / step, alpha=SR_ALPHA, min_size=min_size, max_size=max(image_shape))


def train_for_sr(
    image: torch.Tensor | str,
    factor: float,
    cfg: Config,
    *,
    out: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_stage: Callable[[dict[str, Any]], None] | None = None,
) -> SinGAN:
    """Train a pyramid on the low-resolution image with `sr_config` (resumable into `out`)."""
    x = as_image(image)
    return train(x, sr_config(cfg, factor, tuple(x.shape[-2:])), out=out, device=device, progress=progress,
                        on_stage=on_stage)


@torch.no_grad()
def super_resolve(
    model: SinGAN, factor: float, image: torch.Tensor | str | None = None, image_index: int = 0
) -> torch.Tensor:
    """Upsample `image` (default: the model's x_0) by `factor`: [1, 3, round(H * factor), round(W * factor)].

    At every step j the image is resized by the step (bicubic) and G_0 is applied with zero noise;
    the last step lands exactly on the target size.
    """
    steps, step = sr_steps(factor)
    x = training_image(model, image_index) if image is None else as_image(image)[:1].to(model.device)
    h, w = x.shape[-2:]
    target = (round(h * factor), round(w * factor))
    finest = model.num_stages - 1
    for j in range(1, steps + 1):
        shape = target if j == steps else (round(h * step**j), round(w * step**j))
        x = resize(x, shape)
        x = model.apply_stage(finest, torch.zeros_like(x), x)  # x~ = G_0(0, up(x~))
    return x.clamp(-1, 1)
