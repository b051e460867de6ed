"""Screen changes to the coarsest scales of a preset in seconds: the variety and reconstruction each passes on.

    python benchmarks/coarse_stages.py IMAGE --max-size 96 [--stages 2] [--preset fast] [--seed 0] [--threads 1]
        [--samples 50] [--set field=value]... [--variant NAME=field=value,...]... [--reference MODEL_DIR]
        [--work DIR]

Trains only the coarsest `--stages` scales of the preset (with every `--set`) and of every `--variant` (a change to
it), each exactly as a full run of that config trains them (`train(..., scales=)`: the same seeds, so they are the
first scales of the full run's model), and prints per variant and scale: its seconds and iterations, the diversity
of its output x~_n against x_n over `--samples` samples with fresh noise at every scale, and the reconstruction
error RMSE(x~rec_n, x_n): the same figures benchmarks/diversity_by_scale.py prints for a whole model (its last and
reconstruction columns). `--reference` adds those of a trained model at the same scales (a `singan train` output
or a folder of fast_vs_paper.py's cache, e.g. `paper`'s) as the first line.

Why: in `paper`'s structure each scale's share of the samples' variety falls as it trains (the twenty-sixth
screening, benchmarks/results/fast_vs_paper/SCREENINGS.md), so a budget that leaves a scale short of convergence
shows up there first; at S = 96 a full run takes minutes, its coarsest scales seconds. Models are kept in
`--work`/<image stem>_<config hash>/ (reused by a later call; a larger `--stages` resumes them).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch
from diversity_by_scale import by_scale
from finest_scale import add_screen_arguments, screen_configs

from singan_core.images import load_image
from singan_core.singan import ModelFileError, SinGAN
from singan_core.train import prepare_reals, train


def figures(model: SinGAN, stages: int, samples: int, seed: int) -> tuple[list[float], list[float]]:
    """Per scale, coarsest first, up to `stages`: the diversity of x~_n against x_n and RMSE(x~rec_n, x_n)."""
    row = by_scale(model, samples, seed, fixed=[])
    return row["per_stage"][:stages], row["rec_rmse"][:stages]


def line(name: str, seconds: list[float] | None, iterations: list[int] | None, div: list[float],
         rec: list[float]) -> str:
    def cells(values: list, fmt: str) -> str:
        return ", ".join(format(v, fmt) for v in values)

    timing = "-" if seconds is None else cells(seconds, ".1f")
    its = "-" if iterations is None else "/".join(str(i) for i in iterations)
    return f"| {name} | {timing} | {its} | {cells(div, '.3f')} | {cells(rec, '.4f')} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_screen_arguments(ap, ".cache/coarse_stages")
    ap.add_argument("--stages", type=int, default=2, help="how many of the coarsest scales to train (default 2)")
    ap.add_argument("--reference", type=Path, help="a trained model of this image to compare with")
    args = ap.parse_args()
    try:
        base, variants = screen_configs(args)
        image = load_image(str(args.image))
        reference = SinGAN.load(str(args.reference), "cpu") if args.reference else None
    except (ValueError, OSError, ModelFileError) as e:
        sys.exit(f"coarse_stages: {e}")
    if args.samples < 2:
        sys.exit("coarse_stages: --samples must be at least 2 (diversity is a spread over samples)")
    n = len(prepare_reals([image], base)[0])
    if not 1 <= args.stages <= n:
        sys.exit(f"coarse_stages: --stages must lie in 1 .. {n} (the pyramid's scales at {args.max_size} px)")
    if reference is not None and reference.num_stages < args.stages:
        sys.exit(f"coarse_stages: the reference has {reference.num_stages} scale(s), fewer than --stages")
    torch.set_num_threads(args.threads)
    print(f"coarse_stages: {args.image.name} at {args.max_size} px, the coarsest {args.stages} of {n} scales; "
          f"{args.preset} seed {args.seed}, {args.samples} samples, {args.threads} thread(s)\n")
    print("| run | seconds per scale | iterations | diversity of x~_n per scale | rec RMSE per scale |")
    print("| --- | --- | --- | --- | --- |")
    if reference is not None:
        print(line(f"reference {args.reference.name}", None, None, *figures(reference, args.stages, args.samples,
                                                                           args.seed)), flush=True)
    for name, cfg in variants.items():
        out = args.work / f"{args.image.stem}_{cfg.hash()}"
        model = train(image, cfg, out=str(out), progress=False, scales=args.stages)
        stages = model.report["stages"][: args.stages]
        print(line(name, [s["seconds"] for s in stages], [s["iterations"] for s in stages],
                   *figures(model, args.stages, args.samples, args.seed)), flush=True)


if __name__ == "__main__":
    main()
