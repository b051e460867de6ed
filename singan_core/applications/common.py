"""What the applications share: checking a start scale, reading inputs, and the injection input.

Stages are counted as everywhere in the code: stage k = N - n, so stage 0 is the coarsest scale x_N and
stage N the finest x_0. A start scale K is a stage index (the reference code's `*_start_scale`).
"""

from __future__ import annotations

import torch

from ..images import load_image, resize
from ..singan import SinGAN


def check_start_scale(model: SinGAN, start_scale: int, lowest: int = 1) -> int:
    """The start scale K if `lowest` <= K <= N, else a ValueError naming the valid range.

    Injection needs K >= 1 (G_N, stage 0, was never trained on an image input), as in the reference code.
    """
    last = model.num_stages - 1
    if not lowest <= start_scale <= last:
        where = f"start scale {start_scale} is outside the pyramid"
        if lowest > last:
            raise ValueError(f"{where}: the model has only {last + 1} scale(s)")
        raise ValueError(f"{where}: the model has stages 0..{last}, choose {lowest}..{last}")
    return start_scale


def as_image(image: torch.Tensor | str) -> torch.Tensor:
    """An image given as a URL or a tensor, as a [B, 3, H, W] tensor in [-1, 1]."""
    x = load_image(image) if isinstance(image, str) else image
    if x.dim() == 3:
        x = x.unsqueeze(0)
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"expected a [1, 3, H, W] image tensor, got shape {tuple(x.shape)}")
    return x.float()


def training_image(model: SinGAN, image_index: int = 0) -> torch.Tensor:
    """x_0 of training image `image_index`, [1, 3, H, W]."""
    if not 0 <= image_index < model.num_images:
        raise ValueError(f"image index {image_index} is outside 0..{model.num_images - 1}")
    return model.reals[-1][image_index : image_index + 1]


def fit_to_model(image: torch.Tensor, model: SinGAN) -> torch.Tensor:
    """`image` resized to the training size x_0 (a no-op when it already has that size), on the model's device."""
    return resize(image.to(model.device), model.shapes[-1]).clamp(-1, 1)


def injection_input(image: torch.Tensor, model: SinGAN, start_scale: int) -> torch.Tensor:
    """What the reference injects at stage K: the image reduced to x_{n+1}'s size (stage K - 1).

    `SinGAN.generate` upsamples it to stage K, so it carries exactly the detail that up(x~_{n+1})
    carries in training and G_n adds the rest.
    """
    return resize(image.to(model.device), model.shapes[start_scale - 1]).clamp(-1, 1)


def seeded(seed: int, device: torch.device) -> torch.Generator:
    generator = torch.Generator(device=device)
    generator.manual_seed(seed)
    return generator
