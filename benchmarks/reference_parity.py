"""This project's `paper` preset (and ablation variants) against the SinGAN authors' own code (issue 11).

    python benchmarks/reference_parity.py --import-authors RUN_DIR...
    python benchmarks/reference_parity.py --pool PARITY_CSV[:VARIANT]...
    python benchmarks/reference_parity.py IMAGE... [--max-size 96] [--niter 500] [--seed 1] [--samples 50]
        [--variant NAME=field=value,field=value ...] [--jobs 2] [--cache DIR] [--out DIR]

`--import-authors` copies the small results of finished runs of ../shared/reference/train_official.py (a run is
finished when its timing.json exists) to benchmarks/results/authors/<stem>_ms<S>_n<N>_s<seed>/: the samples and
rec.png as RGB PNGs (theirs are matplotlib's RGBA, alpha always opaque), x0.png (their own x_0, the finest
real_scale.png), timing.json, and noise_amp.json (their
per-scale sigma from TrainedModels/.../NoiseAmp.pth, loaded with weights_only=True; null with a note if it does
not load). Their weights are never copied.

The main mode trains `paper` (preset("paper") with max_size, niter and seed set) and every `--variant` on every
image, one torch thread per training, `--jobs` trainings at once in niced processes, into `--cache`/<stem>_<config
hash>/ (outside git): a finished run is reused, an unfinished one resumes from its last finished scale. Then, for
ours and for the authors' committed results of the same image and settings, against x_0 = this project's x_0 (the
image resized by the project's pyramid at max_size):
  - patch SWD of 7x7 patches (singan_core.metrics.patch.patch_swd), mean over the samples, averaged over two sets
    of random projections (seeds 0 and 1); lower is better;
  - SinGAN's diversity (singan_core.metrics.diversity);
  - reconstruction RMSE (ours: model.reconstruct(); theirs: rec.png);
  - contrast: per channel, the std of all samples' pixels / x_0's std (shown as the range over R, G, B);
  - mean drift: per channel, the mean of the samples minus x_0's (in [-1, 1]);
  - sigma_n (noise_amp) at the 2nd and 3rd coarsest scales, and the training wall time.
Both sides are compared as 8-bit images: our samples and reconstruction are rounded to 8 bits as a PNG would store
them. Their PNGs were written by matplotlib, which truncates (floor(255 p)), so their values are read at the middle
of each bin (+1/255 in [-1, 1], clamped); without that their means would read 0.004 low.
If their images differ from x_0 in shape (their pyramid resizes with their own imresize), patch SWD compares the
two patch distributions as they are (it accepts different sizes), diversity, contrast and drift need no common
size, and only their rec.png is resized to x_0's shape (the project's antialiased bicubic) for the RMSE.
Their own x_0 (their imresize) is not quite ours: the RMSE between the two, and their rec's RMSE against their own
x_0, are printed once and in the CSV (x0_rmse_authors, rec_rmse_own_x0_authors).

Per variant it prints the issue's table and a summary over the images with the issue's part-2 targets, each
checked per image: patch SWD at most 1.05x theirs, diversity within 10% of theirs, rec RMSE no worse, every
channel's mean drift within 0.02, then the images that meet all four (the issue asks for at least 4
photos). `--out` gets parity.csv (and parity.parquet when pandas is installed) and
<stem>.png per image: x_0, then rows of the reconstruction and 4 samples for the authors and each variant.

`--pool CSV[:VARIANT]...` reads one variant (default paper) from each parity.csv given (one per seed, say) and
prints the same table and targets for the mean of every figure over those runs, per image, on each side: one
seed's diversity or drift swings more than the targets allow. It trains nothing.
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import multiprocessing as mp
import os
import shutil
import sys
import uuid
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from singan_core.config import Config, preset
from singan_core.images import ImageError, atomic_write, load_image, resize, to_pil
from singan_core.metrics.diversity import diversity
from singan_core.metrics.patch import patch_swd
from singan_core.singan import SinGAN
from singan_core.train import prepare_reals, train

ROOT = Path(__file__).resolve().parent.parent
AUTHORS = ROOT / "benchmarks" / "results" / "authors"
SAMPLE_SEED = 0  # our samples: model.sample(n, seed=SAMPLE_SEED)
SWD_SEEDS = (0, 1)  # two sets of random projections
SHOWN = 4  # samples per row of the per-image PNG
TARGETS = "patch SWD <= 1.05x, diversity within 10%, rec RMSE no worse, |mean drift| <= 0.02"
MIN_PHOTOS = 4  # issue 11: the targets met on at least this many photos of ../shared/images/Images


def fail(message: str) -> None:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(1)


def run_name(stem: str, max_size: int, niter: int, seed: int) -> str:
    return f"{stem}_ms{max_size}_n{niter}_s{seed}"


# ---------------------------------------------------------------------------- the authors' runs
def authors_noise_amps(run: Path) -> dict:
    """Their sigma_n per scale, coarsest first, from the one NoiseAmp.pth of the run (a list of floats/tensors)."""
    found = sorted(run.glob("TrainedModels/**/NoiseAmp.pth"))
    if len(found) != 1:
        return {"noise_amp": None, "note": f"expected one TrainedModels/**/NoiseAmp.pth, found {len(found)}"}
    try:
        values = torch.load(found[0], map_location="cpu", weights_only=True)
        return {"noise_amp": [float(v) for v in values], "source": str(found[0].relative_to(run))}
    except Exception as e:  # any unpickling or conversion failure: report it, keep the rest of the import
        return {"noise_amp": None, "note": f"{found[0].name} did not load with weights_only=True ({e})"}


def import_authors(run: Path, authors: Path) -> None:
    if not (run / "timing.json").is_file():
        fail(f"{run}: no timing.json (the run is unfinished, or not a train_official.py run)")
    timing = json.loads((run / "timing.json").read_text())
    if timing.get("extra_args"):
        fail(f"{run}: ran with extra official options {timing['extra_args']}; only default settings are compared")
    samples = sorted((run / "samples").glob("*.png"))
    if not samples or not (run / "rec.png").is_file():
        fail(f"{run}: samples/*.png or rec.png is missing")
    dest = authors / run_name(Path(timing["image"]).stem, timing["max_size"], timing["niter"], timing["seed"])
    tmp = dest.with_name(f"{dest.name}.tmp-{uuid.uuid4().hex[:8]}")
    try:
        (tmp / "samples").mkdir(parents=True)
        for src, dst in [(p, tmp / "samples" / p.name) for p in samples] + [(run / "rec.png", tmp / "rec.png")]:
            Image.open(src).convert("RGB").save(dst)
        finest = max(run.glob("TrainedModels/*/*/*/real_scale.png"), key=lambda q: int(q.parent.name), default=None)
        if finest is not None:  # their own x_0 (their imresize), to see how far it is from ours
            Image.open(finest).convert("RGB").save(tmp / "x0.png")
        shutil.copyfile(run / "timing.json", tmp / "timing.json")
        noise = authors_noise_amps(run)
        (tmp / "noise_amp.json").write_text(json.dumps(noise, indent=1) + "\n")
        if dest.exists():
            shutil.rmtree(dest)
        tmp.rename(dest)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"imported {run} -> {dest} ({len(samples)} samples"
          + (f"; noise amplitudes not read: {noise['note']})" if noise["noise_amp"] is None else ")"))


def read_authors_png(path: Path) -> torch.Tensor:
    return (load_image(str(path)) + 1 / 255).clamp(-1, 1)


def load_authors(folder: Path, n: int) -> dict:
    """Their samples [n, 3, H, W] and rec [1, 3, H, W] (read at the middle of matplotlib's truncated bins)."""
    paths = sorted((folder / "samples").glob("*.png"))[:n]
    timing = json.loads((folder / "timing.json").read_text())
    noise = json.loads((folder / "noise_amp.json").read_text())["noise_amp"]
    own_x0 = read_authors_png(folder / "x0.png") if (folder / "x0.png").is_file() else None
    return {"samples": torch.cat([read_authors_png(p) for p in paths]), "rec": read_authors_png(folder / "rec.png"),
            "noise_amp": noise, "wall_s": timing["train_s"], "own_x0": own_x0}


# ---------------------------------------------------------------------------- ours
def _worker_init(threads: int = 1) -> None:
    os.nice(10)
    torch.set_num_threads(threads)
    torch.set_num_interop_threads(1)


def train_all(runs: dict[tuple[Path, str], tuple[Config, Path]], jobs: int, threads: int = 1) -> None:
    """Train every (image, variant name) -> (config, folder) of `runs`, `jobs` niced processes at a time
    with `threads` torch threads each; one line per finished training."""
    with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                             initargs=(threads,)) as pool:
        futures = {pool.submit(train_one, str(image), f"{image.stem} {name}", cfg, str(out)): (image, name, out)
                   for (image, name), (cfg, out) in runs.items()}
        for future in as_completed(futures):
            image, name, out = futures[future]
            try:
                seconds = future.result()
            except (ValueError, ImageError) as e:
                fail(f"training {image.stem} {name}: {e}")
            print(f"finished {image.stem} {name}: {seconds / 60:.1f} min -> {out}", flush=True)


def train_one(image: str, label: str, cfg: Config, out: str) -> float:
    """Train (or resume) into `out`; returns the training seconds of the whole pyramid."""
    def on_stage(r: dict) -> None:
        print(f"  {label}: scale {r['stage'] + 1} ({r['shape'][0]}x{r['shape'][1]}) in {r['seconds']:.0f} s",
              flush=True)

    model = train(image, cfg, out=out, progress=False, on_stage=on_stage)
    return model.report["total_seconds"]


def finished(out: Path) -> bool:
    try:
        return bool(json.loads((out / "model.json").read_text())["meta"]["complete"])
    except (FileNotFoundError, KeyError, json.JSONDecodeError):
        return False


def quantize(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] values rounded to the 256 levels an 8-bit PNG stores."""
    return ((x.clamp(-1, 1) + 1) * 127.5).round() / 127.5 - 1


def load_ours(out: Path, n: int) -> dict:
    model = SinGAN.load(str(out), "cpu")
    return {"samples": quantize(model.sample(n, seed=SAMPLE_SEED)), "rec": quantize(model.reconstruct()),
            "noise_amp": [s.noise_amp for s in model.stages], "wall_s": model.report["total_seconds"]}


# ---------------------------------------------------------------------------- measuring
def rmse(a: torch.Tensor, x0: torch.Tensor) -> float:
    a = resize(a, tuple(x0.shape[-2:])) if a.shape != x0.shape else a
    return float((a - x0).pow(2).mean().sqrt())


def measure(x0: torch.Tensor, run: dict) -> dict:
    samples, rec = run["samples"], run["rec"]
    swd = sum(float(patch_swd(x0, samples, seed=s).mean()) for s in SWD_SEEDS) / len(SWD_SEEDS)
    contrast = samples.std(dim=(0, 2, 3), unbiased=False) / x0.std(dim=(0, 2, 3), unbiased=False)
    drift = samples.mean(dim=(0, 2, 3)) - x0.mean(dim=(0, 2, 3))
    sigma = (run["noise_amp"] or [float("nan")] * 3) + [float("nan")] * 3
    extra = {}
    if run.get("own_x0") is not None:  # the authors' side only: their x_0 against ours, their rec against theirs
        extra = {"x0_rmse": rmse(run["own_x0"], x0), "rec_rmse_own_x0": rmse(rec, run["own_x0"])}
    return {"swd": swd, "diversity": diversity(samples, x0), "rec_rmse": rmse(rec, x0), **extra,
            "contrast": contrast.tolist(), "drift": drift.tolist(), "sigma2": float(sigma[1]),
            "sigma3": float(sigma[2]), "wall_s": float(run["wall_s"]), "shape": "x".join(map(str, samples.shape[-2:]))}


def passes(o: dict, a: dict) -> dict[str, bool]:
    return {"swd": o["swd"] <= 1.05 * a["swd"], "diversity": abs(o["diversity"] / a["diversity"] - 1) <= 0.10,
            "rec": o["rec_rmse"] <= a["rec_rmse"], "drift": max(map(abs, o["drift"])) <= 0.02}


def _span(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


def _signed(values: list[float]) -> str:
    return ",".join(f"{v:+.3f}" for v in values)


def print_block(name: str, cfg: Config | None, rows: list[dict], hashes: str = "") -> None:
    print(f"\n### {name} (config {cfg.hash() if cfg is not None else hashes})\n")
    print("| image | patch SWD ours / authors' (ratio) | diversity ours / authors' | contrast ours, authors' "
          "| rec RMSE ours / authors' | mean drift R,G,B ours; authors' | sigma 2nd, 3rd coarsest ours; authors' "
          "| training wall time ours, authors' |")
    print("| --- " * 8 + "|")
    for r in rows:
        o, a = r["ours"], r["authors"]
        print(f"| {r['image']} ({o['shape']}, {r['scales']} scales) | {o['swd']:.5f} / {a['swd']:.5f} "
              f"({o['swd'] / a['swd']:.2f}x) | {o['diversity']:.3f} / {a['diversity']:.3f} "
              f"| {_span(o['contrast'])}, {_span(a['contrast'])} | {o['rec_rmse']:.4f} / {a['rec_rmse']:.4f} "
              f"| {_signed(o['drift'])}; {_signed(a['drift'])} | {o['sigma2']:.3f}, {o['sigma3']:.3f}; "
              f"{a['sigma2']:.3f}, {a['sigma3']:.3f} | {o['wall_s'] / 60:.1f} min, {a['wall_s'] / 60:.1f} min |")
    keys = ("swd", "diversity", "rec_rmse", "wall_s")
    ratios = {k: sum(r["ours"][k] / r["authors"][k] for r in rows) / len(rows) for k in keys}
    ok = {k: sum(passes(r["ours"], r["authors"])[k] for r in rows) for k in ("swd", "diversity", "rec", "drift")}
    n = len(rows)
    print(f"\n{name}: mean ratios ours/authors' patch SWD {ratios['swd']:.2f}x, diversity "
          f"{ratios['diversity']:.2f}, rec RMSE {ratios['rec_rmse']:.2f}, wall time {ratios['wall_s']:.2f}; "
          f"max |drift| {max(max(map(abs, r['ours']['drift'])) for r in rows):.3f}. Images meeting: "
          f"SWD {ok['swd']}/{n}, diversity {ok['diversity']}/{n}, rec {ok['rec']}/{n}, drift {ok['drift']}/{n} -> "
          f"{'all targets met' if all(v == n for v in ok.values()) else 'targets NOT all met'} ({TARGETS})")
    every = [r.get("name", r["image"]) for r in rows if all(passes(r["ours"], r["authors"]).values())]
    print(f"images meeting every target: {len(every)}/{n} ({', '.join(every) or 'none'}); issue 11 asks for at "
          f"least {MIN_PHOTOS} photos -> {'met' if len(every) >= MIN_PHOTOS else 'NOT met'}")


def write_table(out: Path, name: str, flat: list[dict]) -> None:
    """<name>.csv (and <name>.parquet when pandas is installed) of flat rows, atomically."""
    text = io.StringIO()
    writer = csv.DictWriter(text, fieldnames=list(dict.fromkeys(k for row in flat for k in row)))
    writer.writeheader()
    writer.writerows(flat)
    with atomic_write(str(out / f"{name}.csv"), "w") as f:
        f.write(text.getvalue())
    try:
        import pandas as pd

        buf = io.BytesIO()
        pd.DataFrame(flat).to_parquet(buf, index=False)
        with atomic_write(str(out / f"{name}.parquet")) as f:
            f.write(buf.getvalue())
    except ImportError:
        pass


def write_grid(path: Path, grid: list[tuple[str, list[torch.Tensor]]]) -> None:
    """A PNG of labelled rows of [3, H, W] images; cells as large as the largest image."""
    h = max(t.shape[-2] for _, images in grid for t in images) + 4
    w = max(t.shape[-1] for _, images in grid for t in images) + 4
    columns = max(len(images) for _, images in grid)
    sheet = Image.new("RGB", (90 + w * columns, h * len(grid)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (label, images) in enumerate(grid):
        draw.text((4, i * h + h // 2 - 6), label[:14], fill="black")
        for j, img in enumerate(images):
            sheet.paste(to_pil(img), (90 + j * w, i * h + 2))
    buf = io.BytesIO()
    sheet.save(buf, format="PNG")
    with atomic_write(str(path)) as f:
        f.write(buf.getvalue())


def write_outputs(out: Path, rows: list[dict], grids: dict[str, list[tuple[str, list[torch.Tensor]]]]) -> None:
    flat = []
    for r in rows:
        row = {"image": r["image"], "variant": r["variant"], "config_hash": r["config_hash"], "scales": r["scales"]}
        for side in ("ours", "authors"):
            for key, value in r[side].items():
                if isinstance(value, list):
                    row.update({f"{key}_{ch}_{side}": v for ch, v in zip("rgb", value, strict=True)})
                else:
                    row[f"{key}_{side}"] = value
        flat.append(row)
    write_table(out, "parity", flat)
    for stem, grid in grids.items():
        write_grid(out / f"{stem}.png", grid)


def pool(specs: list[str]) -> None:
    """Print the table and targets of the mean of every figure, each side, over the runs named by `specs`:
    each a parity.csv of this script, optionally :VARIANT (default paper), the one variant taken from it."""
    groups: dict[str, list[dict]] = {}
    used: list[str] = []
    for spec in specs:
        path, variant = spec, "paper"
        if spec.rpartition(":")[0].endswith(".csv"):
            path, _, variant = spec.rpartition(":")
        try:
            with open(path, newline="") as f:
                rows = list(csv.DictReader(f))
        except OSError as e:
            fail(f"--pool: cannot read {path}: {e.strerror}")
        if not rows or "swd_authors" not in rows[0]:
            fail(f"--pool: {path} is not a parity.csv of this script")
        chosen = [r for r in rows if r["variant"] == variant]
        if not chosen:
            have = ", ".join(sorted({r["variant"] for r in rows}))
            fail(f"--pool: {path} has no variant {variant!r} (it has {have})")
        for row in chosen:
            groups.setdefault(row["image"], []).append(row)
        used += [r["config_hash"] for r in chosen]

    def side(rows: list[dict], name: str) -> dict:
        mean = lambda key: sum(float(r[f"{key}_{name}"]) for r in rows) / len(rows)  # noqa: E731
        out = {k: mean(k) for k in ("swd", "diversity", "rec_rmse", "sigma2", "sigma3", "wall_s")}
        out.update({k: [mean(f"{k}_{ch}") for ch in "rgb"] for k in ("contrast", "drift")})
        return {**out, "shape": "/".join(sorted({r[f"shape_{name}"] for r in rows}))}

    block = [{"image": f"{image}, {len(rows)} runs", "name": image, "scales": rows[0]["scales"],
              "ours": side(rows, "ours"), "authors": side(rows, "authors")} for image, rows in groups.items()]
    print_block("means over the runs", None, block, ", ".join(dict.fromkeys(used)))


# ---------------------------------------------------------------------------- main
def parse_variants(specs: list[str], base: Config, reserved: tuple[str, ...] = ("paper",)) -> dict[str, Config]:
    """`--variant` NAME=field=value[,field=value] -> base with those fields changed; names new and not reserved."""
    variants: dict[str, Config] = {}
    for spec in specs:
        name, _, assignments = spec.partition("=")
        if not name or not assignments or name in (*reserved, *variants):
            fail(f"--variant {spec!r}: expected a new NAME=field=value[,field=value] (not "
                 f"{' or '.join(repr(r) for r in reserved)}, names unique)")
        try:
            variants[name] = base.override(assignments.split(","))
        except (ValueError, TypeError) as e:
            fail(f"--variant {spec!r}: {e}")
    return variants


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("images", nargs="*", type=Path)
    ap.add_argument("--import-authors", nargs="+", type=Path, metavar="RUN_DIR")
    ap.add_argument("--pool", nargs="+", metavar="PARITY_CSV[:VARIANT]",
                    help="print the means over these runs (a parity.csv, the variant taken from it: default "
                         "paper); trains nothing")
    ap.add_argument("--max-size", type=int, default=96)
    ap.add_argument("--niter", type=int, default=500)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--samples", type=int, default=50)
    ap.add_argument("--variant", nargs="+", default=[], metavar="NAME=field=value,...")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--authors", type=Path, default=AUTHORS, help="the imported authors' results")
    ap.add_argument("--cache", type=Path, default=ROOT / ".cache" / "parity")
    ap.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "reference_parity")
    args = ap.parse_args()
    if args.import_authors:
        for run in args.import_authors:
            import_authors(run, args.authors)
        return
    if args.pool:
        pool(args.pool)
        return
    if not args.images:
        fail("give IMAGE... to compare, --import-authors RUN_DIR... or --pool PARITY_CSV...")
    if args.samples < SHOWN or args.jobs < 1:
        fail(f"--samples must be at least {SHOWN} and --jobs at least 1")
    try:
        base = preset("paper").replace(max_size=args.max_size, niter=args.niter, seed=args.seed)
    except ValueError as e:
        fail(str(e))
    variants = {"paper": base, **parse_variants(args.variant, base)}

    # check every input before training anything
    x0s, authors = {}, {}
    for image in args.images:
        try:
            reals, _ = prepare_reals([load_image(str(image))], base)
        except ImageError as e:
            fail(str(e))
        x0s[image] = (reals[-1], len(reals))
        folder = args.authors / run_name(image.stem, args.max_size, args.niter, args.seed)
        have = len(list((folder / "samples").glob("*.png")))
        if have < args.samples or not all((folder / f).is_file() for f in ("rec.png", "timing.json", "noise_amp.json")):
            fail(f"no authors' results with {args.samples} samples for {image.name} at these settings: expected "
                 f"{folder}/ (run ../shared/reference/train_official.py --image {image} "
                 f"--max_size {args.max_size} --niter {args.niter} --seed {args.seed} --num_samples {args.samples} "
                 f"--out RUN, then {Path(__file__).name} --import-authors RUN)")
        authors[image] = load_authors(folder, args.samples)

    runs = {(image, name): args.cache / f"{image.stem}_{cfg.hash()}" for image in args.images
            for name, cfg in variants.items()}
    todo = [key for key, out in runs.items() if not finished(out)]
    print(f"{len(runs) - len(todo)} of {len(runs)} trainings already in {args.cache}; training {len(todo)}, "
          f"{args.jobs} at a time", flush=True)
    if todo:
        train_all({key: (variants[key[1]], runs[key]) for key in todo}, args.jobs)

    rows, grids = [], {}
    authors_measured = {image: measure(x0s[image][0], authors[image]) for image in args.images}
    for image in args.images:
        theirs = [authors[image]["rec"][0], *authors[image]["samples"][:SHOWN]]
        grids[image.stem] = [("x_0", [x0s[image][0][0]]), ("authors'", theirs)]
    print("\nthe authors' own x_0 (their imresize) against ours, RMSE; their rec against their own x_0: "
          + ", ".join(f"{i.stem} {m.get('x0_rmse', float('nan')):.4f}; {m.get('rec_rmse_own_x0', float('nan')):.4f}"
                      for i, m in authors_measured.items()))
    for name, cfg in variants.items():
        block = []
        for image in args.images:
            ours = load_ours(runs[image, name], args.samples)
            grids[image.stem].append((name, [ours["rec"][0], *ours["samples"][:SHOWN]]))
            block.append({"image": image.stem, "variant": name, "config_hash": cfg.hash(), "scales": x0s[image][1],
                          "ours": measure(x0s[image][0], ours), "authors": authors_measured[image]})
        print_block(name, cfg, block)
        rows += block
    write_outputs(args.out, rows, grids)
    print(f"\nwrote {args.out}/parity.csv and one PNG per image (columns: reconstruction, {SHOWN} samples)")


if __name__ == "__main__":
    main()
