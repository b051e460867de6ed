"""Where a pyramid's sample variety and its reconstruction error are made, scale by scale.

    python benchmarks/diversity_by_scale.py MODEL_DIR... [--samples 50] [--seed 0] [--fixed 0 1 2]

For every trained model folder (a `singan train` output, or a folder of benchmarks/fast_vs_paper.py's cache), draws
`--samples` samples with the reconstruction noise {z*, 0, ...} at the first k stages and fresh z_n above them
(the paper's gen_start_scale), for each k of `--fixed`, and prints SinGAN's diversity of each set against x_0; then
the diversity of the coarsest stage's own output against x_N, sigma_n of every stage, the reconstruction RMSE
of every stage (x~rec_n, the pyramid run on {z*, 0, ..., 0} up to stage n, against x_n), what an injected image
keeps: the RMSE against x_0 of the samples made with x_0 itself injected at stage k (reduced to the stage below, as
harmonization, editing and paint-to-image inject; fresh noise from stage k on), for k = 1 .. N - 1, and the
diversity of the samples of every stage (x~_n, fresh noise throughout) against x_n.
Of the diversities, k = 0 is the one that benchmarks/fast_vs_paper.py reports (up to the rounding of its samples to
8 bits); k = N (every stage fixed) is the reconstruction, 0. Comparing two models row by row shows at which scales
one adds more variety: the seventh screening of `fast` against `paper`
(benchmarks/results/fast_vs_paper/SCREENINGS.md); the reconstruction column shows at which scale the final
reconstruction error stops falling (the thirteenth); the injection column how far the finer generators move a
natural image away from itself (the nineteenth: `fast`'s, trained on their coarser stages' outputs, move it 2-3x
as far as `paper`'s at the middle stages); the last column, the diversity of every stage's output x~_n against
x_n, at which stages it grows (the twentieth: `paper`'s trees3 reaches its variety at the 2nd stage and keeps it,
`fast`'s grows at every stage, most at the finest two; benchmarks/swap_scales.py pairs the stages of two models).
"""

from __future__ import annotations

import argparse
import sys

import torch

from singan_core.applications.common import injection_input
from singan_core.metrics.diversity import diversity
from singan_core.singan import ModelFileError, SinGAN


def by_scale(model: SinGAN, samples: int, seed: int, fixed: list[int]) -> dict:
    """Diversity with z* at the first k stages for each k of `fixed`, each stage's output's (x~_n against x_n; the
    first is the coarsest output's), each sigma_n, the reconstruction RMSE of every stage, RMSE(x~rec_n, x_n)
    (x~rec_n clamped to [-1, 1] as samples are), and the RMSE against x_0 of samples with x_0 injected at stage
    k = 1 .. N - 1."""
    def draw(**kw) -> torch.Tensor:
        with torch.no_grad():
            return model.generate(samples, generator=torch.Generator().manual_seed(seed), **kw).clamp(-1, 1)

    def rec_until(stages: int) -> torch.Tensor:  # x~rec of the last of the first `stages` stages
        with torch.no_grad():
            return model.generate(1, fixed_noise_stages=model.num_stages, until=stages).clamp(-1, 1)

    x0 = model.reals[-1][:1]

    def injected_at(k: int) -> float:  # RMSE(samples with x_0 injected at stage k, x_0)
        out = draw(injected=injection_input(x0, model, k), inject_stage=k)
        return (out - x0).pow(2).mean().sqrt().item()

    per_stage = [diversity(draw(until=k + 1), model.reals[k]) for k in range(model.num_stages)]
    return {
        "fixed": {k: diversity(draw(fixed_noise_stages=k), model.reals[-1]) for k in fixed},
        "coarsest": per_stage[0],
        "per_stage": per_stage,
        "noise_amp": [s.noise_amp for s in model.stages],
        "rec_rmse": [(rec_until(k + 1) - model.reals[k][:1]).pow(2).mean().sqrt().item()
                     for k in range(model.num_stages)],
        "injected": [injected_at(k) for k in range(1, model.num_stages)],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("models", nargs="+", metavar="MODEL_DIR")
    parser.add_argument("--samples", type=int, default=50)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--fixed", type=int, nargs="+", default=[0, 1, 2],
                        help="numbers of coarsest stages with z* fixed (default 0 1 2)")
    args = parser.parse_args()
    if args.samples < 2:
        sys.exit("error: --samples must be at least 2 (diversity is a spread over samples)")
    if any(k < 0 for k in args.fixed):
        sys.exit("error: --fixed takes numbers of stages, 0 or more")
    torch.set_num_threads(1)
    models = {}
    for folder in args.models:  # all loaded before the first line is printed: a bad folder fails up front
        try:
            models[folder] = SinGAN.load(folder, "cpu")
        except (ModelFileError, FileNotFoundError) as e:
            sys.exit(f"error: {e}")
    columns = [f"z* at {k} coarsest" for k in args.fixed] + ["coarsest output", "sigma_n", "rec RMSE per stage",
                                                             "x_0 injected at stage 1 .., RMSE to x_0",
                                                             "diversity of x~_n per stage"]
    print("| model | " + " | ".join(columns) + " |")
    print("| --- " * (len(args.fixed) + 6) + "|")
    for folder, model in models.items():
        fixed = [min(k, model.num_stages) for k in args.fixed]  # k past the finest stage: every stage fixed
        row = by_scale(model, args.samples, args.seed, fixed)
        cells = [f"{row['fixed'][k]:.3f}" for k in fixed]
        amps = ", ".join(f"{a:.4f}" for a in row["noise_amp"])
        recs = ", ".join(f"{e:.4f}" for e in row["rec_rmse"])
        injected = ", ".join(f"{e:.3f}" for e in row["injected"])
        per_stage = ", ".join(f"{d:.3f}" for d in row["per_stage"])
        cells += [f"{row['coarsest']:.3f}", amps, recs, injected, per_stage]
        print(f"| {folder.rstrip('/').split('/')[-1]} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
