"""Weight-free patch metrics: the patch sliced Wasserstein distance and the patch Fréchet distance.

Both compare the distribution of the real image's patches with that of one sample's patches, so, like
SIFID, they are per-sample numbers summarised by mean and std over N samples. Neither needs any download.

Patch SWD (`patch_swd`), with the defaults:
  1. Laplacian pyramid of `levels` = 3 levels (fewer when the real image's shorter side is below 64 px: the
     coarsest level keeps at least 16 px): G_0 = x, G_l+1 = 5-tap binomial blur [1 4 6 4 1]/16 (reflect
     padding) then stride 2; level l < L-1 is G_l - bilinear_up(G_l+1), the last level is G_L-1 itself.
  2. At each level, every 7x7x3 patch (stride 1, no padding) is a 147-dim descriptor. Descriptors are
     normalised per channel by the real image's mean and std at that level (the same affine map for real
     and sample, so identical images stay at distance 0 and contrast changes count).
  3. 128 random unit directions per level, drawn from N(0, I) with `torch.Generator().manual_seed(seed)`
     (level 0 first), the same for real and every sample.
  4. For each direction, the 1D Wasserstein-1 distance between the projected patch sets: the mean absolute
     difference of the sorted projections (when the two images have different sizes, both quantile
     functions are read at the m = min(n_real, n_sample) midpoints (i + 0.5) / m by linear interpolation).
  5. SWD = the mean over directions, then over levels (`per_level=True` gives the levels separately).
     This is the SW_1 of Karras et al.'s ProGAN SWD on one image pair, without their x1000 scaling and
     with all patches instead of a random subset.

Patch Fréchet distance (`patch_fd`, the loss of IMA206 turned into a metric): every 11x11x3 patch (stride 1,
no padding) is a 363-dim vector in F.unfold's order; the Fréchet distance (float64) between the Gaussians
(mean, unbiased covariance) of the real image's and the sample's patch vectors. The covariance is exact but
built from 1 x p row windows instead of the unfolded patches (`_patch_moments_by_rows`), about 5x less arithmetic.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ._common import as_batch, chunk_size, sort_rows
from .frechet import FrechetReference, gaussian_stats

SWD_PATCH = 7
SWD_LEVELS = 3
SWD_PROJECTIONS = 128
SWD_MIN_LEVEL_SIDE = 16
FD_PATCH = 11


# ---------------------------------------------------------------------------- patch SWD
def _binomial_kernel(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    k = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], dtype=dtype, device=device) / 16
    return (k[:, None] * k[None, :]).expand(channels, 1, 5, 5).contiguous()


def _blur_down(x: torch.Tensor) -> torch.Tensor:
    """5-tap binomial blur with reflect padding, then every second pixel: H -> ceil(H / 2)."""
    if min(x.shape[-2:]) < 3:
        raise ValueError(f"a pyramid level of {x.shape[-1]}x{x.shape[-2]} is too small to reduce")
    padded = F.pad(x, (2, 2, 2, 2), mode="reflect")
    return F.conv2d(padded, _binomial_kernel(x.shape[1], x.device, x.dtype), stride=2, groups=x.shape[1])


def laplacian_pyramid(x: torch.Tensor, levels: int) -> list[torch.Tensor]:
    """[B, C, H, W] -> `levels` band-pass images, finest first; the last one is the Gaussian residual."""
    out = []
    g = x
    for _ in range(levels - 1):
        down = _blur_down(g)
        out.append(g - F.interpolate(down, size=g.shape[-2:], mode="bilinear", align_corners=False))
        g = down
    out.append(g)
    return out


def swd_levels(height: int, width: int, levels: int = SWD_LEVELS) -> int:
    """How many pyramid levels an image of this size gets: at most `levels`, the coarsest >= 16 px."""
    short = min(height, width)
    fit = 1 + math.floor(math.log2(short / SWD_MIN_LEVEL_SIDE)) if short >= SWD_MIN_LEVEL_SIDE else 1
    return max(1, min(levels, fit))


def swd_directions(levels: int, dim: int, projections: int = SWD_PROJECTIONS, seed: int = 0) -> list[torch.Tensor]:
    """The fixed random unit directions, one [projections, dim] matrix per level, from `seed` (on the CPU)."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(levels):
        d = torch.randn(projections, dim, generator=g, dtype=torch.float64)
        out.append((d / d.norm(dim=1, keepdim=True)).float())
    return out


def _resample_sorted(values: torch.Tensor, m: int) -> torch.Tensor:
    """The quantile function of sorted rows [..., n] read at the m midpoints (i + 0.5) / m (exact when m = n)."""
    n = values.shape[-1]
    if n == m:
        return values
    pos = ((torch.arange(m, dtype=torch.float64, device=values.device) + 0.5) * n / m - 0.5).clamp(0, n - 1)
    lo = pos.floor().long()
    hi = (lo + 1).clamp(max=n - 1)
    frac = (pos - lo).to(values.dtype)
    return values[..., lo] * (1 - frac) + values[..., hi] * frac


def _wasserstein1_sorted(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """1D W1 between sorted empirical distributions a [..., n], b [..., n'] (row-wise), float64."""
    m = min(a.shape[-1], b.shape[-1])
    a, b = _resample_sorted(a, m), _resample_sorted(b, m)
    return (a - b).abs_().mean(dim=-1).to(torch.float64)  # torch's float32 mean sums in cascades: ~1e-7 relative


@torch.inference_mode()
def patch_swd(
    real: torch.Tensor,
    samples: torch.Tensor,
    *,
    levels: int = SWD_LEVELS,
    patch_size: int = SWD_PATCH,
    projections: int = SWD_PROJECTIONS,
    seed: int = 0,
    batch_size: int | None = None,
    per_level: bool = False,
) -> torch.Tensor:
    """Patch sliced Wasserstein distance (definition in the module docstring) of each sample to the real image.

    real [1, 3, H, W], samples [B, 3, H', W'] in [-1, 1], on any device. Returns float64 on the CPU: [B], or
    [B, L] with `per_level`.
    """
    real, samples = as_batch(real, "real"), as_batch(samples, "samples")
    if real.shape[0] != 1:
        raise ValueError(f"real must be one image, got a batch of {real.shape[0]}")
    device = samples.device
    real = real.to(device, torch.float32)
    L = swd_levels(*real.shape[-2:], levels)
    dirs = [
        d.to(device).view(projections, 3, patch_size, patch_size)
        for d in swd_directions(L, 3 * patch_size**2, projections, seed)
    ]

    # the real image: normalisation per level and its sorted projections, once
    scales, real_sorted = [], []
    for level, d in zip(laplacian_pyramid(real, L), dirs, strict=True):
        mean = level.mean(dim=(0, 2, 3), keepdim=True)
        std = level.std(dim=(0, 2, 3), keepdim=True, unbiased=False)
        std = torch.where(std > 1e-6, std, torch.ones_like(std))
        scales.append((mean, std))
        real_sorted.append(sort_rows(_project(level, mean, std, d, patch_size)[0]))

    h, w = samples.shape[-2:]
    step = chunk_size(batch_size, 8 * projections * h * w, samples.shape[0])
    out = []
    for start in range(0, samples.shape[0], step):
        chunk = samples[start : start + step].to(torch.float32)
        dists = []
        for level, (mean, std), d, ref in zip(laplacian_pyramid(chunk, L), scales, dirs, real_sorted, strict=True):
            proj = _project(level, mean, std, d, patch_size)
            # one sample at a time from here: a [D, n] block stays in cache, which makes sort and W1 much faster
            dists.append(torch.stack([_wasserstein1_sorted(ref, sort_rows(p)).mean() for p in proj]))
        out.append(torch.stack(dists, dim=1).cpu())
    result = torch.cat(out)
    return result if per_level else result.mean(dim=1)


def _project(level: torch.Tensor, mean: torch.Tensor, std: torch.Tensor, dirs: torch.Tensor, p: int) -> torch.Tensor:
    """Projections of every normalised p x p patch on every direction: [B, D, n_patches]."""
    if min(level.shape[-2:]) < p:
        raise ValueError(f"a pyramid level of {level.shape[-1]}x{level.shape[-2]} is smaller than the {p}x{p} patch")
    return F.conv2d((level - mean) / std, dirs).flatten(2)


# ---------------------------------------------------------------------------- patch Fréchet distance
def patch_stats(images: torch.Tensor, patch_size: int = FD_PATCH) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [B, d] and unbiased covariance [B, d, d] (float64) of each image's p x p x 3 patches, d = 3 p^2.

    The patch vectors are those of `F.unfold(image, p)` (order c, dy, dx). The covariance is computed exactly
    but without materialising them when the image is at least 2p - 1 pixels tall (`_patch_moments_by_rows`);
    smaller images take the direct unfold route (`_patch_moments_unfold`).
    """
    images = as_batch(images, "images").to(torch.float64)
    h, w = images.shape[-2:]
    if min(h, w) < patch_size or (h - patch_size + 1) * (w - patch_size + 1) < 2:
        raise ValueError(f"image {w}x{h} is smaller than the {patch_size}x{patch_size} patch")
    moments = _patch_moments_by_rows if h >= 2 * patch_size - 1 else _patch_moments_unfold
    mus, sigmas = zip(*(moments(x, patch_size) for x in images), strict=True)
    return torch.stack(mus), torch.stack(sigmas)


def pooled_patch_stats(x: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [d] and unbiased covariance [d, d] (float64) of every p x p patch of x [B, C, H, W], the patches of
    all B images pooled, d = C p^2: the direct route (F.unfold), differentiable, so the Fréchet patch loss of
    training (`adv_loss="frechet-patch"`) takes it on G_n's output."""
    patches = F.unfold(x, patch_size).transpose(1, 2).reshape(-1, x.shape[1] * patch_size**2)
    return gaussian_stats(patches)


def _patch_moments_unfold(x: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The direct route for one image x [C, H, W] (float64)."""
    return pooled_patch_stats(x.unsqueeze(0), p)


def _patch_moments_by_rows(x: torch.Tensor, p: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The same numbers as `_patch_moments_unfold` in about a fifth of the arithmetic. x [C, H, W] float64.

    With the image centred per channel (which leaves the covariance unchanged and keeps the sums small), the
    patch Gram matrix sum_patches v v^T has the entry, for patch offsets (ay, ax) and (by, bx),
        sum_{py} Hrow(py + ay, py + by)[(c1, ax), (c2, bx)],   Hrow(u, v) = R_u^T R_v,
    where R_u [W - p + 1, C p] holds the 1 x p windows of image row u. For a fixed row offset d = by - ay the
    sums over py of all (ay, ay + d) blocks share a core range of rows, taken in one large matrix product; the
    few rows at either end are added per block. Requires H >= 2p - 1 so that the core is not empty.
    """
    C, H, W = x.shape
    Hp, Wp = H - p + 1, W - p + 1
    n = Hp * Wp
    channel_mean = x.mean(dim=(1, 2))
    x = x - channel_mean.view(C, 1, 1)
    q = C * p
    R = x.unfold(2, p, 1).permute(1, 2, 0, 3).reshape(H, Wp, q)  # R[u, j, (c, ax)] = x[c, u, j + ax]
    gram = x.new_empty(p, p, q, q)  # [ay, by, (c1, ax), (c2, bx)]
    for d in range(-(p - 1), p):
        a0, a1 = max(0, -d), min(p - 1, p - 1 - d)  # the ay of this offset: a0..a1, with by = ay + d
        core = R[a1 : a0 + Hp].reshape(-1, q).T @ R[a1 + d : a0 + Hp + d].reshape(-1, q)  # rows in every block
        left = torch.bmm(R[a0:a1].transpose(1, 2), R[a0 + d : a1 + d])  # rows a0..a1-1
        right = torch.bmm(R[a0 + Hp : a1 + Hp].transpose(1, 2), R[a0 + Hp + d : a1 + Hp + d])  # rows past the core
        zero = core.new_zeros(1, q, q)
        left_suffix = torch.cat([left.flip(0).cumsum(0).flip(0), zero])  # [k] = sum of left[k:]
        right_prefix = torch.cat([zero, right.cumsum(0)])  # [k] = sum of right[:k]
        for k, ay in enumerate(range(a0, a1 + 1)):
            gram[ay, ay + d] = core + left_suffix[k] + right_prefix[k]
    gram = gram.view(p, p, C, p, C, p).permute(2, 0, 3, 4, 1, 5).reshape(C * p * p, C * p * p)
    box_sums = x.unfold(1, Hp, 1).unfold(2, Wp, 1).sum(dim=(-1, -2))  # [C, p(ay), p(ax)]: each coordinate's sum
    mean = box_sums.reshape(-1) / n
    cov = (gram - n * torch.outer(mean, mean)) / (n - 1)
    return mean + channel_mean.repeat_interleave(p * p), cov


@torch.inference_mode()
def patch_fd(
    real: torch.Tensor,
    samples: torch.Tensor,
    *,
    patch_size: int = FD_PATCH,
    batch_size: int | None = None,
) -> torch.Tensor:
    """Patch Fréchet distance of each sample to the real image (IMA206's statistic): float64 [B] on the CPU."""
    real, samples = as_batch(real, "real"), as_batch(samples, "samples")
    if real.shape[0] != 1:
        raise ValueError(f"real must be one image, got a batch of {real.shape[0]}")
    ref = FrechetReference(*(t[0] for t in patch_stats(real.to(samples.device), patch_size)))
    h, w = samples.shape[-2:]
    step = chunk_size(batch_size, 8 * 3 * patch_size * h * w, samples.shape[0])
    out = []
    for start in range(0, samples.shape[0], step):
        mu, sigma = patch_stats(samples[start : start + step], patch_size)
        out.append(ref.distance(mu, sigma).cpu())
    return torch.cat(out)
