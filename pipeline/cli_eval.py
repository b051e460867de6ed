"""`singan eval`: SIFID, patch SWD, patch Fréchet distance and diversity of samples against the real image.

    singan eval --real photo.png samples/            # every image file of the folder, sorted by name, first 50
    singan eval --real photo.png runs/photo/model    # a trained model: draws --n samples with --seed
    singan eval --real photo.png samples/ --metrics swd,patch_fd,diversity --out metrics.parquet

Prints a table (one row per sample, then mean and std; set-level metrics below it) and, with --out, writes the
long-format rows of `singan_core.metrics.evaluate` (plus a `file` column) as Parquet or CSV, atomically.
Exit codes: 0 all asked-for metrics computed; 1 bad input or options (one `error:` line); 2 SIFID was asked for
(it is by default) but the Inception weights cannot be had: one line says how to provide them, and every other
metric is still computed, printed and written.
"""

from __future__ import annotations

import re
from typing import Annotated

import fsspec
import pandas as pd
import torch
import typer

from singan_core.images import IMAGE_EXTENSIONS, ImageError, atomic_write, load_image, resize
from singan_core.metrics import METRICS, SIFID_LAYERS, evaluate, parse_metrics

from .cli_common import fail
from .options import InceptionWeights
from .results import write_parquet

OUT_FORMATS = (".parquet", ".csv")
EXIT_BAD_INPUT = 1
EXIT_MISSING_WEIGHTS = 2


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `singan` CLI."""
    app.command("eval")(eval_command)


def _one_line(message: str) -> str:
    """A multi-line message (a library's) joined into the one line of an `error:`."""
    return " ".join(message.split())


def _note(message: str) -> None:
    typer.echo(f"note: {message}", err=True)


def _natural_key(name: str) -> list:
    """sample_2.png before sample_10.png."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name)]


def list_sample_files(url: str) -> list[str]:
    """Every image file directly in the folder `url` (local or fsspec), sorted by name (numbers as numbers)."""
    fs, path = fsspec.core.url_to_fs(url)
    entries = fs.ls(path, detail=True)
    files = [e["name"] for e in entries if e.get("type") == "file" and e["name"].lower().endswith(IMAGE_EXTENSIONS)]
    files.sort(key=lambda name: _natural_key(name.rstrip("/").rsplit("/", 1)[-1]))
    return [fs.unstrip_protocol(f) if "://" in url else f for f in files]


def load_samples(url: str, n: int, seed: int, device: str) -> tuple[list[torch.Tensor] | torch.Tensor, list | None]:
    """The samples to evaluate: the first n image files of a folder, or n samples drawn from a model folder."""
    from singan_core.singan import SinGAN, model_exists

    if model_exists(url):

        typer.echo(f"drawing {n} samples from the model {url} (seed {seed})", err=True)
        return SinGAN.load(url, device=device).sample(n, seed=seed).cpu(), None
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        raise ImageError(f"{url}: no such folder")
    if not fs.isdir(path):
        raise ImageError(f"{url}: not a folder of sample images nor a model folder (it is a file)")
    files = list_sample_files(url)
    if not files:
        raise ImageError(f"{url}: no image files ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
    if len(files) < n:
        _note(f"{url} has {len(files)} image files, fewer than --n {n}: evaluating all {len(files)}")
    files = files[:n]
    return [load_image(f) for f in files], files


def match_real_size(real: torch.Tensor, samples: list[torch.Tensor] | torch.Tensor) -> torch.Tensor:
    """Resize the real image to the samples' size when only the scale differs (same aspect ratio within 1 px)."""
    h, w = samples[0].shape[-2:]
    rh, rw = real.shape[-2:]
    if (rh, rw) == (h, w) or abs(rh * w / rw - h) > 1:
        if (rh, rw) != (h, w):
            _note(f"real is {rw}x{rh}, samples are {w}x{h} (another aspect ratio): real used as it is")
        return real
    _note(f"real resized from {rw}x{rh} to the samples' {w}x{h}")
    return resize(real, (h, w))


def format_table(frame: pd.DataFrame) -> str:
    """Per-sample values (rows) by metric (columns), then mean and std; set-level metrics on lines below."""
    lines = []
    per = frame[frame["stat"] != "set"]
    if len(per):
        order = list(dict.fromkeys(per["metric"]))
        values = per[per["stat"] == "value"].pivot(index="sample", columns="metric", values="value")
        stats = per[per["stat"] != "value"].pivot(index="stat", columns="metric", values="value")
        values.index = values.index.astype(str)
        table = pd.concat([values, stats.loc[["mean", "std"]]])[order]
        table.index.name = "sample"
        table.columns.name = None
        lines.append(table.to_string(float_format=lambda v: f"{v:.6g}"))
    for _, row in frame[frame["stat"] == "set"].iterrows():
        lines.append(f"{row['metric']}: {row['value']:.6g}")
    return "\n".join(lines)


def write_frame(frame: pd.DataFrame, url: str) -> None:
    """Parquet or CSV by the extension of `url`, written atomically."""
    if url.lower().endswith(".parquet"):
        write_parquet(frame, url)
        return
    with atomic_write(url) as f:
        f.write(frame.to_csv(index=False).encode())


def eval_command(
    samples: Annotated[
        str, typer.Argument(metavar="SAMPLES_DIR_OR_MODEL", help="Folder of sample images, or a trained model folder.")
    ],
    real: Annotated[str, typer.Option("--real", help="The real (training) image, path or fsspec URL.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples (the paper: 50).")] = 50,
    metrics: Annotated[
        str, typer.Option("--metrics", help=f"Comma list of {', '.join(METRICS)} (SIFID needs the Inception weights).")
    ] = ",".join(METRICS),
    sifid_layer: Annotated[
        int, typer.Option("--sifid-layer", help="64: the authors' script (default); 192: the paper's text.")
    ] = 64,
    inception_weights: InceptionWeights = None,
    out: Annotated[str | None, typer.Option("--out", "-o", help="Write the rows to this .parquet or .csv.")] = None,
    device: Annotated[str, typer.Option(help="cpu, cuda or auto (CUDA when present).")] = "auto",
    seed: Annotated[int, typer.Option(help="Seed of the SWD projections and of the model's samples.")] = 0,
    batch_size: Annotated[int | None, typer.Option(help="Samples per chunk (default: from a memory budget).")] = None,
) -> None:
    """Evaluate samples against the real image: SIFID, patch SWD, patch Fréchet distance, diversity.

    Exit code 2 when SIFID was asked for (it is by default) but the Inception weights cannot be had: the other
    metrics are still printed and written. Exit code 1 on bad input.
    """
    try:
        names = parse_metrics(metrics)
        if sifid_layer not in SIFID_LAYERS:
            raise ValueError(f"--sifid-layer must be one of {', '.join(map(str, SIFID_LAYERS))}, got {sifid_layer}")
        if n < 1:
            raise ValueError(f"--n must be at least 1, got {n}")
        if batch_size is not None and batch_size < 1:
            raise ValueError(f"--batch-size must be at least 1, got {batch_size}")
        if out is not None and not out.lower().endswith(OUT_FORMATS):
            raise ValueError(f"--out must end in {' or '.join(OUT_FORMATS)}, got {out}")
        real_image = load_image(real)
        batch, files = load_samples(samples, n, seed, device)
        real_image = match_real_size(real_image, batch)
        result = evaluate(
            real_image,
            batch,
            names,
            sifid_layer=sifid_layer,
            inception_weights=inception_weights,
            device=device,
            seed=seed,
            batch_size=batch_size,
            strict=False,
        )
    except (ImageError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
        raise fail(_one_line(str(e) or type(e).__name__), EXIT_BAD_INPUT) from None

    frame = result.to_frame()
    frame["file"] = pd.array([files[s] if files and s is not pd.NA else None for s in frame["sample"]], "string")
    typer.echo(format_table(frame))
    for name, message in result.errors.items():
        if name.startswith("sifid"):
            typer.echo(f"error: {message}", err=True)
        else:
            _note(f"{name} not computed: {message}")
    if out is not None:
        try:
            write_frame(frame, out)
        except OSError as e:
            raise fail(_one_line(f"cannot write {out}: {e}"), EXIT_BAD_INPUT) from None
        typer.echo(f"wrote {len(frame)} rows to {out}", err=True)
    if any(name.startswith("sifid") for name in result.errors):
        raise typer.Exit(EXIT_MISSING_WEIGHTS)
