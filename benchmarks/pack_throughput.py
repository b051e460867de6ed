"""Packed training throughput: K pyramids of one shape trained as one pack (`singan_core.train_pack`).

    python benchmarks/pack_throughput.py [IMAGE] [--device cpu|cuda] [--k 1,4,8,16] [--preset paper]
        [--scales all|N,M] [--epochs E] [--prefetch P] [--threads 1] [--no-measure | --no-count]

Measured, per K and scale: seconds per epoch per image (the pack's epoch / K; one epoch = Dsteps D
steps and Gsteps G steps of every image, the draws of up(x~_{n+1}) amortized over P iterations as
training amortizes them over `prefetch`); per K: hours per image and images per hour at the preset's
iterations (over the scales measured), peak memory. Without IMAGE, a synthetic image of birds.png's
size (164x244: 9 scales at the paper preset) is used: the cost does not depend on the content.

Counted, per K and scale (every scale, whatever --scales says): aten operations per epoch per image,
with a TorchDispatchMode (every operator call that reaches the dispatcher, forward, backward and the
penalty's double backward; "kernels" leaves out views and allocations, which launch nothing), for the
preset's `prefetch` and without the CPU's cache-sized chunks of generation (as on a GPU), on a tiny
stand-in of the same structure (operation counts do not depend on the image size); and the FLOPs of
an epoch per image (direct-convolution and matmul FLOPs with torch's formulas, at the real sizes; the
same for every K, grouped convolutions do each image's work once).

Then a model's ESTIMATE (not a measurement) of a GPU epoch: launch-bound time = kernels of the pack's
epoch x --launch-us, compute-bound time = K x FLOPs / (--peak-tflops x --efficiency), the epoch taking
the larger of the two; images per hour follow from the preset's iterations.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import resource
import sys
from pathlib import Path
from unittest import mock

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import train_speed as ts  # noqa: E402  (FlopCounter, random_model, clock: one home for each)

from singan_core import singan as singan_module  # noqa: E402
from singan_core.config import preset  # noqa: E402
from singan_core.devices import resolve_device  # noqa: E402
from singan_core.images import load_image  # noqa: E402
from singan_core.train import _SUBBATCH, prepare_reals, random_prevs, train_stage  # noqa: E402

NO_KERNEL = {"empty", "empty_strided", "empty_like", "_local_scalar_dense", "detach", "alias", "lift_fresh", "set_"}


class LaunchCounter(ts.FlopCounter):
    """FLOPs (as train_speed's counter) plus every aten operator call, and those that run a kernel."""

    def __init__(self) -> None:
        super().__init__()
        self.ops = 0
        self.kernels = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        self.ops += 1
        if not func.is_view and func._overloadpacket.__name__ not in NO_KERNEL:
            self.kernels += 1
        return super().__torch_dispatch__(func, types, args, kwargs)


def synthetic(height: int = 164, width: int = 244) -> torch.Tensor:
    g = torch.Generator().manual_seed(0)
    yy, xx = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    img = torch.stack([torch.sin(7 * xx), torch.cos(9 * yy), torch.sin(11 * xx * yy)])
    return (0.8 * img + 0.2 * torch.randn(3, height, width, generator=g)).clamp(-1, 1).unsqueeze(0)


def packed(reals: list[torch.Tensor], K: int) -> list[torch.Tensor]:
    """The pack's x_n: K copies side by side (the cost of K different images of this shape)."""
    return [x.repeat(1, K, 1, 1) for x in reals]


def run_stage(k, reals, cfg, K, niter, prefetch, device, counter=None) -> float:
    """Seconds of train_stage for a pack of K at stage k (coarser stages with fresh weights)."""
    coarser = ts.random_model(reals, cfg, k)
    coarsers = [coarser] * K if coarser is not None else []
    torch.manual_seed(0)
    t = ts.clock()
    with counter if counter is not None else contextlib.nullcontext():
        train_stage(k, packed(reals, K), coarsers, cfg.replace(niter=niter, prefetch=prefetch), [], device,
                    progress=False)
    return ts.clock() - t


def epoch_seconds(k, reals, cfg, K, epochs, prefetch, device) -> float:
    """(t(2 + E) - t(2)) / E with E a multiple of P: both runs pay the set-up and the difference holds
    E epochs of steps and E / P chunks of up(x~_{n+1}) (P = 1: one chunk per epoch)."""
    run_stage(k, reals, cfg, K, 2, prefetch, device)  # warm-up (kernel selection, allocator)
    return (run_stage(k, reals, cfg, K, 2 + epochs, prefetch, device)
            - run_stage(k, reals, cfg, K, 2, prefetch, device)) / epochs


def ops_per_epoch(k, cfg, K, device) -> tuple[float, float]:
    """(aten ops, kernels) per epoch per image, on a stand-in with k + 1 stages of 24x24 and 4 channels
    (counts depend on neither; narrow layers take torch's convolution, as on a GPU), without CPU
    generation chunks: the steps of one epoch (3 iterations minus 2, both drawing one chunk of
    up(x~_{n+1})), plus one chunk of the preset's `prefetch` iterations / prefetch."""
    tiny = [torch.rand(1, 3, 24, 24, device=device) * 2 - 1 for _ in range(k + 1)]
    P = max(cfg.prefetch, 3)
    cfg = cfg.replace(nfc=4, nfc_max=4)
    counters = [LaunchCounter() for _ in range(3)]
    with mock.patch.object(singan_module, "CPU_CHUNK_BYTES", 2**62):
        for niter, counter in zip((2, 3), counters, strict=False):
            run_stage(k, tiny, cfg, K, niter, P, device, counter)
        coarser = ts.random_model(tiny, cfg, k)
        if coarser is not None:
            with counters[2]:  # one prefetch of up(x~), as train_stage draws them
                next(random_prevs([coarser] * K, (24, 24), cfg.prefetch * cfg.draws_per_iteration(k, len(tiny)), 0))
    steps = [counters[1].ops - counters[0].ops, counters[1].kernels - counters[0].kernels]
    return ((steps[0] + counters[2].ops / cfg.prefetch) / K, (steps[1] + counters[2].kernels / cfg.prefetch) / K)


def flops_per_epoch(k, reals, cfg, device) -> float:
    """FLOPs of one epoch of one image at the real size, including its 6 draws of up(x~_{n+1})."""
    totals = []
    for niter in (1, 2):
        counter = LaunchCounter()
        run_stage(k, reals, cfg, 1, niter, 1, device, counter)
        totals.append(counter.total)
    return totals[1] - totals[0]


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image", nargs="?", help="default: a synthetic image of birds.png's size")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--k", default="1,4,8,16", help="pack sizes, comma-separated")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--scales", default="all", help="scales to time: all or comma-separated stage indices")
    ap.add_argument("--epochs", type=int, help="timed epochs per scale (default: P, at least 2)")
    ap.add_argument("--prefetch", type=int, help="P for the timed runs (default: 1 on CPU, the preset's on CUDA)")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--no-measure", action="store_true", help="only count operations and FLOPs")
    ap.add_argument("--no-count", action="store_true", help="only measure (no counts, no model)")
    ap.add_argument("--launch-us", default="5,10", help="model: microseconds per kernel launch (one or two values)")
    ap.add_argument("--peak-tflops", type=float, default=60.0, help="model: fp32 peak of the GPU")
    ap.add_argument("--efficiency", type=float, default=0.5, help="model: share of the peak the convolutions reach")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    ts.DEVICE = device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    cfg = preset(args.preset)
    ks = [int(x) for x in args.k.split(",")]
    image = load_image(args.image) if args.image else synthetic()
    reals, r = prepare_reals([image], cfg)
    reals = [x.to(device) for x in reals]
    n = len(reals)
    timed = [] if args.no_measure else (range(n) if args.scales == "all" else [int(s) for s in args.scales.split(",")])
    prefetch = args.prefetch or (cfg.prefetch if device.type == "cuda" else 1)
    epochs = args.epochs or max(prefetch, 2)
    epochs = prefetch * math.ceil(epochs / prefetch)
    launch_us = [float(x) for x in args.launch_us.split(",")]

    print(f"{args.image or 'synthetic 164x244 image'}: {n} scales, finest {tuple(reals[-1].shape[-2:])}, "
          f"preset {args.preset}, device {device}, {args.threads} thread(s); timed: {epochs} epochs, P = {prefetch}")
    flops = [float("nan") if args.no_count else flops_per_epoch(k, reals, cfg, device) for k in range(n)]
    print("GFLOP per epoch per image (direct conv + matmul, incl. up(x~) draws): "
          + " ".join(f"{f / 1e9:.2f}" for f in flops))
    summary = []
    for K in ks:
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats()
        print(f"\nK = {K}")
        print(f"{'stage':>5} {'shape':>9} {'ch':>4} {'s/ep/img':>9} {'ops/ep/img':>11} {'kern/ep/img':>12} "
              f"{'GFLOP/ep':>9} " + " ".join(f"{f'model {u:g}us':>12}" for u in launch_us))
        hours = 0.0
        model_hours = [0.0] * len(launch_us)
        total_kernels = 0.0
        for k in range(n):
            sec = epoch_seconds(k, reals, cfg, K, epochs, prefetch, device) / K if k in timed else float("nan")
            ops, kernels = (float("nan"),) * 2 if args.no_count else ops_per_epoch(k, cfg, K, device)
            total_kernels += kernels
            compute = K * flops[k] / (args.peak_tflops * 1e12 * args.efficiency)
            model = [max(kernels * K * u * 1e-6, compute) / K for u in launch_us]  # seconds per epoch per image
            if k in timed:
                hours += sec * cfg.iterations(k, n) / 3600
            for j, m in enumerate(model):
                model_hours[j] += m * cfg.iterations(k, n) / 3600
            shape = "x".join(map(str, reals[k].shape[-2:]))
            print(f"{k:>5} {shape:>9} {cfg.channels(k):>4} {sec:>9.4f} {ops:>11.0f} {kernels:>12.0f} "
                  f"{flops[k] / 1e9:>9.2f} " + " ".join(f"{m * 1e3:>10.3f}ms" for m in model), flush=True)
        summary.append((K, hours, peak_memory_mb(device), total_kernels, model_hours))
    which = "all scales" if len(timed) == n else (f"scales {','.join(map(str, timed))} only" if timed else "")
    print(f"\nsummary (measured on {device}{', ' + which if which else ''}; the model is an estimate for a GPU "
          f"at {args.peak_tflops:g} TFLOP/s x {args.efficiency:g}, launches {args.launch_us} us)")
    print(f"{'K':>3} {'h/image':>8} {'images/h':>9} {'peak MB':>8} {'kern/ep/img':>12} "
          + " ".join(f"{f'model img/h {u:g}us':>18}" for u in launch_us))
    for K, hours, mem, kernels, model_hours in summary:
        measured = f"{hours:>8.3g} {1 / hours:>9.3g}" if hours else f"{'-':>8} {'-':>9}"
        print(f"{K:>3} {measured} {mem:>8.0f} {kernels:>12.0f} " + " ".join(f"{1 / h:>18.1f}" for h in model_hours))
    if device.type == "cpu":
        print("peak MB on CPU is the process's max RSS so far (K ascending: the largest K's peak)")
    print(f"(up(x~) draws come in batches of {_SUBBATCH} per image; ops counted for prefetch = {cfg.prefetch})")


if __name__ == "__main__":
    main()
