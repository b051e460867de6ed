"""Train every image twice, with config A and config B, and compare: time saved and metric deltas.

    python jobs/benchmark_epoch_decay.py images/ --out bench --preset quick
    python jobs/benchmark_epoch_decay.py images/ --out bench --a paper --b ima206
    python jobs/benchmark_epoch_decay.py images/ --out bench --a adv_loss=wgan-gp --b adv_loss=frechet-patch

By default A = epoch decay off, B = epoch decay on (seed 003). Each side is a list of `--a`/`--b`
items: at most one preset name (default: --preset) and any number of `field=value` overrides.
Both trainings are ordinary dataset jobs (pipeline.run.run_dataset) in <out>/a and <out>/b, tagged
"a" and "b"; the comparison (one row per image plus a TOTAL row) goes to <out>/comparison.parquet,
to an MLflow run (metrics total_*, the table as comparison.csv) and to the terminal.
Re-running with the same options reuses every finished training.

Exit code: 0 when every image succeeded in both, 1 when some failed (or bad options/input), 130 on Ctrl-C.
"""

from __future__ import annotations

import io
import sys
from typing import Annotated

import pandas as pd
import typer

from pipeline.cli import fail, friendly_errors
from pipeline.compare import TOTAL, Variant, compare_runs, format_table, resolve_pair, total_summary
from singan_core.config import PRESETS
from singan_core.images import atomic_write

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

COMPARISON = "comparison.parquet"


def job_tables(summary) -> tuple[pd.DataFrame, pd.DataFrame]:
    """This job's runs rows and the metrics rows of the same images, config and tag."""
    runs = summary.runs
    metrics = summary.read("metrics")
    if len(runs) and len(metrics):
        keys = runs[["image_id", "config_hash", "variant_tag", "variant"]].drop_duplicates()
        metrics = metrics.merge(keys, on=list(keys.columns), how="inner")
    return runs, metrics


def write_parquet(frame: pd.DataFrame, url: str) -> None:
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    with atomic_write(url) as f:
        f.write(buf.getvalue())


def log_comparison(tracking_uri: str, experiment: str, out: str, table: pd.DataFrame, pair: tuple[Variant, Variant],
                   summaries: list) -> str:
    """One MLflow run: both configs as params, the TOTAL row as metrics, the table as CSV and Parquet."""
    from pipeline.tracking import Tracker

    tracker = Tracker.open(tracking_uri, experiment, out)
    a, b = pair
    params = {"a": a.label, "b": b.label, "a_config_hash": a.config.hash(), "b_config_hash": b.config.hash(),
              "a_config": a.config.to_json(), "b_config": b.config.to_json()}
    tags = {"kind": "comparison", "a_parent_run_id": summaries[0].parent_run_id or None,
            "b_parent_run_id": summaries[1].parent_run_id or None}
    run_id = tracker.start_run(f"compare a ({a.label}) vs b ({b.label})", params, tags)
    tracker.log_metrics(run_id, [(name, value, 0) for name, value in total_summary(table).items()])
    tracker.log_text(run_id, table.to_csv(index=False), "comparison.csv")
    tracker.log_files(run_id, {COMPARISON: f"{out}/{COMPARISON}"})
    tracker.end_run(run_id)
    return run_id


def _warm_up_task(threads: int) -> float:
    """A throwaway training: a fresh process's first one is seconds slower (kernel set-up), which
    would otherwise be charged to side A alone, as B's tasks run in the same, then warm, workers."""
    import time

    import torch

    from singan_core import SinGAN, preset

    torch.set_num_threads(threads)
    t0 = time.perf_counter()
    SinGAN.train(torch.zeros(1, 3, 32, 32).uniform_(-1, 1), preset("test").replace(niter=2), progress=False)
    return time.perf_counter() - t0


def warm_up_workers(cpus_per_task: int) -> int:
    """Run one throwaway training in every worker slot of the cluster at once; returns the slot count."""
    import ray

    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))
    task = ray.remote(_warm_up_task).options(num_cpus=cpus_per_task)
    ray.get([task.remote(cpus_per_task) for _ in range(slots)])
    return slots


def totals_line(table: pd.DataFrame) -> str:
    total = table[table["image_id"] == TOTAL].iloc[0]
    return (f"total over {int(total['images'])} image(s) ok in both: a {total['seconds_a']:.1f} s, "
            f"b {total['seconds_b']:.1f} s, saved {total['seconds_saved']:.1f} s ({total['percent_saved']:.1f} %)")


@app.command()
@friendly_errors
def main(
    input_url: Annotated[str, typer.Argument(metavar="INPUT", help="Folder (searched recursively), glob or file; "
                                             "any fsspec URL.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder: a/, b/, comparison.parquet, mlflow.db.")] = (
        "benchmark_epoch_decay"
    ),
    preset_name: Annotated[str, typer.Option("--preset", "-p", help=f"Base preset of both sides: "
                                             f"{', '.join(PRESETS)}.")] = "paper",
    a: Annotated[list[str] | None, typer.Option("--a", help="Config A: a preset name and/or field=value overrides "
                                                "(repeatable; default epoch_decay=false).")] = None,
    b: Annotated[list[str] | None, typer.Option("--b", help="Config B, like --a (default epoch_decay=true).")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of both sides (default: the presets').")] = None,
    samples: Annotated[int, typer.Option(help="Samples per image and side for the metrics; 0: time only.")] = 10,
    metrics: Annotated[list[str] | None, typer.Option(help="Metrics: sifid, swd, patch_fd, diversity (repeatable or "
                                                      "comma list; default all available).")] = None,
    inception_weights: Annotated[str | None, typer.Option(help="Inception-v3 weights for SIFID: path or URL.")] = None,
    tracking_uri: Annotated[str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                                     "sqlite:///<out>/mlflow.db).")] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "singan-benchmark",
    cpus_per_task: Annotated[int, typer.Option(help="CPUs (and torch threads) per training task.")] = 1,
    gpus_per_task: Annotated[float, typer.Option(help="GPU fraction per training task when the cluster has GPUs.")] = (
        0.25
    ),
    address: Annotated[str | None, typer.Option(help="Ray cluster: 'auto', 'ray://host:10001' or 'local' (default: "
                                                "$RAY_ADDRESS / a running local head / a new local one).")] = None,
    warmup: Annotated[bool, typer.Option(help="First run a throwaway training in every Ray worker, so neither "
                                         "side pays the workers' one-off start-up.")] = True,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress; only the comparison.")] = False,
) -> None:
    """Train every image under INPUT with config A and with config B; print and store the comparison."""
    import ray

    from pipeline.run import absolute, connect, run_dataset
    from pipeline.tracking import default_tracking_uri

    pair = resolve_pair(a, b, preset_name)
    if seed is not None:
        pair = tuple(Variant(v.tag, v.config.replace(seed=seed), v.spec) for v in pair)
    out = absolute(out)
    uri = default_tracking_uri(out, tracking_uri)
    metric_names = tuple(m for item in metrics for m in item.split(",") if m.strip()) if metrics else None
    started = connect(address)  # one Ray session for both sides
    try:
        if warmup:
            slots = warm_up_workers(cpus_per_task)
            if not quiet:
                typer.echo(f"warmed up {slots} worker slot(s)", err=True)
        summaries = []
        for variant in pair:
            if not quiet:
                typer.echo(f"== {variant.tag}: {variant.label} (config {variant.config.hash()})", err=True)
            summaries.append(run_dataset(
                input_url, f"{out}/{variant.tag}", variant.config, samples=samples, metrics=metric_names,
                inception_weights=inception_weights, tracking_uri=uri, experiment=experiment,
                run_name=f"benchmark {variant.tag}: {variant.label}", num_cpus_per_task=cpus_per_task,
                gpus_per_task=gpus_per_task, variant_tag=variant.tag, progress=not quiet,
            ))
            if summaries[-1].interrupted:
                raise fail("interrupted", 130)
    finally:
        if started:
            ray.shutdown()
    (runs_a, metrics_a), (runs_b, metrics_b) = (job_tables(s) for s in summaries)
    table = compare_runs(runs_a, runs_b, metrics_a, metrics_b)
    write_parquet(table, f"{out}/{COMPARISON}")
    run_id = log_comparison(uri, experiment, out, table, pair, summaries)
    typer.echo(f"a = {pair[0].label}   b = {pair[1].label}   (time saved = a - b; delta = b - a)")
    typer.echo(format_table(table))
    typer.echo(totals_line(table))
    typer.echo(f"comparison: {out}/{COMPARISON}   MLflow run {run_id} in {uri}")
    raise typer.Exit(max(s.exit_code for s in summaries))


if __name__ == "__main__":
    sys.exit(app())
