"""Training and sampling speed at the paper's settings, with the figures the engine issue asks for.

    python benchmarks/train_speed.py IMAGE [--threads 1] [--epochs 3] [--scales all|finest|N,M] [--device cpu|cuda]
        [--set field=value]...

Per scale: shape, channels, seconds per epoch (one epoch = one iteration of Dsteps D steps and
Gsteps G steps), conv GFLOP/s achieved (the FLOPs of direct convolutions, counted with torch's
formulas) next to a direct 3x3 conv peak measured in the same run (layers computed with Winograd
do fewer multiplications, so they can exceed it); the same epoch done the way the authors' reference code does it
(a fake drawn through every coarser generator one at a time per D step, the G steps reusing the last
D-step fake, D weight gradients always on), for the speed-up; the projected full training time;
peak memory; and sampling seconds per sample with the conv floor.
Figures are measured in one run: ratios are meaningful, absolute seconds depend on the machine.
On CUDA (`--device cuda`) times are wall-clock with the device synchronized, the conv peak is measured
on the device and the reference-style epochs run there too.
"""

from __future__ import annotations

import argparse
import resource
import time

import torch
import torch.nn.functional as F
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.flop_counter import flop_registry

from singan_core.config import preset
from singan_core.conv import Conv2d
from singan_core.devices import resolve_device
from singan_core.images import load_image, resize
from singan_core.singan import SinGAN, Stage, stage_noise
from singan_core.train import _new_networks, gradient_penalty, prepare_reals, random_prevs, train_stage

AUTHORS_EPOCH, AUTHORS_FINEST, AUTHORS_SAMPLE = 67.0, 51.0, 0.72  # seconds, from the engine issue


DEVICE = torch.device("cpu")  # set by --device


def clock() -> float:
    """CPU time of this process with one thread (robust to other load on the machine), else wall time
    (on CUDA: after the device finished its queued work)."""
    if DEVICE.type == "cuda":
        torch.cuda.synchronize()
        return time.perf_counter()
    return time.process_time() if torch.get_num_threads() == 1 else time.perf_counter()


class FlopCounter(TorchDispatchMode):
    """Counts FLOPs of convolutions and matmuls (forward, backward and double backward) with torch's
    own per-op formulas; unlike FlopCounterMode it does not track modules, which breaks autograd.grad."""

    def __init__(self) -> None:
        super().__init__()
        self.total = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if func._overloadpacket in flop_registry:
            self.total += flop_registry[func._overloadpacket](*args, **kwargs, out_val=out)
        elif func._overloadpacket is torch.ops.aten._nnpack_spatial_convolution:  # counted as a direct conv
            weight = args[1]
            self.total += 2 * out.numel() * weight[0].numel()
        return out


def conv_peak(channels: int, shape: tuple[int, int], reps: int = 5) -> float:
    """GFLOP/s of a channels->channels 3x3 forward conv at this size (the machine's practical peak)."""
    conv = torch.nn.Conv2d(channels, channels, 3).to(DEVICE)
    x = torch.randn(1, channels, *shape, device=DEVICE)
    with torch.no_grad():
        conv(x)
        t = clock()
        for _ in range(reps):
            conv(x)
        dt = (clock() - t) / reps
    flops = 2 * 9 * channels * channels * (shape[0] - 2) * (shape[1] - 2)
    return flops / dt / 1e9


def plain_convs(net: torch.nn.Module) -> torch.nn.Module:
    """The same network computed with torch's own convolutions (no Winograd), as the authors' code is."""
    for m in net.modules():
        if isinstance(m, Conv2d):
            m.__class__ = torch.nn.Conv2d
    return net


def random_model(reals: list[torch.Tensor], cfg, upto: int, plain: bool = False) -> SinGAN | None:
    """Coarser stages 0..upto-1 with fresh weights: the same cost as trained ones (`plain`: torch's
    own convolutions)."""
    if upto == 0:
        return None
    stages = []
    for k in range(upto):
        (G, _), (D, _) = _new_networks(k, reals[k], cfg, (), DEVICE)
        stages.append(Stage((plain_convs(G) if plain else G).eval(), 0.1 if k else 1.0, tuple(reals[k].shape[-2:])))
    z_star = stage_noise(0, 1, tuple(reals[0].shape[-2:]), DEVICE)
    return SinGAN(cfg, stages, z_star, reals[:upto], 0.75)


def engine_epoch_seconds(k, reals, coarser, cfg, epochs: int) -> float:
    """Seconds per epoch of `train_stage` in steady state: the training steps ((t(2 + E) - t(2)) / E,
    both runs drawing one chunk of up(x~_{n+1})), plus the batched drawing of one chunk / `prefetch`."""
    def run(n: int) -> float:
        torch.manual_seed(0)
        t = clock()
        steady = cfg.replace(niter=n, epoch_decay=False, early_stop_patience=0)  # exactly n epochs
        train_stage(k, reals, [coarser] if coarser else [], steady, [], DEVICE, progress=False)
        return clock() - t

    run(2)  # warm-up: oneDNN builds its kernels for these shapes on first use
    steps = (run(2 + epochs) - run(2)) / epochs
    if coarser is None:
        return steps
    chunk = cfg.prefetch * cfg.draws_per_iteration(k, len(reals))  # as train_stage draws them
    next(random_prevs([coarser], tuple(reals[k].shape[-2:]), chunk, 0))  # warm-up
    t = clock()
    next(random_prevs([coarser], tuple(reals[k].shape[-2:]), chunk, 0))
    return steps + (clock() - t) / cfg.prefetch


def engine_epoch_flops(k, reals, coarser, cfg) -> float:
    with FlopCounter() as counter:
        train_stage(k, reals, [coarser] if coarser else [], cfg.replace(niter=1, prefetch=1), [], DEVICE,
                    progress=False)
    with FlopCounter() as setup:  # the one-off reconstruction pass, to subtract
        if coarser is not None:
            with torch.no_grad():
                coarser.generate(1, fixed_noise_stages=k)
    return counter.total - setup.total


def reference_epoch_seconds(k, reals, coarser, cfg, epochs: int) -> float:
    """One epoch as the authors' code runs it (our restatement of its algorithm, not its code)."""
    # The authors' images come from NumPy HxWx3 arrays (np2torch), i.e. channels-last tensors, and
    # their networks use torch's own convolutions.
    real = reals[k].contiguous(memory_format=torch.channels_last)
    shape = tuple(real.shape[-2:])
    (G, _), (D, _) = _new_networks(k, real, cfg, (), DEVICE)
    plain_convs(G)
    plain_convs(D)
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2))
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2))
    amp = 0.1 if k else 1.0
    z_prev = torch.zeros_like(real)

    def draw_prev() -> torch.Tensor:  # draw_concat('rand'): every coarser G, one sample at a time
        if coarser is None:
            return torch.zeros_like(real)
        return resize(coarser.generate(1), shape).contiguous(memory_format=torch.channels_last)

    def epoch() -> None:
        noise_ = stage_noise(k, 1, shape, real.device)
        fake = None
        for _ in range(cfg.dsteps):
            D.zero_grad()
            err_real = -D(real).mean()
            err_real.backward(retain_graph=True)
            prev = draw_prev()
            fake = G(amp * noise_, prev)
            err_fake = D(fake.detach()).mean()
            err_fake.backward(retain_graph=True)
            gradient_penalty(D, real, fake.detach(), cfg.gp_weight).sum().backward()
            opt_d.step()
        G.zero_grad()
        for _ in range(cfg.gsteps):
            (-D(fake).mean()).backward(retain_graph=True)
            rec = cfg.alpha * F.mse_loss(G(amp * z_prev, z_prev), real)
            rec.backward(retain_graph=True)
        # The reference steps G after each G step and backpropagates again through the same fake;
        # current PyTorch refuses that (weights changed in place), so we step once: the compute is the same.
        opt_g.step()

    epoch()  # warm-up
    t = clock()
    for _ in range(epochs):
        epoch()
    return (clock() - t) / epochs


def sampling(reals, cfg, n: int = 50) -> tuple[float, float]:
    """Seconds per sample (batched) and the conv FLOPs of one sample."""
    model = random_model(reals, cfg, len(reals))
    model.sample(2, seed=0)
    t = clock()
    model.sample(n, seed=0)
    per_sample = (clock() - t) / n
    with FlopCounter() as counter:
        model.sample(1, seed=0)
    return per_sample, counter.total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--preset", default="paper")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--epochs", type=int, default=3, help="timed epochs per scale (fine scales)")
    ap.add_argument("--scales", default="all", help="all, finest, or comma-separated stage indices (0 = coarsest)")
    ap.add_argument("--no-reference", action="store_true", help="skip the reference-style epochs")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="a config field changed from the preset, repeatable (e.g. --set rec_noise=fixed)")
    args = ap.parse_args()
    global DEVICE
    DEVICE = resolve_device(args.device)
    torch.set_num_threads(args.threads)
    try:
        cfg = preset(args.preset).override(args.overrides)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    reals, r = prepare_reals([load_image(args.image)], cfg)
    reals = [x.to(DEVICE) for x in reals]
    n_stages = len(reals)
    chosen = range(n_stages) if args.scales == "all" else (
        [n_stages - 1] if args.scales == "finest" else [int(s) for s in args.scales.split(",")])

    peak = conv_peak(128, tuple(reals[-1].shape[-2:]))
    print(f"image {args.image}: {n_stages} scales, r = {r:.4f}, finest {tuple(reals[-1].shape[-2:])}, "
          f"{args.threads} thread(s), preset {args.preset}"
          + (f" with {' '.join(args.overrides)}" if args.overrides else "") + f", device {DEVICE}")
    print(f"conv peak (3x3, 128->128, finest size, forward): {peak:.1f} GFLOP/s")
    columns = ("stage", 5), ("shape", 9), ("ch", 4), ("s/epoch", 8), ("GFLOP/s", 8), ("%peak", 6), ("ref s/ep", 9)
    print(" ".join(f"{name:>{width}}" for name, width in columns) + f" {'speedup':>8}")
    total_engine = total_ref = projected = finest = 0.0
    for k in chosen:
        coarser = random_model(reals, cfg, k)
        epochs = args.epochs if reals[k].shape[-1] > 80 else args.epochs * 5
        sec = engine_epoch_seconds(k, reals, coarser, cfg, epochs)
        gflops = engine_epoch_flops(k, reals, coarser, cfg) / sec / 1e9
        ref = float("nan") if args.no_reference else reference_epoch_seconds(
            k, reals, random_model(reals, cfg, k, plain=True), cfg, epochs)
        total_engine += sec
        if k == n_stages - 1:
            finest = sec
        total_ref += ref
        projected += sec * cfg.iterations(k, n_stages)
        shape = "x".join(map(str, reals[k].shape[-2:]))
        print(f"{k:>5} {shape:>9} {cfg.channels(k):>4} {sec:>8.3f} {gflops:>8.1f} {100 * gflops / peak:>5.0f}% "
              f"{ref:>9.3f} {ref / sec:>7.2f}x", flush=True)
    print(f"sum over these scales: {total_engine:.2f} s/epoch (reference-style {total_ref:.2f} s/epoch, "
          f"{total_ref / total_engine:.2f}x)")
    print(f"projected training time at {cfg.niter} iterations/scale: {projected / 3600:.2f} h")
    per_sample, sample_flops = sampling(reals, cfg)
    floor = sample_flops / (peak * 1e9)
    print(f"sampling: {per_sample:.3f} s/sample (batched, 50 samples), conv floor {floor:.3f} s "
          f"({per_sample / floor:.2f}x the floor; {sample_flops / 1e9:.1f} GFLOP per sample)")
    if args.threads == 1 and args.image.endswith("birds.png") and args.preset == "paper" and not args.overrides:
        print(f"vs the authors' code as measured in the engine issue (birds.png, 1 thread: {AUTHORS_EPOCH} s/epoch, "
              f"{AUTHORS_FINEST} s at the finest scale, {AUTHORS_SAMPLE} s/sample): "
              + (f"{AUTHORS_EPOCH / total_engine:.2f}x per epoch, " if args.scales == "all" else "")
              + (f"{AUTHORS_FINEST / finest:.2f}x at the finest scale, " if finest else "")
              + f"{AUTHORS_SAMPLE / per_sample:.2f}x sampling")
    cuda = f", CUDA peak allocated {torch.cuda.max_memory_allocated() / 2**20:.0f} MB" if DEVICE.type == "cuda" else ""
    print(f"peak memory (max RSS): {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB{cuda}")


if __name__ == "__main__":
    main()
