"""Augmented dataset: train a SinGAN per image and write N samples of each as PNG plus a Parquet manifest.

    python jobs/augment_dataset.py images/ --per-image 200 --out augmented --preset quick
    python jobs/augment_dataset.py s3://bucket/images/ --per-image 200 --out s3://bucket/augmented --scale-h 1.5

The samples land in <out>/samples/<image id>-<config hash>/full/sample_0000.png ... and the manifest
<out>/manifest.parquet has one row per sample: source_uri, image_id, sample_index, sample_path
(relative to <out>), sample_uri (absolute), seed, height, width. Load it with pandas, or with
`pipeline.augment.SampleDataset(<out>)` as a torch Dataset. No metrics are computed. A re-run
skips the images already done (same bytes, config and tag) and rewrites the manifest for INPUT.

Exit code: 0 when every image succeeded, 1 when some failed (or bad options/input), 130 on Ctrl-C.
The options are defined in pipeline/options.py, the job itself is pipeline.jobs.augment_dataset.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline import jobs
from pipeline.cli_common import friendly_errors
from pipeline.options import (
    Address,
    CpusPerTask,
    Experiment,
    GpusPerTask,
    Highres,
    Input,
    Overrides,
    Preset,
    QuietJob,
    ScaleH,
    ScaleV,
    Seed,
    Tag,
    TrackingUri,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    input_url: Input,
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (local or fsspec URL): samples/, "
                                     "manifest.parquet, models/.")],
    per_image: Annotated[int, typer.Option(help="Samples generated per source image.")] = 200,
    preset_name: Preset = "paper",
    overrides: Overrides = None,
    seed: Seed = None,
    scale_h: ScaleH = 1.0,
    scale_v: ScaleV = 1.0,
    highres: Highres = False,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "singan-augment",
    tag: Tag = None,
    cpus_per_task: CpusPerTask = 1,
    gpus_per_task: GpusPerTask = None,
    address: Address = None,
    quiet: QuietJob = False,
) -> None:
    """Write --per-image samples of every image under INPUT as PNG files, plus a Parquet manifest."""
    raise typer.Exit(jobs.augment_dataset(
        input_url, out=out, per_image=per_image, preset_name=preset_name, overrides=overrides, seed=seed,
        scale_h=scale_h, scale_v=scale_v, highres=highres, tracking_uri=tracking_uri, experiment=experiment, tag=tag,
        cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, address=address, quiet=quiet,
    ))


if __name__ == "__main__":
    sys.exit(app())
