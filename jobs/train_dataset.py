"""Train, sample and evaluate SinGAN on every image of a dataset, on Ray, with Parquet and MLflow results.

    python jobs/train_dataset.py photos/ --out results --preset quick
    python jobs/train_dataset.py --demo --out demo_out          # the bundled example photos
    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 -- \\
        python jobs/train_dataset.py s3://bucket/photos --out s3://bucket/results

Exit code: 0 when every image succeeded, 1 when some failed (or the options/input are bad), 130 on Ctrl-C.
The options are defined in pipeline/options.py, the job itself is pipeline.jobs.train_dataset.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline import jobs
from pipeline.cli_common import friendly_errors
from pipeline.drive import RESOURCE_TIMEOUT_S
from pipeline.options import (
    Address,
    CpusPerTask,
    Experiment,
    GpusPerTask,
    Highres,
    InceptionWeights,
    Metrics,
    OptionalInput,
    OptionalPreset,
    Overrides,
    Pack,
    QuietJob,
    ResourceTimeout,
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
    input_url: OptionalInput = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (local or fsspec URL) for all results.")] = (
        "singan_runs"
    ),
    preset_name: OptionalPreset = None,
    overrides: Overrides = None,
    seed: Seed = None,
    highres: Highres = False,
    samples: Annotated[
        int | None, typer.Option(help=f"Samples per image (default 50; {jobs.DEMO_SAMPLES} with --demo); 0: none.")
    ] = None,
    scale_h: ScaleH = 1.0,
    scale_v: ScaleV = 1.0,
    metrics: Metrics = None,
    inception_weights: InceptionWeights = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "singan",
    run_name: Annotated[str | None, typer.Option(help="Name of the job's parent MLflow run.")] = None,
    tag: Tag = None,
    cpus_per_task: CpusPerTask = 1,
    gpus_per_task: GpusPerTask = None,
    address: Address = None,
    pack: Pack = None,
    resource_timeout: ResourceTimeout = RESOURCE_TIMEOUT_S,
    demo: Annotated[
        bool, typer.Option("--demo", help=f"Run on the bundled example photos ({jobs.DEMO_PRESET} preset at "
                                          f"max_size {jobs.DEMO_MAX_SIZE} unless --preset is given, "
                                          f"{jobs.DEMO_SAMPLES} samples).")
    ] = False,
    quiet: QuietJob = False,
) -> None:
    """Train a SinGAN on every image under INPUT, sample and evaluate it, on Ray; Parquet + MLflow results."""
    raise typer.Exit(jobs.train_dataset(
        input_url, out=out, preset_name=preset_name, overrides=overrides, seed=seed, highres=highres, samples=samples,
        scale_h=scale_h, scale_v=scale_v, metrics=metrics, inception_weights=inception_weights,
        tracking_uri=tracking_uri, experiment=experiment, run_name=run_name, tag=tag, cpus_per_task=cpus_per_task,
        gpus_per_task=gpus_per_task, address=address, pack=pack, resource_timeout=resource_timeout, demo=demo,
        quiet=quiet,
    ))


if __name__ == "__main__":
    sys.exit(app())
