"""Screen changes to the finest scales of a preset in a fraction of the time of full trainings.

    python benchmarks/finest_scale.py IMAGE --max-size 96 [--preset fast] [--seed 0] [--threads 1]
        [--set field=value]... [--variant NAME=field=value,...]... [--paper-figures DIR] [--work DIR]

Trains the preset (with every `--set`) once up to, not including, its finest `finest_scales` scales (1: G_0 alone)
and keeps that snapshot in `--work`, then trains only those scales again from it, for the preset itself and for
every `--variant` (a change to it), and prints for each: their seconds and iterations, the run's seconds (the
snapshot's scales plus these), patch SWD, diversity and reconstruction RMSE (measured as
benchmarks/fast_vs_paper.py measures them), and their ratios to `paper`'s when `--paper-figures` names a
fast_vs_paper run folder of `paper` on this image (its figures.json).

Every variant's coarser scales are the preset's: a change is applied at the retrained scales alone. Training resumes
scale by scale and every scale draws from its own seed, so for a field that acts at those scales only
(`niter_finest`, `gsteps_finest`, `rec_steps_finest`, `lr_g_finest`, `lr_g_finest_channels`, and `finest_scales` up to
the preset's)
a line is exactly the model a full run of that config gives, and the preset's own line reproduces its full run.
Any other field (`lr_d`, `noise_amp`, `concurrent_stages`) is screened as that change at the retrained scales only,
which no config expresses: a lead to train in full with fast_vs_paper.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from pathlib import Path

import torch
from fast_vs_paper import run_figures
from reference_parity import parse_variants

from singan_core.config import Config, preset
from singan_core.images import atomic_write, load_image
from singan_core.train import prepare_reals, train


def add_screen_arguments(ap: argparse.ArgumentParser, work: str) -> None:
    """The arguments of a screening script (this one, coarse_stages.py): an image and its max_size, a preset with
    `--set` changes, `--variant` changes to it, the seed, threads and samples, and the folder its models go to."""
    ap.add_argument("image", type=Path)
    ap.add_argument("--max-size", type=int, required=True)
    ap.add_argument("--preset", default="fast")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE", help="a change to the preset")
    ap.add_argument("--variant", nargs="+", default=[], metavar="NAME=field=value,...")
    ap.add_argument("--work", type=Path, default=Path(work))


def screen_configs(args: argparse.Namespace) -> tuple[Config, dict[str, Config]]:
    """The preset at --max-size and --seed with the --set changes, and it and each --variant by name (the preset's
    own name first)."""
    base = preset(args.preset).replace(max_size=args.max_size, seed=args.seed).override(args.set)
    return base, {args.preset: base, **parse_variants(args.variant, base, reserved=(args.preset,))}


def retrain_finest(image: Path, cfg: Config, snapshot: Path, out: Path) -> None:
    """Train the scales of `cfg` above those saved in `snapshot` in `out`, starting from the snapshot's."""
    if (out / "model.json").exists():
        meta = json.loads((out / "model.json").read_text())["meta"]
        if meta.get("complete") and meta["config_hash"] == cfg.hash():
            return
    shutil.rmtree(out, ignore_errors=True)
    shutil.copytree(snapshot, out)
    saved = json.loads((out / "model.json").read_text())
    saved["meta"]["config_hash"] = cfg.hash()  # so that training resumes from these scales under cfg
    with atomic_write(str(out / "model.json"), "w") as f:
        f.write(json.dumps(saved))
    train(str(image), cfg, out=str(out), progress=False)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_screen_arguments(ap, ".cache/finest_scale")
    ap.add_argument("--paper-figures", type=Path, help="a fast_vs_paper runs/ folder of paper on this image")
    args = ap.parse_args()
    try:
        base, variants = screen_configs(args)
        image = load_image(str(args.image))
    except (ValueError, OSError) as e:
        sys.exit(f"finest_scale: {e}")
    torch.set_num_threads(args.threads)
    n = len(prepare_reals([image], base)[0])
    kept = n - base.finest_scales  # the scales trained once, below the finest `finest_scales`
    if kept < 1:
        sys.exit(f"finest_scale: the pyramid has {n} scale(s); nothing to keep below the finest {base.finest_scales}")
    root = args.work / f"{args.image.stem}_{base.hash()}"
    snapshot = root / "coarser"
    if not (snapshot / "model.json").exists():
        full = root / "full"

        def keep(report: dict) -> None:  # after the last scale kept: the snapshot, written whole
            if report["stage"] == kept - 1:
                shutil.rmtree(root / "coarser.tmp", ignore_errors=True)
                shutil.copytree(full, root / "coarser.tmp")
                (root / "coarser.tmp").rename(snapshot)

        train(str(args.image), base, out=str(full), progress=False, on_stage=keep)
    coarser_s = sum(s["seconds"] for s in json.loads((snapshot / "model.json").read_text())["report"]["stages"])
    paper = json.loads((args.paper_figures / "figures.json").read_text()) if args.paper_figures else None
    print(f"finest_scale: {args.image.name} at {args.max_size} px, {n} scales, the first {kept} trained once "
          f"({coarser_s:.0f} s); {args.preset} seed {args.seed}, {args.threads} thread(s)")
    for name, cfg in variants.items():
        out = root / name
        retrain_finest(args.image, cfg, snapshot, out)
        f = run_figures(out, args.image, name, cfg, args.samples)
        retrained = json.loads((out / "model.json").read_text())["report"]["stages"][kept:]
        seconds = sum(s["seconds"] for s in retrained)
        iterations = "/".join(str(s["iterations"]) for s in retrained)
        ratios = "" if paper is None else (f" ({f['swd'] / paper['swd']:.2f}x, "
                                           f"{f['diversity'] / paper['diversity']:.2f}, "
                                           f"{f['rec_rmse'] / paper['rec_rmse']:.2f}x paper's)")
        print(f"{name:>12}: finest {n - kept} scale(s) {seconds:5.1f} s, {iterations} iterations; run "
              f"{coarser_s + seconds:5.0f} s; patch SWD {f['swd']:.5f}, diversity {f['diversity']:.3f}, "
              f"rec RMSE {f['rec_rmse']:.4f}{ratios}", flush=True)


if __name__ == "__main__":
    main()
