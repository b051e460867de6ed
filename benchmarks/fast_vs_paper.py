"""The quality protocol of issue 12: the `fast` preset against `paper`, same images, same thread count.

    python benchmarks/fast_vs_paper.py IMAGE... --max-size S [--threads 1] [--jobs 2] [--samples 50] [--seed 0]
        [--set field=value]... [--variant NAME=field=value,...]... [--no-paper] [--cache DIR] [--out DIR]

Trains preset("paper") and preset("fast") (max_size S, the seed and every `--set`, applied to both) on every
image (and every `--variant`, a change to `fast`, each compared with `paper` as `fast` is: a lever left out or
a candidate), `--threads` torch threads per training and `--jobs` trainings at once in niced processes, into
`--cache`/<stem>_<image sha>_<config hash>_t<threads>/ (outside git; an unfinished training resumes from its last
finished scale). Each finished run's figures go to `--out`/runs/<same key>_n<samples>/figures.json with its first 4
samples as PNGs (small, to commit): a later session with those files needs neither the models nor a retraining.

Per run, with x_0 the image resized by the pyramid at S, and samples and reconstruction rounded to 8 bits:
patch SWD of 7x7 patches (mean over the samples, two sets of projections), SinGAN's diversity and the
reconstruction RMSE, as benchmarks/reference_parity.py measures them (its functions), and the training wall time
(the model report's total_seconds, with `machine`, the processor that took it: cached `paper` figures reused on
another machine print a caution, since their ratio then compares machines). Printed per image and overall, with
the issue's acceptance: `fast` at least 20x less wall time, patch SWD at most 1.1x `paper`'s, diversity within
20%, reconstruction RMSE at most 1.5x (overall: totals and means over the images). `--out` gets
fast_vs_paper.csv (and .parquet with pandas) and <stem>.png per image: x_0, 4 `paper` samples, 4 `fast` samples
(and 4 of each variant). Look at the pictures too: blurrier samples, copies of the input or a lost global
structure fail whatever the numbers say.
With --no-paper (S = 250, where `paper` takes about a day per image) `fast` and the variants are trained and
reported alone.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path

import torch
from reference_parity import SHOWN, finished, load_ours, measure, parse_variants, train_all, write_grid, write_table

from singan_core.config import Config, parse_overrides, preset
from singan_core.images import ImageError, atomic_write, load_image, to_pil
from singan_core.singan import SinGAN
from singan_core.train import prepare_reals

ROOT = Path(__file__).resolve().parent.parent
PRESETS = ("paper", "fast")
TARGETS = {"speed": 20.0, "swd": 1.1, "diversity": 0.2, "rec": 1.5}
TARGET_TEXT = "fast >= 20x less wall time, patch SWD <= 1.1x, diversity within 20%, rec RMSE <= 1.5x"


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def file_sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:8]


def run_figures(out: Path, image: Path, name: str, cfg: Config, samples: int) -> dict:
    """The figures of one finished training (its model in `out`), with what a later session needs."""
    ours = load_ours(out, samples)
    reals, _ = prepare_reals([load_image(str(image))], cfg)
    report = SinGAN.load(str(out), "cpu").report
    stages = report["stages"]
    return {
        "image": image.name, "preset": name, "config_hash": cfg.hash(), "config": cfg.to_dict(),
        "scales": len(stages), "samples": samples, **measure(reals[-1], ours),
        "iterations": [s["iterations"] for s in stages],
        "gp_evaluations": [s.get("gp_evaluations") for s in stages],
        "trained_stages": [s.get("trained_stages") for s in stages],
        "machine": report.get("machine"),  # the processor that took wall_s (None: trained before it was recorded)
        "shown": ours["samples"][:SHOWN],
    }


def save_figures(folder: Path, figures: dict) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, x in enumerate(figures["shown"]):
        with atomic_write(str(folder / f"sample_{i}.png")) as f:
            to_pil(x).save(f, format="PNG")
    with atomic_write(str(folder / "figures.json"), "w") as f:
        f.write(json.dumps({k: v for k, v in figures.items() if k != "shown"}, indent=1) + "\n")


def load_figures(folder: Path) -> dict | None:
    try:
        figures = json.loads((folder / "figures.json").read_text())
        shown = [load_image(str(folder / f"sample_{i}.png")) for i in range(SHOWN)]
    except (FileNotFoundError, json.JSONDecodeError, ImageError):
        return None
    return {**figures, "shown": torch.cat(shown)}


def verdicts(paper: dict, fast: dict) -> dict[str, bool]:
    return {"speed": paper["wall_s"] >= TARGETS["speed"] * fast["wall_s"],
            "swd": fast["swd"] <= TARGETS["swd"] * paper["swd"],
            "diversity": abs(fast["diversity"] / paper["diversity"] - 1) <= TARGETS["diversity"],
            "rec": fast["rec_rmse"] <= TARGETS["rec"] * paper["rec_rmse"]}


def machines_caveat(rows: list[dict], name: str) -> str | None:
    """A warning when the wall times compared were not all taken on one processor, or a run's is not recorded:
    the speed ratios then compare machines as much as presets (cached `paper` figures from another session)."""
    seen = {side: sorted({r[side].get("machine") or "not recorded" for r in rows}) for side in ("paper", "fast")}
    if len(seen["paper"]) == 1 and seen["paper"] == seen["fast"] and seen["paper"][0] != "not recorded":
        return None
    return (f"caution: the wall times were not all taken on one processor (paper: {', '.join(seen['paper'])}; {name}: "
            f"{', '.join(seen['fast'])}), so the speed ratios are not a measurement of {name} against paper")


def _mark(ok: bool) -> str:
    return "ok" if ok else "FAIL"


def report(rows: list[dict], name: str = "fast") -> None:
    print(f"\n{name} against paper:")
    print("\n| image | wall s paper / fast (ratio) | patch SWD paper / fast (ratio) | diversity paper / fast (ratio) "
          "| rec RMSE paper / fast | fast iterations | verdicts speed, SWD, diversity, rec |")
    print("| --- " * 7 + "|")
    for r in rows:
        p, f, v = r["paper"], r["fast"], r["verdicts"]
        print(f"| {r['image']} ({p['shape']}, {p['scales']} scales) | {p['wall_s']:.0f} / {f['wall_s']:.0f} "
              f"({p['wall_s'] / f['wall_s']:.1f}x) | {p['swd']:.5f} / {f['swd']:.5f} ({f['swd'] / p['swd']:.2f}x) "
              f"| {p['diversity']:.3f} / {f['diversity']:.3f} ({f['diversity'] / p['diversity']:.2f}) "
              f"| {p['rec_rmse']:.4f} / {f['rec_rmse']:.4f} | {sum(f['iterations'])} "
              f"| {', '.join(_mark(v[k]) for k in TARGETS)} |")
    n = len(rows)
    total = {side: {k: sum(r[side][k] for r in rows) / n for k in ("wall_s", "swd", "diversity", "rec_rmse")}
             for side in PRESETS}
    overall = verdicts(total["paper"], total["fast"])
    met = {k: sum(r["verdicts"][k] for r in rows) for k in TARGETS}
    p, f = total["paper"], total["fast"]
    print(f"\n{name} overall ({n} images): wall time {p['wall_s']:.0f} s / {f['wall_s']:.0f} s per image "
          f"({p['wall_s'] / f['wall_s']:.1f}x less), mean patch SWD {f['swd'] / p['swd']:.2f}x paper's, mean diversity "
          f"{f['diversity'] / p['diversity']:.2f}x, mean rec RMSE {f['rec_rmse'] / p['rec_rmse']:.2f}x; images meeting "
          + ", ".join(f"{k} {met[k]}/{n}" for k in TARGETS) + " -> "
          + ("all targets met" if all(overall.values()) and all(v == n for v in met.values()) else
             "targets NOT all met") + f" ({TARGET_TEXT})")
    caveat = machines_caveat(rows, name)
    if caveat:
        print(caveat)
    print_longest([r["fast"] for r in rows], name)


def report_alone(runs: list[dict], name: str = "fast") -> None:
    """The figures of `name` without a `paper` run to compare with (--no-paper)."""
    print(f"\n{name} alone (no paper run):")
    print("\n| image | wall s | patch SWD | diversity | rec RMSE | iterations per scale |")
    print("| --- " * 6 + "|")
    for f in runs:
        print(f"| {Path(f['image']).stem} ({f['shape']}, {f['scales']} scales) | {f['wall_s']:.0f} | {f['swd']:.5f} "
              f"| {f['diversity']:.3f} | {f['rec_rmse']:.4f} | {', '.join(map(str, f['iterations']))} |")
    print_longest(runs, name)


def print_longest(runs: list[dict], name: str) -> None:
    slowest = max(f["wall_s"] for f in runs)
    print(f"{name}'s longest training: {slowest / 60:.1f} min (the issue's S = 250 target: at most 60 min)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="+", type=Path)
    ap.add_argument("--max-size", type=int, required=True)
    ap.add_argument("--threads", type=int, default=1, help="torch threads per training (both presets)")
    ap.add_argument("--jobs", type=int, default=2, help="trainings at once")
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="FIELD=VALUE",
                    help="applied to both presets, repeatable (e.g. --set niter=20 for a toy run)")
    ap.add_argument("--variant", action="extend", nargs="+", default=[], metavar="NAME=field=value,...",
                    help="changes to fast, each compared with paper (e.g. nogp=gp_every=1 j1=concurrent_stages=1)")
    ap.add_argument("--no-paper", action="store_true",
                    help="train and report fast (and the variants) alone, e.g. at S = 250 where paper takes a day")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "fast_vs_paper")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "fast_vs_paper")
    args = ap.parse_args()
    if args.samples < SHOWN or args.jobs < 1 or args.threads < 1:
        fail(f"--samples must be at least {SHOWN}, --jobs and --threads at least 1")
    try:
        changes = {"max_size": args.max_size, "seed": args.seed, **parse_overrides(args.overrides)}
        configs = {name: preset(name).replace(**changes) for name in PRESETS}
    except (ValueError, TypeError) as e:
        fail(str(e))
    configs.update(parse_variants(args.variant, configs["fast"], reserved=PRESETS))
    if args.no_paper:
        del configs["paper"]
    compared = [name for name in configs if name != "paper"]

    # check every input before training anything
    x0s = {}
    for image in args.images:
        try:
            reals, _ = prepare_reals([load_image(str(image))], configs["fast"])  # paper's pyramid too
        except (ImageError, ValueError) as e:
            fail(f"{image}: {e}")
        x0s[image] = reals[-1][0]
    keys = {(image, name): f"{image.stem}_{file_sha(image)}_{cfg.hash()}_t{args.threads}"
            for image in args.images for name, cfg in configs.items()}
    runs = {key: args.out / "runs" / f"{folder}_n{args.samples}" for key, folder in keys.items()}  # the figures
    figures = {key: load_figures(runs[key]) for key in keys}
    todo = [key for key in keys if figures[key] is None and not finished(args.cache / keys[key])]
    todo.sort(key=lambda key: key[1] != "paper")  # the long `paper` trainings first
    print(f"{len(keys) - len(todo)} of {len(keys)} trainings already done (figures in {args.out}/runs or models in "
          f"{args.cache}); training {len(todo)}, {args.jobs} at a time, {args.threads} thread(s) each", flush=True)
    if todo:
        train_all({key: (configs[key[1]], args.cache / keys[key]) for key in todo}, args.jobs, args.threads)
    for key, folder in keys.items():
        if figures[key] is None:
            figures[key] = run_figures(args.cache / folder, key[0], key[1], configs[key[1]], args.samples)
            save_figures(runs[key], figures[key])

    rows: dict[str, list[dict]] = {name: [] for name in compared}
    flat = []
    for image in args.images:
        paper = figures.get((image, "paper"))
        for name in configs:
            fig = figures[image, name]
            passed = {}
            if name != "paper" and paper is not None:
                rows[name].append({"image": image.stem, "paper": paper, "fast": fig, "verdicts": verdicts(paper, fig)})
                passed = {f"pass_{k}": v for k, v in rows[name][-1]["verdicts"].items()}
            flat.append({"image": image.stem, "preset": name, "config_hash": fig["config_hash"],
                         "threads": args.threads, "scales": fig["scales"], "wall_s": fig["wall_s"],
                         "swd": fig["swd"], "diversity": fig["diversity"], "rec_rmse": fig["rec_rmse"],
                         "total_iterations": sum(fig["iterations"]), **passed})
        write_grid(args.out / f"{image.stem}.png", [("x_0", [x0s[image]])]
                   + [(name, list(figures[image, name]["shown"])) for name in configs])
    print(f"\nfast_vs_paper: max_size {args.max_size}, {args.threads} thread(s) per training, {args.jobs} at a time, "
          f"{args.samples} samples; " + ", ".join(f"{name} {cfg.hash()}" for name, cfg in configs.items())
          + (f", --set {' '.join(args.overrides)}" if args.overrides else ""))
    for name in compared:
        if name != "fast":
            changed = {k: v for k, v in configs[name].to_dict().items() if v != getattr(configs["fast"], k)}
            print(f"\n{name} = fast with {', '.join(f'{k}={v}' for k, v in changed.items())}")
        if args.no_paper:
            report_alone([figures[image, name] for image in args.images], name)
        else:
            report(rows[name], name)
    write_table(args.out, "fast_vs_paper", flat)
    print(f"\nwrote {args.out}/fast_vs_paper.csv, one PNG per image (x_0, {SHOWN} paper, {SHOWN} fast samples) and "
          f"{args.out}/runs/")


if __name__ == "__main__":
    main()
