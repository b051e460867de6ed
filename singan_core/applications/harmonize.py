"""Harmonization and editing (SinGAN sections 4.3 and 4.4): one mechanism, two defaults.

The naive composite (harmonization) or the edited image (editing) is reduced to the scale below K and
injected at stage K; G_K .. G_0 regenerate its detail with the training image's patch statistics. The
result is blended in only where the user pasted or edited: the mask is dilated with a disk (radius 7
for harmonization, 20 for editing, as the authors do), blurred with a Gaussian (sigma 5) and scaled
to [0, 1], and out = (1 - m) * input + m * generated, so pixels where m is 0 keep the input's values.
"""

from __future__ import annotations

import numpy as np
import torch
from scipy.ndimage import binary_dilation, gaussian_filter
from skimage.morphology import disk

from ..images import resize
from ..singan import SinGAN
from .common import as_image, check_start_scale, fit_to_model, injection_input, seeded

HARMONIZATION_DILATION = 7
EDITING_DILATION = 20
MASK_BLUR = 5.0
_MAX_GREY_FRACTION = 0.05  # a binary mask may have a few grey pixels along its edges (JPEG, antialiasing)


def read_mask(mask: torch.Tensor | str) -> torch.Tensor:
    """A black-and-white mask (file or tensor in [-1, 1]) as a [1, 1, H, W] float tensor of 0s and 1s.

    ValueError if it is not binary (more than 5% grey pixels) or has no white pixel.
    """
    v = (as_image(mask)[:1].mean(dim=1, keepdim=True) + 1) / 2  # grey level in [0, 1]
    grey = ((v > 0.2) & (v < 0.8)).float().mean().item()
    if grey > _MAX_GREY_FRACTION:
        raise ValueError(f"the mask is not binary: {grey:.0%} of its pixels are neither black nor white")
    binary = (v > 0.5).float()
    if not binary.any():
        raise ValueError("the mask is empty: it has no white pixels")
    return binary


def blend_mask(mask: torch.Tensor, dilation: int, blur: float) -> torch.Tensor:
    """The authors' blending weight: mask dilated by a disk of radius `dilation`, Gaussian-blurred with
    sigma `blur` (truncated at 4 sigma) and scaled to [0, 1]. [1, 1, H, W] in, [1, 1, H, W] out."""
    if dilation < 0 or blur < 0:
        raise ValueError("dilation and blur must not be negative")
    m = mask[0, 0].detach().cpu().numpy() > 0.5
    if dilation > 0:
        m = binary_dilation(m, structure=disk(dilation).astype(bool))
    soft = m.astype(np.float64)
    if blur > 0:
        soft = gaussian_filter(soft, sigma=blur, mode="nearest")
    lo, hi = soft.min(), soft.max()
    if hi > lo:
        soft = (soft - lo) / (hi - lo)
    return torch.from_numpy(soft).float()[None, None].to(mask.device)


def inject_and_blend(
    model: SinGAN,
    image: torch.Tensor | str,
    mask: torch.Tensor | str,
    start_scale: int,
    *,
    dilation: int,
    blur: float = MASK_BLUR,
    n: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Inject `image` at stage K, generate to the finest scale, blend inside the dilated, blurred mask.

    Image and mask may have any size but must match each other; both are resized to the training size
    x_0, which is the output's size: [n, 3, H, W] in [-1, 1].
    """
    k = check_start_scale(model, start_scale)
    x = as_image(image)[:1]
    m = read_mask(mask)
    if x.shape[-2:] != m.shape[-2:]:
        raise ValueError(
            f"the mask is {m.shape[-1]}x{m.shape[-2]} but the image is {x.shape[-1]}x{x.shape[-2]}: "
            "they must have the same size"
        )
    x = fit_to_model(x, model)
    m = (resize(m.to(model.device), model.shapes[-1]) > 0.5).float()
    weight = blend_mask(m, dilation, blur)
    generated = model.generate(n, injected=injection_input(x, model, k), inject_stage=k,
                               generator=seeded(seed, model.device))
    return ((1 - weight) * x + weight * generated).clamp(-1, 1)


def harmonize(
    model: SinGAN,
    composite: torch.Tensor | str,
    mask: torch.Tensor | str,
    start_scale: int,
    *,
    dilation: int = HARMONIZATION_DILATION,
    blur: float = MASK_BLUR,
    n: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Harmonize the pasted object (white in `mask`) of a naive `composite` with the training image."""
    return inject_and_blend(model, composite, mask, start_scale, dilation=dilation, blur=blur, n=n, seed=seed)


def edit(
    model: SinGAN,
    edited: torch.Tensor | str,
    mask: torch.Tensor | str,
    start_scale: int,
    *,
    dilation: int = EDITING_DILATION,
    blur: float = MASK_BLUR,
    n: int = 1,
    seed: int = 0,
) -> torch.Tensor:
    """Make the edited region (white in `mask`) of an edited training image seamless."""
    return inject_and_blend(model, edited, mask, start_scale, dilation=dilation, blur=blur, n=n, seed=seed)
