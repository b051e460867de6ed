"""Diversity as the SinGAN paper defines it (section 4, "diversity"), a set-level number.

"The standard deviation (std) of the intensity values of each pixel over the generated images, averaged over
all pixels, and normalized by the std of the intensity values of the training image":

    diversity = mean_{c, y, x} std_i(x~_i[c, y, x]) / std_{c, y, x}(x[c, y, x])

Both stds are population stds (numpy's default, ddof = 0). Intensities are the RGB values (averaged over the
channels as well as the pixels); `gray=True` uses the BT.601 luma 0.299 R + 0.587 G + 0.114 B instead, as
some re-implementations do. Any affine change of the intensity scale (e.g. [-1, 1] vs [0, 255]) cancels out.
"""

from __future__ import annotations

import torch

from ._common import as_batch

_LUMA = (0.299, 0.587, 0.114)


def _intensities(x: torch.Tensor, gray: bool) -> torch.Tensor:
    x = x.to(torch.float64)
    if gray:
        w = torch.tensor(_LUMA, dtype=x.dtype, device=x.device).view(1, 3, 1, 1)
        return (x * w).sum(dim=1, keepdim=True)
    return x


@torch.inference_mode()
def diversity(samples: torch.Tensor, real: torch.Tensor, *, gray: bool = False) -> float:
    """Mean per-pixel std over the samples [N, 3, H, W], divided by the std of the real image [1, 3, H', W'].

    0 for identical samples; NaN for a constant real image (its std is 0). The samples must share one size.
    """
    samples, real = as_batch(samples, "samples"), as_batch(real, "real")
    per_pixel = _intensities(samples, gray).std(dim=0, unbiased=False).mean()
    real_std = _intensities(real, gray).std(unbiased=False)
    if real_std == 0:
        return float("nan")
    return float(per_pixel / real_std)
