"""Augmented dataset: train a SinGAN per image and write N samples of each as PNG plus a Parquet manifest.

    python jobs/augment_dataset.py images/ --per-image 200 --out augmented --preset quick
    python jobs/augment_dataset.py s3://bucket/images/ --per-image 200 --out s3://bucket/augmented --scale-h 1.5

The samples land in <out>/samples/<image id>-<config hash>/full/sample_0000.png ... and the manifest
<out>/manifest.parquet has one row per sample: source_uri, image_id, sample_index, sample_path
(relative to <out>), sample_uri (absolute), seed, height, width. Load it with pandas, or with
`pipeline.augment.SampleDataset(<out>)` as a torch Dataset. No metrics are computed. A re-run
skips the images already done (same bytes, config and tag) and rewrites the manifest for INPUT.

Exit code: 0 when every image succeeded, 1 when some failed (or bad options/input), 130 on Ctrl-C.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline.cli import fail, friendly_errors, resolve_config
from singan_core.config import PRESETS

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


def job_samples(summary, config_hash: str, tag: str):
    """The samples rows of this job's images, config and tag."""
    samples = summary.read("samples")
    mine = samples["image_id"].isin(summary.runs["image_id"]) & (samples["config_hash"] == config_hash)
    return samples[mine & (samples["variant_tag"].fillna("") == tag)]


@app.command()
@friendly_errors
def main(
    input_url: Annotated[str, typer.Argument(metavar="INPUT", help="Folder (searched recursively), glob or file; "
                                             "any fsspec URL.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (local or fsspec URL): samples/, "
                                     "manifest.parquet, models/.")],
    per_image: Annotated[int, typer.Option(help="Samples generated per source image.")] = 200,
    preset_name: Annotated[str, typer.Option("--preset", "-p", help=f"Hyper-parameter preset: {', '.join(PRESETS)}.")
                           ] = "paper",
    overrides: Annotated[list[str] | None, typer.Option("--set", "-s", help="Override a config field, e.g. --set "
                                                        "niter=500 (repeatable).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of training and sampling (default: the preset's).")] = (
        None
    ),
    scale_h: Annotated[float, typer.Option(help="Width factor of the samples (1.0 = training size).")] = 1.0,
    scale_v: Annotated[float, typer.Option(help="Height factor of the samples (1.0 = training size).")] = 1.0,
    highres: Annotated[bool, typer.Option("--highres", help="High-Res SinGAN: stitched samples of a base and four "
                                          "quadrant pyramids.")] = False,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                                     "sqlite:///<out>/mlflow.db).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "singan-augment",
    tag: Annotated[str | None, typer.Option(help="Variant tag of this dataset's rows (keep several in one --out).")
                   ] = None,
    cpus_per_task: Annotated[int, typer.Option(help="CPUs (and torch threads) per task.")] = 1,
    gpus_per_task: Annotated[float, typer.Option(help="GPU fraction per task when the cluster has GPUs.")] = 0.25,
    address: Annotated[str | None, typer.Option(help="Ray cluster: 'auto', 'ray://host:10001' or 'local' (default: "
                                                "$RAY_ADDRESS / a running local head / a new local one).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress and no summary table.")] = False,
) -> None:
    """Write --per-image samples of every image under INPUT as PNG files, plus a Parquet manifest."""
    from pipeline.augment import build_manifest, write_manifest
    from pipeline.run import counts_line, run_dataset

    if per_image < 1:
        raise fail(f"--per-image must be at least 1, got {per_image}")
    cfg = resolve_config(preset_name, overrides, seed)
    summary = run_dataset(
        input_url, out, cfg, highres=highres, samples=per_image, scale_h=scale_h, scale_v=scale_v, metrics=(),
        tracking_uri=tracking_uri, experiment=experiment, run_name=f"augment x{per_image}",
        num_cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, address=address, variant_tag=tag,
        progress=not quiet,
    )
    if summary.interrupted:
        raise fail("interrupted: no manifest written (re-run to finish)", 130)
    manifest = build_manifest(job_samples(summary, cfg.hash(), tag or ""), summary.runs, summary.out)
    url = write_manifest(manifest, summary.out)
    typer.echo(counts_line(summary))
    typer.echo(f"wrote {len(manifest)} samples of {manifest['image_id'].nunique()} image(s); manifest: {url}")
    raise typer.Exit(summary.exit_code)


if __name__ == "__main__":
    sys.exit(app())
