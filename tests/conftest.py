"""Shared fixtures: tiny synthetic images and one tiny trained pyramid per session."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(1)

# Tests that take `device` run on the CPU and, where a GPU is present, on CUDA too (the rest use the
# engine's default device: CUDA when present).
DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


@pytest.fixture(params=DEVICES)
def device(request) -> str:
    return request.param


def synthetic_image(height: int = 40, width: int = 48, seed: int = 0) -> torch.Tensor:
    """A smooth colourful [1, 3, H, W] image in [-1, 1] with some texture."""
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    phase = float(torch.rand((), generator=g)) * 3
    img = torch.stack([torch.sin(3 * xx + phase), torch.cos(4 * yy - phase), torch.sin(5 * xx * yy)])
    img = 0.8 * img + 0.1 * torch.randn(3, height, width, generator=g)
    return img.clamp(-1, 1).unsqueeze(0)


def write_png(path, x: torch.Tensor) -> str:
    arr = ((x[0].permute(1, 2, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
    Image.fromarray(arr).save(path)
    return str(path)


@pytest.fixture(scope="session")
def tiny_image() -> torch.Tensor:
    return synthetic_image()


@pytest.fixture(scope="session")
def tiny_model(tiny_image, tmp_path_factory):
    from singan_core import preset, train

    out = tmp_path_factory.mktemp("tiny_model")
    model = train(tiny_image, preset("test").replace(niter=60), out=str(out), progress=False)
    return model, str(out)


@pytest.fixture(scope="module")
def local_ray():
    """A private local Ray with 2 CPUs for one test module (never joins a running head)."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, logging_level="warning")
    yield ray
    ray.shutdown()
