"""Paint-to-image (SinGAN section 4.2): a clipart made into a photo-realistic image.

The paint is reduced to the scale below K and injected at stage K in place of up(x~_{n+1}); the
generators G_K .. G_0 then add the detail of the training image. With `quantize`, as in the authors'
code: the training image at scale K is reduced to 5 colours by k-means, the paint is mapped to those
colours, and G_K is fine-tuned on colour-quantized inputs so it has learned to turn flat colour
regions into texture.
"""

from __future__ import annotations

import warnings

import torch
from scipy.cluster.vq import kmeans2

from ..images import resize
from ..singan import SinGAN
from ..train import train_stage
from .common import as_image, check_start_scale, fit_to_model, injection_input, seeded, training_image

PAINT_COLOURS = 5  # the reference's k-means clusters
FINETUNE_ITERATIONS = 500


def colour_centres(image: torch.Tensor, colours: int = PAINT_COLOURS, seed: int = 0) -> torch.Tensor:
    """k-means (k-means++ start, fixed seed) of the pixels of a [1, 3, h, w] image: [colours, 3] centres."""
    pixels = image[0].permute(1, 2, 0).reshape(-1, 3).double().cpu().numpy()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an image with fewer distinct colours leaves some clusters empty
        centres, _ = kmeans2(pixels, colours, minit="++", seed=seed)
    return torch.from_numpy(centres).float().to(image.device)


def map_to_colours(x: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
    """Every pixel of x [B, 3, H, W] replaced by its nearest colour centre."""
    pixels = x.permute(0, 2, 3, 1)  # B, H, W, 3
    nearest = torch.cdist(pixels.reshape(-1, 3), centres.to(x)).argmin(dim=1)
    return centres.to(x)[nearest].reshape(pixels.shape).permute(0, 3, 1, 2).contiguous()


def finetune_on_quantized(
    model: SinGAN, start_scale: int, centres: torch.Tensor, iterations: int = FINETUNE_ITERATIONS, seed: int = 0,
    progress: bool = False,
) -> SinGAN:
    """A copy of `model` whose G_K was trained further with colour-quantized inputs up(x~_{n+1}).

    Starts from the trained G_K, D_K; the real x_K and the reconstruction term are unchanged.
    """
    if iterations < 1:
        raise ValueError(f"fine-tune iterations must be at least 1, got {iterations}")
    k = start_scale
    # G_K alone, for exactly `iterations` (a model trained with the speed levers fine-tunes without them)
    cfg = model.config.replace(niter=iterations, epoch_decay=False, concurrent_stages=1, early_stop_patience=0)
    coarser = model.coarsest(k)
    cuda = [model.device.index or 0] if model.device.type == "cuda" else []
    with torch.random.fork_rng(devices=cuda):  # leave the caller's random state alone
        torch.manual_seed(seed)
        (stage,), _, _, _ = train_stage(k, model.reals, [coarser], cfg, [model.stages[k]], model.device, progress,
                                        prev_transform=lambda prev: map_to_colours(prev, centres))
    stages = [*model.stages[:k], stage, *model.stages[k + 1 :]]
    return SinGAN(model.config, stages, model.z_star, model.reals, model.scale_factor, model.report, model.meta)


def paint_to_image(
    model: SinGAN,
    paint: torch.Tensor | str,
    start_scale: int,
    *,
    quantize: bool = False,
    colours: int = PAINT_COLOURS,
    finetune_iterations: int = FINETUNE_ITERATIONS,
    n: int = 1,
    seed: int = 0,
    image_index: int = 0,
    progress: bool = False,
) -> torch.Tensor:
    """n images [n, 3, H, W] in [-1, 1] at the training size, made from `paint` injected at stage K."""
    k = check_start_scale(model, start_scale)
    training_image(model, image_index)  # checks the index
    paint = fit_to_model(as_image(paint)[:1], model)
    if quantize:
        x_k = model.reals[k][image_index : image_index + 1]
        centres = colour_centres(x_k, colours, seed)
        model = finetune_on_quantized(model, k, centres, finetune_iterations, seed, progress)
        injected = resize(map_to_colours(paint, centres), model.shapes[k])
    else:
        injected = injection_input(paint, model, k)
    out = model.generate(n, injected=injected, inject_stage=k, generator=seeded(seed, model.device))
    return out.clamp(-1, 1)
