"""Which scales of two pyramids make their samples' variety: the coarser stages of one, the finer of the other.

    python benchmarks/swap_scales.py MODEL_A MODEL_B [--cut 3 ...] [--samples 50] [--seed 0]

MODEL_A and MODEL_B are two models of the same image with the same pyramid (a `singan train` output or a folder
of benchmarks/fast_vs_paper.py's cache: `paper`'s and `fast`'s, say). For each `--cut` C, draws `--samples`
samples with stages 0 .. C-1 of one model and C .. N-1 of the other, for all four pairings, and prints SinGAN's
diversity of each against x_0 (fresh z_n at every stage; the same draws for every pairing). A row whose finer
stages raise the diversity of the same coarser stages' samples is a pyramid whose finer generators add variety (or
amplify what they are given); a row whose coarser stages change it, one whose layouts vary more. The twentieth
screening of `fast` (benchmarks/results/fast_vs_paper/SCREENINGS.md) found with it that `fast`'s finest two
scales add variety where `paper`'s keep it, and that `fast`'s coarser scales make less of it than `paper`'s.
Each generator gets inputs made by the other model's stages, which it was not trained on: a lead, not a proof.
"""

from __future__ import annotations

import argparse
import sys

import torch

from singan_core.metrics.diversity import diversity
from singan_core.singan import ModelFileError, SinGAN, upsample


def swapped(coarse: SinGAN, fine: SinGAN, cut: int, samples: int, seed: int) -> torch.Tensor:
    """`samples` samples of stages 0 .. cut-1 of `coarse` followed by stages cut .. N-1 of `fine`."""
    generator = torch.Generator().manual_seed(seed)
    x = coarse.generate(samples, until=cut, generator=generator)
    # up(x~) as `fine` itself would make it, then its stages from `cut` on, drawing on the same generator
    x = upsample(x, fine.shapes[cut], fine.config.upsample)
    return fine.generate(samples, injected=x, inject_stage=cut, generator=generator).clamp(-1, 1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_a", metavar="MODEL_A")
    parser.add_argument("model_b", metavar="MODEL_B")
    parser.add_argument("--cut", type=int, nargs="+", default=[3],
                        help="numbers of coarser stages taken from the first model of a pairing (default 3)")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    if args.samples < 2:
        sys.exit("error: --samples must be at least 2 (diversity is a spread over samples)")
    torch.set_num_threads(1)
    try:
        models = {"A": SinGAN.load(args.model_a, "cpu"), "B": SinGAN.load(args.model_b, "cpu")}
    except (ModelFileError, FileNotFoundError) as e:
        sys.exit(f"error: {e}")
    a, b = models["A"], models["B"]
    if a.shapes != b.shapes or not torch.equal(a.reals[-1][:1], b.reals[-1][:1]):
        sys.exit("error: the two models must be of the same image with the same pyramid (same x_0 and shapes)")
    if any(not 0 < c < a.num_stages for c in args.cut):
        sys.exit(f"error: --cut takes numbers of stages from 1 to {a.num_stages - 1}")
    print(f"A = {args.model_a}\nB = {args.model_b}\n")
    print("| coarser stages | finer stages | " + " | ".join(f"diversity, cut {c}" for c in args.cut) + " |")
    print("| --- | --- |" + " --- |" * len(args.cut))
    x0 = a.reals[-1][:1]
    for coarse in "AB":
        for fine in "AB":
            cells = [f"{diversity(swapped(models[coarse], models[fine], c, args.samples, args.seed), x0):.3f}"
                     for c in args.cut]
            print(f"| {coarse} | {fine} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
