"""Winograd convolutions (singan_core/conv.py) against torch's own: the same losses and sample quality.

    python benchmarks/conv_equivalence.py IMAGE [--preset quick] [--set nfc=64 ...] [--samples 20]

1. One training step from the same seed and weights with each implementation: the losses side by side
   (they agree to float32 rounding; later steps drift apart, because adversarial training amplifies any
   rounding difference, as it does between any two convolution algorithms).
2. A whole model trained with each: reconstruction RMSE, patch SWD and diversity of random samples.
The default preset is `quick` with nfc=64, so that every layer is wide enough to take the Winograd path.
"""

from __future__ import annotations

import argparse
import time

import torch

from singan_core import conv, train
from singan_core.config import preset
from singan_core.images import load_image
from singan_core.metrics import diversity, patch_swd
from singan_core.train import prepare_reals, train_stage


def first_step(image: torch.Tensor, cfg) -> list[float]:
    reals, _ = prepare_reals([image], cfg)
    torch.manual_seed(0)
    _, _, (report,), _ = train_stage(0, reals, [], cfg.replace(niter=1), [], torch.device("cpu"), progress=False)
    return report["curve"][0][1:]


def whole_model(image: torch.Tensor, cfg, samples: int) -> dict[str, float]:
    t = time.process_time()
    model = train(image, cfg, progress=False)
    seconds = time.process_time() - t
    real = model.reals[-1]
    rec = model.reconstruct()
    fakes = model.sample(samples, seed=1)
    return {
        "train CPU s": seconds,
        "reconstruction RMSE": float((rec - real).pow(2).mean().sqrt()),
        "patch SWD (mean)": float(patch_swd(real, fakes).mean()),
        "diversity": diversity(fakes, real),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("image")
    ap.add_argument("--preset", default="quick")
    ap.add_argument("--set", action="append", default=["nfc=64"], help="config overrides, name=value")
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = preset(args.preset).override(args.set)
    image = load_image(args.image)
    nnpack = torch.backends.nnpack.is_available()
    print(f"{args.image}, preset {args.preset} with {', '.join(args.set)}; NNPACK available: {nnpack}")
    names = ("loss_d", "loss_adv", "loss_rec")
    with conv.winograd_disabled():
        steps = {False: first_step(image, cfg)}
        results = {False: whole_model(image, cfg, args.samples)}
    steps[True] = first_step(image, cfg)
    results[True] = whole_model(image, cfg, args.samples)
    print("first training step (coarsest scale), torch vs Winograd:")
    for i, name in enumerate(names):
        a, b = steps[False][i], steps[True][i]
        print(f"  {name:<9} {a:+.7f} {b:+.7f}  relative difference {abs(a - b) / max(abs(a), 1e-12):.1e}")
    print(f"whole model, {args.samples} samples:          torch     Winograd")
    for key in results[False]:
        print(f"  {key:<24} {results[False][key]:>10.4f} {results[True][key]:>10.4f}")


if __name__ == "__main__":
    main()
