"""High-Res-SinGAN: bigger outputs by a scaled architecture or by slicing and stitching.

1. The scaled architecture (`highres_rule`, the `highres` preset): for an output s = size / 250 times
   the paper's, every x_n of the paper's pyramid is s times larger, so the receptive field grows by s
   (5 s layers of 3x3 convolutions: 21 px at 500 px), min_size grows by s (the number of scales and the
   fraction of x_n each G_n sees stay the paper's), and the width grows by s^2 (High-Res-SinGAN: "the number of
   filters needs to be squared"): 32 s^2 channels (never below the paper's cap of 128), the same at
   every scale so each scale warm-starts from the previous one, which High-Res-SinGAN's epoch decay (on) relies on.

2. Slicing: the image is split into four equal quadrants; four quadrant pyramids (each at the full
   image's resolution, so they keep its detail) and one base pyramid on the whole image are trained.
   Stitching samples each quadrant, assembles the 2x2 mosaic, injects it into the base pyramid at a
   middle stage (the editing mechanism) and blends the result in along a band around the seams.

The five trainings and the stitch are separate functions on saved models, so a pipeline can run the
trainings in parallel and the stitch after them. A config `cfg` describes a quadrant's pyramid; the
full image, and so the stitched output, is twice its max_size.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..config import Config
from ..images import resize
from ..singan import SinGAN
from ..train import train
from .common import as_image, check_start_scale, injection_input, seeded
from .harmonize import blend_mask

PARTS = ("base", "q0", "q1", "q2", "q3")  # q0..q3: top-left, top-right, bottom-left, bottom-right
PAPER_SIZE = 250  # the output size the paper's hyper-parameters are made for


# ---------------------------------------------------------------------------- 1. the scaled architecture
def highres_rule(size: int, base: Config | None = None) -> Config:
    """The config for outputs of longer side `size`, from the paper's config scaled by s = size / 250.

    num_layer = round(5 s) (receptive field 1 + 2 num_layer with 3x3 kernels), min_size = round(25 s),
    width nfc = nfc_max = max(round(32 s^2), 128) at every scale, epoch decay on. Sizes up to 250 give
    the paper's config with that max_size.
    """
    base = base or Config()
    s = size / PAPER_SIZE
    if s <= 1.0:
        return base.replace(max_size=size)
    num_layer = round(base.num_layer * s)
    width = max(round(base.nfc * s * s), base.nfc_max)
    return base.replace(
        max_size=size,
        min_size=max(round(base.min_size * s), 1 + num_layer * (base.ker_size - 1)),
        num_layer=num_layer,
        nfc=width,
        nfc_max=width,
        epoch_decay=True,
    )


# ---------------------------------------------------------------------------- 2. slicing
def _even(image: torch.Tensor) -> torch.Tensor:
    h, w = image.shape[-2:]
    return image[..., : h // 2 * 2, : w // 2 * 2]


def quadrants(image: torch.Tensor) -> list[torch.Tensor]:
    """The four equal quadrants (top-left, top-right, bottom-left, bottom-right) of [B, 3, H, W];
    an odd height or width loses its last row or column first."""
    x = _even(image)
    h, w = x.shape[-2] // 2, x.shape[-1] // 2
    return [x[..., :h, :w], x[..., :h, w:], x[..., h:, :w], x[..., h:, w:]]


def _check_part(part: str) -> None:
    if part not in PARTS:
        raise ValueError(f"unknown part {part!r} (known: {', '.join(PARTS)})")


def part_image(image: torch.Tensor, part: str) -> torch.Tensor:
    """What `part` trains on: the whole image (cropped to even sizes) for "base", else its quadrant."""
    _check_part(part)
    return _even(image) if part == "base" else quadrants(image)[PARTS.index(part) - 1]


def full_image(image: torch.Tensor | str, cfg: Config) -> torch.Tensor:
    """The full image of a slicing run: longer side at most 2 * cfg.max_size, even height and width."""
    x = as_image(image)[:1]
    h, w = x.shape[-2:]
    if max(h, w) > 2 * cfg.max_size:
        scale = 2 * cfg.max_size / max(h, w)
        x = resize(x, (max(1, round(h * scale)), max(1, round(w * scale)))).clamp(-1, 1)
    return _even(x)


def highres_config(cfg: Config, part: str) -> Config:
    """The config `part` trains with: `cfg` for a quadrant; for the base, `cfg` with twice its max_size
    (the whole image at full resolution, and otherwise the same hyper-parameters, as High-Res-SinGAN trains it)."""
    _check_part(part)
    return cfg.replace(max_size=2 * cfg.max_size) if part == "base" else cfg


def train_part(
    image: torch.Tensor | str,
    part: str,
    cfg: Config,
    out: str,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_stage: Callable[[dict[str, Any]], None] | None = None,
) -> str:
    """Train one of the five pyramids of `image` into the folder `out` (resumable) and return `out`."""
    x = part_image(full_image(image, cfg), part)
    train(x, highres_config(cfg, part), out=out, device=device, progress=progress, on_stage=on_stage)
    return out


def _load(model: SinGAN | str, device: str | torch.device | None) -> SinGAN:
    return model if isinstance(model, SinGAN) else SinGAN.load(model, device)


def mosaic(
    quadrant_models: Sequence[SinGAN | str], n: int = 1, seed: int = 0, device: str | torch.device | None = None
) -> torch.Tensor:
    """The raw 2x2 mosaic [n, 3, H, W] of one random sample of each quadrant pyramid (seeded per quadrant)."""
    if len(quadrant_models) != 4:
        raise ValueError(f"expected four quadrant models, got {len(quadrant_models)}")
    models = [_load(m, device) for m in quadrant_models]
    shapes = {m.shapes[-1] for m in models}
    if len(shapes) != 1:
        raise ValueError(f"the quadrant models have different sizes {sorted(shapes)}: they are not of one image")
    tl, tr, bl, br = (m.sample(n, seed=seed * len(PARTS) + i).to(models[0].device) for i, m in enumerate(models))
    return torch.cat([torch.cat([tl, tr], dim=3), torch.cat([bl, br], dim=3)], dim=2)


def seam_mask(shape: tuple[int, int], band: int) -> torch.Tensor:
    """[1, 1, H, W] weight that is 1 within `band` px of the two seams, falling off smoothly (the editing
    blend: the seam lines dilated by a disk of radius `band`, blurred with sigma band / 4)."""
    h, w = shape
    lines = torch.zeros(1, 1, h, w)
    lines[..., h // 2 - 1 : h // 2 + 1, :] = 1
    lines[..., :, w // 2 - 1 : w // 2 + 1] = 1
    return blend_mask(lines, band, band / 4)


def default_band(shape: tuple[int, int]) -> int:
    """Half-width of the seam band: 4% of the longer side (20 px at 500 px), at least 2 px."""
    return max(2, round(0.04 * max(shape)))


def remove_seams(
    base: SinGAN, raw: torch.Tensor, inject_stage: int | None = None, band: int | None = None, seed: int = 0
) -> torch.Tensor:
    """The mosaic `raw` [n, 3, H, W] injected into the base pyramid at `inject_stage` (default: the middle
    stage), generated to the finest scale and blended in along the seams."""
    shape = tuple(raw.shape[-2:])
    if shape != tuple(base.shapes[-1]):
        raise ValueError(f"the mosaic is {shape[1]}x{shape[0]} but the base model's image is "
                         f"{base.shapes[-1][1]}x{base.shapes[-1][0]}: they are not of one image")
    k = check_start_scale(base, max(1, base.num_stages // 2) if inject_stage is None else inject_stage)
    band = default_band(shape) if band is None else band
    if band < 1:
        raise ValueError(f"the seam band must be at least 1 px, got {band}")
    raw = raw.to(base.device)
    smoothed = base.generate(raw.shape[0], injected=injection_input(raw, base, k), inject_stage=k,
                             generator=seeded(seed * len(PARTS) + 4, base.device))
    weight = seam_mask(shape, band).to(base.device)
    return ((1 - weight) * raw + weight * smoothed).clamp(-1, 1)


def stitch(
    base_url: str | SinGAN,
    quadrant_urls: Sequence[str | SinGAN],
    n: int = 1,
    seed: int = 0,
    inject_stage: int | None = None,
    band: int | None = None,
    device: str | torch.device | None = None,
) -> torch.Tensor:
    """n stitched High-Res samples [n, 3, H, W] in [-1, 1] at the full image's (the base's training) size."""
    if n < 1:
        raise ValueError(f"n must be at least 1, got {n}")
    base = _load(base_url, device)
    raw = mosaic(quadrant_urls, n, seed, device)
    return remove_seams(base, raw, inject_stage, band, seed)


def seam_strength(x: torch.Tensor) -> float:
    """How visible the seams are: the mean jump between neighbouring pixels across the two seam lines,
    divided by the mean jump between all neighbouring pixels (about 1 when there is no seam)."""
    h, w = x.shape[-2:]
    dx = (x[..., :, 1:] - x[..., :, :-1]).abs()
    dy = (x[..., 1:, :] - x[..., :-1, :]).abs()
    across = torch.cat([dx[..., :, w // 2 - 1].flatten(), dy[..., h // 2 - 1, :].flatten()]).mean()
    overall = torch.cat([dx.flatten(), dy.flatten()]).mean()
    return float(across / overall.clamp_min(1e-8))

