"""Panels for judging runs blind: per photo, x_0 and then each run's 4 samples, the rows shuffled and labelled A, B, ...

    python benchmarks/blind_panels.py RUNS_DIR OUT_DIR NAME=CONFIG_HASH... [--images DIR] [--max-size 96] [--seed 0]

RUNS_DIR holds benchmarks/fast_vs_paper.py's run folders (<stem>_<image sha>_<config hash>_t<threads>_n<samples>/,
each with sample_0.png .. sample_3.png); every photo that has a run of each named hash gets OUT_DIR/<stem>.png
(reference_parity.write_grid's labelled rows, every image `--scale` times its size): x_0 (the photo in `--images`,
resized as the pyramid resizes it at `--max-size`) on top, then one row per name in an order shuffled per photo
(`--seed`), labelled A, B, ... The key (which letter is which run) goes to a separate
file, OUT_DIR/key.json, to be opened after the verdict: give a judge a folder with the PNGs only. Every screening
of the fast preset since the twenty-third was judged on such panels (SCREENINGS.md).
"""

from __future__ import annotations

import argparse
import json
import random
import sys
from pathlib import Path

import torch
from reference_parity import SHOWN, write_grid

from singan_core.images import atomic_write, load_image, resize


def run_folder(runs: Path, stem: str, config_hash: str) -> Path | None:
    found = sorted(runs.glob(f"{stem}_*_{config_hash}_t*_n*"))
    return found[0] if found else None


def enlarged(x: torch.Tensor, scale: int) -> torch.Tensor:
    """[1, 3, H, W] as [3, scale H, scale W], for the judge's eye."""
    return resize(x, (x.shape[-2] * scale, x.shape[-1] * scale))[0]


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("runs", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("named", nargs="+", metavar="NAME=CONFIG_HASH")
    ap.add_argument("--images", type=Path, default=Path("../shared/images/Images"))
    ap.add_argument("--max-size", type=int, default=96)
    ap.add_argument("--scale", type=int, default=2, help="every image this many times its size, for the judge's eye")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    pairs = [item.partition("=") for item in args.named]
    named = {name: h for name, _, h in pairs}
    if len(named) < 2 or any(not name or not h for name, _, h in pairs):
        ap.error("give at least two runs as NAME=CONFIG_HASH")
    rng = random.Random(args.seed)
    key: dict[str, dict[str, str]] = {}
    for image in sorted(p for p in args.images.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
        folders = {name: run_folder(args.runs, image.stem, h) for name, h in named.items()}
        if any(f is None for f in folders.values()):
            continue
        names = list(named)
        rng.shuffle(names)
        rows = [("x_0 (photo)", [enlarged(load_image(str(image), args.max_size), args.scale)])]
        rows += [(chr(65 + i), [enlarged(load_image(str(folders[n] / f"sample_{c}.png")), args.scale)
                                for c in range(SHOWN)]) for i, n in enumerate(names)]
        args.out.mkdir(parents=True, exist_ok=True)
        write_grid(args.out / f"{image.stem}.png", rows)
        key[image.stem] = {chr(65 + i): n for i, n in enumerate(names)}
    if not key:
        sys.exit(f"no photo in {args.images} has a run of every hash given in {args.runs}")
    with atomic_write(str(args.out / "key.json"), "w") as f:
        f.write(json.dumps(key, indent=1) + "\n")
    print(f"{len(key)} panels in {args.out} ({', '.join(key)}); the key in {args.out / 'key.json'}")


if __name__ == "__main__":
    main()
