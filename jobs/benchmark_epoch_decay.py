"""Train every image twice, with config A and config B, and compare: time saved and metric deltas.

    python jobs/benchmark_epoch_decay.py images/ --out bench --preset quick
    python jobs/benchmark_epoch_decay.py images/ --out bench --a paper --b ima206
    python jobs/benchmark_epoch_decay.py images/ --out bench --a adv_loss=wgan-gp --b adv_loss=frechet-patch

By default A = epoch decay off, B = epoch decay on (High-Res-SinGAN's). Each side is a list of `--a`/`--b`
items: at most one preset name (default: --preset) and any number of `field=value` overrides.
Both trainings are ordinary dataset jobs (pipeline.run.run_dataset) in <out>/a and <out>/b, tagged
"a" and "b"; the comparison (one row per image plus a TOTAL row) goes to <out>/comparison.parquet,
to an MLflow run (metrics total_*, the table as comparison.csv) and to the terminal.
Re-running with the same options reuses every finished training.

Exit code: 0 when every image succeeded in both, 1 when some failed (or bad options/input), 130 on Ctrl-C.
The options are defined in pipeline/options.py, the job itself is pipeline.jobs.benchmark_epoch_decay.
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
    InceptionWeights,
    Input,
    Metrics,
    Preset,
    QuietJob,
    Seed,
    TrackingUri,
)

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)


@app.command()
@friendly_errors
def main(
    input_url: Input,
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder: a/, b/, comparison.parquet, mlflow.db.")] = (
        "benchmark_epoch_decay"
    ),
    preset_name: Preset = "paper",
    a: Annotated[list[str] | None, typer.Option("--a", help="Config A: a preset name and/or field=value overrides "
                                                "(repeatable; default epoch_decay=false).")] = None,
    b: Annotated[list[str] | None, typer.Option("--b", help="Config B, like --a (default epoch_decay=true).")] = None,
    seed: Seed = None,
    samples: Annotated[int, typer.Option(help="Samples per image and side for the metrics; 0: time only.")] = 10,
    metrics: Metrics = None,
    inception_weights: InceptionWeights = None,
    tracking_uri: TrackingUri = None,
    experiment: Experiment = "singan-benchmark",
    cpus_per_task: CpusPerTask = 1,
    gpus_per_task: GpusPerTask = None,
    address: Address = None,
    warmup: Annotated[bool, typer.Option(help="First run a throwaway training in every Ray worker, so neither "
                                         "side pays the workers' one-off start-up.")] = True,
    quiet: QuietJob = False,
) -> None:
    """Train every image under INPUT with config A and with config B; print and store the comparison."""
    raise typer.Exit(jobs.benchmark_epoch_decay(
        input_url, out=out, preset_name=preset_name, a=a, b=b, seed=seed, samples=samples, metrics=metrics,
        inception_weights=inception_weights, tracking_uri=tracking_uri, experiment=experiment,
        cpus_per_task=cpus_per_task, gpus_per_task=gpus_per_task, address=address, warmup=warmup, quiet=quiet,
    ))


if __name__ == "__main__":
    sys.exit(app())
