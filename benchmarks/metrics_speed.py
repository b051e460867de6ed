"""Evaluation speed: SIFID for 50 samples at 250 px, the patch metrics, diversity, and everything together.

    python benchmarks/metrics_speed.py [IMAGE] [--n 50] [--size 250] [--threads 0] [--weights PATH] [--device cpu]

Without IMAGE a synthetic 250 x 188 image is used. The "samples" are the real image with noise and blur of
varied strength (speed does not depend on their content, only on their size and number). Without --weights
the SIFID timings use a random-init weights file of the official file's shapes written to a temporary folder:
the same computation as with the ImageNet weights, but its SIFID values mean nothing.
Each figure is the best of --repeat runs (after a small warm-up): seconds of wall time on this machine, and the
process's CPU seconds (less sensitive to other load; with --threads 1 close to an idle core's wall time).
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from collections.abc import Callable

import numpy as np
import scipy.linalg
import torch
import torch.nn.functional as F

from singan_core.devices import device_name
from singan_core.images import load_image
from singan_core.metrics import (
    WEIGHTS_FILE,
    InceptionStem,
    diversity,
    evaluate,
    inception_stats,
    load_inception,
    patch_fd,
    patch_swd,
    random_inception_state_dict,
    sifid,
)
from singan_core.metrics.frechet import FrechetReference


def synthetic(height: int, width: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    img = torch.stack([torch.sin(9 * xx + 2 * yy), torch.cos(7 * yy - xx), torch.sin(13 * xx * yy)])
    img = img + 0.3 * F.interpolate(torch.randn(1, 3, height // 8, width // 8, generator=g), (height, width))[0]
    return (0.7 * img + 0.05 * torch.randn(3, height, width, generator=g)).clamp(-1, 1).unsqueeze(0)


def fake_samples(real: torch.Tensor, n: int, seed: int = 1) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        x = real + (0.02 + 0.2 * i / max(n - 1, 1)) * torch.randn(real.shape, generator=g)
        if i % 2:
            x = F.avg_pool2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), 3, stride=1)
        out.append(x.clamp(-1, 1))
    return torch.cat(out)


def timed(label: str, fn: Callable[[], object], repeat: int) -> float:
    """Best wall time of `repeat` runs, printed at once with the process CPU time of that run.

    On a machine shared with other work the wall time grows with the load; the CPU time much less (with
    --threads 1 it is close to the wall time an idle core would give)."""
    best = (float("inf"), float("inf"))
    for _ in range(repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        fn()
        best = min(best, (time.perf_counter() - t0, time.process_time() - c0))
    print(f"{label:<62}{best[0]:8.3f} s wall {best[1]:8.3f} s CPU", flush=True)
    return best[0]


def scipy_frechet_loop(ref_mu, ref_sigma, mus, sigmas) -> list[float]:
    """The authors' way of taking the Fréchet part: scipy.linalg.sqrtm(S1 @ S2) per sample."""
    out = []
    for mu, sigma in zip(mus, sigmas, strict=True):
        covmean = scipy.linalg.sqrtm(ref_sigma @ sigma).real
        out.append(float(((ref_mu - mu) ** 2).sum() + np.trace(ref_sigma) + np.trace(sigma) - 2 * np.trace(covmean)))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("image", nargs="?", help="Real image (default: synthetic 250 x 188).")
    parser.add_argument("--n", type=int, default=50, help="Number of samples (the paper: 50).")
    parser.add_argument("--size", type=int, default=250, help="Longer side of the images (the paper: 250).")
    parser.add_argument("--threads", type=int, default=0, help="Torch threads (0: torch's default).")
    parser.add_argument("--weights", help=f"The real {WEIGHTS_FILE} (default: a random-init file of its shapes).")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--repeat", type=int, default=1, help="Runs per figure (the best is shown).")
    args = parser.parse_args()
    if args.threads > 0:
        torch.set_num_threads(args.threads)

    real = load_image(args.image, max_size=args.size) if args.image else synthetic(round(args.size * 0.75), args.size)
    samples = fake_samples(real, args.n).to(args.device)
    real = real.to(args.device)
    h, w = real.shape[-2:]
    print(
        f"machine: {device_name(torch.device(args.device))}, {os.cpu_count()} CPUs, torch {torch.__version__}, "
        f"{torch.get_num_threads()} threads, device {args.device}"
    )
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"load average before the run: {load:.1f} (other processes on the machine slow every figure)")
    print(f"images: real {w}x{h}, {args.n} samples {w}x{h}")

    with tempfile.TemporaryDirectory() as tmp:
        weights = args.weights
        if weights is None:
            weights = os.path.join(tmp, WEIGHTS_FILE)
            torch.save(random_inception_state_dict(), weights)
            print("SIFID weights: RANDOM-INIT file of the official shapes (timings only; the values mean nothing)")
        else:
            print(f"SIFID weights: {weights}")

        t0 = time.perf_counter()
        load_inception(weights, 192, args.device)
        print(f"\n{'load the Inception stem (once per process)':<62}{time.perf_counter() - t0:8.3f} s wall")
        evaluate(real, samples[:2], inception_weights=weights, device=args.device)  # warm-up: lazy initialisations
        for layer in (64, 192):
            time_sifid(real, samples, load_inception(weights, layer, args.device), args.repeat)
        n = args.n
        timed(f"patch SWD (7x7, 3 levels, 128 projections), {n} samples", lambda: patch_swd(real, samples), args.repeat)
        timed(f"patch FD (11x11, float64), {n} samples", lambda: patch_fd(real, samples), args.repeat)
        timed(f"diversity, {n} samples", lambda: diversity(samples, real), args.repeat)
        timed(
            f"evaluate(): all four metrics, {n} samples",
            lambda: evaluate(real, samples, inception_weights=weights, device=args.device),
            1,
        )


def time_sifid(real: torch.Tensor, samples: torch.Tensor, model: InceptionStem, repeat: int) -> None:
    n, layer = samples.shape[0], model.layer
    timed(f"SIFID layer {layer}, {n} samples, batched", lambda: sifid(real, samples, model=model), repeat)
    timed(
        f"SIFID layer {layer}, {n} samples, one at a time",
        lambda: [sifid(real, s, model=model) for s in samples],
        repeat,
    )
    mu, sigma = inception_stats(model, samples)
    ref_mu, ref_sigma = (t[0] for t in inception_stats(model, real))
    timed(
        "  its Frechet part: eigen-decomposition, float64, batched",
        lambda: FrechetReference(ref_mu, ref_sigma).distance(mu, sigma),
        repeat,
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # scipy warns on singular products; the timing is what matters here
        timed(
            "  the same the script's way (scipy.linalg.sqrtm per sample)",
            lambda: scipy_frechet_loop(ref_mu.numpy(), ref_sigma.numpy(), mu.numpy(), sigma.numpy()),
            repeat,
        )


if __name__ == "__main__":
    main()
