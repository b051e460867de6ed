"""Single-image animation (SinGAN section 4.5): a random walk in noise space around z*.

At every stage k >= K the noise map follows, as in the authors' code,

    z_t = alpha * z_rec + (1 - alpha) * (z_{t-1} + beta * (z_{t-1} - z_{t-2}) + (1 - beta) * w_t)

with w_t ~ N(0, 1), z_rec the reconstruction noise (z* at the coarsest stage, 0 above it), and the
walk started at z_{-2} = z_rec, z_{-1} = 0.95 z_rec + 0.05 w. beta gives the walk momentum (smooth
motion), alpha pulls it back to the reconstruction (the frames stay close to the input). Stages below
K use the reconstruction noise, so the coarse layout stays the input's.
"""

from __future__ import annotations

import importlib.util
import io
from collections.abc import Callable

import imageio.v3 as iio
import numpy as np
import torch

from ..images import atomic_write, to_uint8
from ..singan import SinGAN, stage_noise
from .common import check_start_scale, seeded, training_image

ANIMATION_START_SCALE = 2  # the default of the reference's generate_gif


def noise_walk(
    z_rec: torch.Tensor, frames: int, alpha: float, beta: float, draw: Callable[[], torch.Tensor]
) -> torch.Tensor:
    """The walk z_0 .. z_{T-1} around `z_rec` [1, 3, h, w] as one [T, 3, h, w] tensor; `draw()` gives w_t."""
    z_prev2 = z_rec
    z_prev1 = 0.95 * z_rec + 0.05 * draw()
    walk = []
    for _ in range(frames):
        z = alpha * z_rec + (1 - alpha) * (z_prev1 + beta * (z_prev1 - z_prev2) + (1 - beta) * draw())
        walk.append(z)
        z_prev2, z_prev1 = z_prev1, z
    return torch.cat(walk)


def _check(frames: int, alpha: float, beta: float) -> None:
    if frames < 1:
        raise ValueError(f"the number of frames must be at least 1, got {frames}")
    if not (0 <= alpha <= 1 and 0 <= beta <= 1):
        raise ValueError(f"alpha and beta must lie in [0, 1], got alpha={alpha}, beta={beta}")


def animate(
    model: SinGAN,
    frames: int = 100,
    *,
    alpha: float = 0.1,
    beta: float = 0.95,
    start_scale: int | None = None,
    seed: int = 0,
    image_index: int = 0,
    batch_size: int = 8,
) -> torch.Tensor:
    """`frames` frames [T, 3, H, W] in [-1, 1] of a walk in noise space from stage `start_scale` up.

    `start_scale` defaults to the reference's 2 (or the finest stage of a shallower model).
    """
    _check(frames, alpha, beta)
    k0 = min(ANIMATION_START_SCALE, model.num_stages - 1) if start_scale is None else start_scale
    check_start_scale(model, k0, lowest=0)
    training_image(model, image_index)  # checks the index
    gen = seeded(seed, model.device)
    walks = []
    for k, shape in enumerate(model.shapes):
        if k == 0:
            z_rec = model.z_star[image_index : image_index + 1]
        else:
            z_rec = torch.zeros(1, 3, *shape, device=model.device)
        if k < k0:
            walks.append(z_rec.expand(frames, -1, -1, -1))
        else:
            walks.append(noise_walk(z_rec, frames, alpha, beta, lambda k=k, shape=shape: stage_noise(
                k, 1, shape, model.device, gen)))
    chunks = []
    for start in range(0, frames, batch_size):
        stop = min(start + batch_size, frames)
        chunks.append(model.generate(stop - start, noise=lambda k, _shape, a=start, b=stop: walks[k][a:b]))
    return torch.cat(chunks).clamp(-1, 1)


def _uint8_frames(frames: torch.Tensor) -> np.ndarray:
    return np.stack([to_uint8(f) for f in frames])


def write_gif(frames: torch.Tensor, url: str, fps: float = 10) -> None:
    """Write frames [T, 3, H, W] in [-1, 1] as a looping GIF, atomically."""
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    data = iio.imwrite("<bytes>", _uint8_frames(frames), extension=".gif", duration=1000 / fps, loop=0)
    with atomic_write(url) as f:
        f.write(data)


def mp4_writer_available() -> bool:
    """True when imageio can write MP4 (the imageio-ffmpeg or PyAV package is installed)."""
    return any(importlib.util.find_spec(name) is not None for name in ("imageio_ffmpeg", "av"))


def write_mp4(frames: torch.Tensor, url: str, fps: float = 10) -> bool:
    """Write frames as an H.264 MP4 (atomically) if a writer is installed; return whether it was written.

    Frames are cropped to even sizes, which H.264's 4:2:0 colour needs.
    """
    if fps <= 0:
        raise ValueError(f"fps must be positive, got {fps}")
    if not mp4_writer_available():
        return False
    arr = _uint8_frames(frames)
    arr = arr[:, : arr.shape[1] // 2 * 2, : arr.shape[2] // 2 * 2]
    buf = io.BytesIO()
    if importlib.util.find_spec("av") is not None:
        iio.imwrite(buf, arr, extension=".mp4", plugin="pyav", codec="libx264", fps=fps)
    else:
        iio.imwrite(buf, arr, extension=".mp4", plugin="FFMPEG", fps=fps, macro_block_size=2)
    with atomic_write(url) as f:
        f.write(buf.getvalue())
    return True
