"""What each job script does once its options are parsed: jobs/train_dataset.py calls `train_dataset`,
jobs/augment_dataset.py `augment_dataset`, jobs/benchmark_epoch_decay.py `benchmark_epoch_decay`.

Each resolves the config (preset, then `--set` overrides, then `--seed`), runs one or two dataset jobs
(`run.run_dataset`), prints what the user needs and returns the exit code. Bad options raise ValueError
or the typer Exit of `cli_common.fail` (one `error:` line).
"""

from __future__ import annotations

import time
from pathlib import Path

import pandas as pd
import ray
import torch
import typer

from singan_core import Config, preset, train
from singan_core.devices import native_bfloat16, resolve_device, set_threads

from .cli_common import fail, resolve_config
from .cluster import connect
from .compare import TOTAL, Variant, compare_runs, format_table, resolve_pair, total_summary
from .drive import RESOURCE_TIMEOUT_S
from .options import split_metrics
from .plan import absolute, check_storage
from .progress import counts_line
from .results import write_parquet
from .run import RunSummary, run_dataset
from .tracking import Tracker, default_tracking_uri

DEMO_SAMPLES = 8
DEMO_PRESET, DEMO_MAX_SIZE = "fast", 80  # the demo's training: about 5 minutes for the 3 photos on 2 CPU cores
COMPARISON = "comparison.parquet"


# ---------------------------------------------------------------------------- train_dataset
def train_dataset(
    input_url: str | None,
    *,
    out: str,
    preset_name: str | None,
    overrides: list[str] | None,
    seed: int | None,
    highres: bool,
    samples: int | None,
    scale_h: float,
    scale_v: float,
    metrics: list[str] | None,
    inception_weights: str | None,
    tracking_uri: str | None,
    experiment: str,
    run_name: str | None,
    tag: str | None,
    cpus_per_task: int,
    gpus_per_task: float | None,
    address: str | None,
    demo: bool,
    quiet: bool,
    pack: int | None = None,
    resource_timeout: float = RESOURCE_TIMEOUT_S,
) -> int:
    """Train, sample and evaluate every image under INPUT (or the bundled photos with `demo`)."""
    if demo:
        from .examples import write_examples

        if input_url:
            raise fail("--demo uses the bundled example photos: give no INPUT")
        input_url = str(Path(out) / "examples") if "://" not in out else f"{out.rstrip('/')}/examples"
        write_examples(input_url)
    if not input_url:
        raise fail("missing INPUT (a folder, glob or file of images), or use --demo")
    cfg = job_config(preset_name, overrides, seed, demo=demo)
    n_samples = samples if samples is not None else (DEMO_SAMPLES if demo else 50)
    summary = run_dataset(
        input_url, out, cfg, highres=highres, samples=n_samples,
        scale_h=scale_h, scale_v=scale_v, metrics=split_metrics(metrics), inception_weights=inception_weights,
        tracking_uri=tracking_uri, experiment=experiment, run_name=run_name, num_cpus_per_task=cpus_per_task,
        gpus_per_task=gpus_per_task, address=address, variant_tag=tag, progress=not quiet, pack=pack,
        resource_timeout=resource_timeout,
    )
    if quiet:
        typer.echo(counts_line(summary))
    if demo or not quiet:
        typer.echo(demo_hints(summary))
    return summary.exit_code


def job_config(preset_name: str | None, overrides: list[str] | None, seed: int | None, *, demo: bool) -> Config:
    """The job's config: `--preset` (paper by default; the demo's preset at its size with --demo), then `--set`."""
    if demo and preset_name is None:  # the demo's settings first, so that a `--set` still wins
        native = native_bfloat16(resolve_device(None))  # where bfloat16 is emulated, float32 is the faster
        demo_set = [f"max_size={DEMO_MAX_SIZE}", *([] if native else ["precision=float32"])]
        return resolve_config(DEMO_PRESET, [*demo_set, *(overrides or [])], seed)
    return resolve_config(preset_name or "paper", overrides, seed)


def demo_hints(summary: RunSummary) -> str:
    """How to look at a finished job: the MLflow UI, the Parquet tables with pandas, a model by run id."""
    out = summary.out
    runs = summary.runs
    ok = runs[(runs["status"] == "ok") & runs["model_uri"].notna()] if len(runs) else runs
    first_run = ok["mlflow_run_id"].iloc[0] if len(ok) and isinstance(ok["mlflow_run_id"].iloc[0], str) else "<run id>"
    return "\n".join([
        "",
        "Look at the results:",
        f"  MLflow UI:  mlflow ui --backend-store-uri {summary.tracking_uri}   (then open http://127.0.0.1:5000)",
        f"  pandas:     python -c \"import pandas as pd; print(pd.read_parquet('{out}/runs.parquet'))\"",
        f"              (also {out}/samples.parquet, {out}/metrics.parquet, {out}/metrics_summary.parquet)",
        "  a model:    python -c \"from pipeline.tracking import load_model; "
        f"m = load_model('{first_run}', '{summary.tracking_uri}'); print(m.sample(4).shape)\"",
        f"  samples:    {out}/samples/   loss curves and sample grids: {out}/plots/",
    ])


# ---------------------------------------------------------------------------- augment_dataset
def augment_dataset(
    input_url: str,
    *,
    out: str,
    per_image: int,
    preset_name: str,
    overrides: list[str] | None,
    seed: int | None,
    scale_h: float,
    scale_v: float,
    highres: bool,
    tracking_uri: str | None,
    experiment: str,
    tag: str | None,
    cpus_per_task: int,
    gpus_per_task: float | None,
    address: str | None,
    quiet: bool,
) -> int:
    """Write `per_image` samples of every image under INPUT as PNG files, plus a Parquet manifest."""
    from .augment import build_manifest, write_manifest

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
    return summary.exit_code


def job_samples(summary: RunSummary, config_hash: str, tag: str) -> pd.DataFrame:
    """The samples rows of this job's images, config and tag."""
    samples = summary.read("samples")
    mine = samples["image_id"].isin(summary.runs["image_id"]) & (samples["config_hash"] == config_hash)
    return samples[mine & (samples["variant_tag"].fillna("") == tag)]


# ---------------------------------------------------------------------------- benchmark_epoch_decay
def benchmark_epoch_decay(
    input_url: str,
    *,
    out: str,
    preset_name: str,
    a: list[str] | None,
    b: list[str] | None,
    seed: int | None,
    samples: int,
    metrics: list[str] | None,
    inception_weights: str | None,
    tracking_uri: str | None,
    experiment: str,
    cpus_per_task: int,
    gpus_per_task: float | None,
    address: str | None,
    warmup: bool,
    quiet: bool,
) -> int:
    """Train every image under INPUT with config A and with config B; print and store the comparison."""
    pair = resolve_pair(a, b, preset_name)
    if seed is not None:
        pair = tuple(Variant(v.tag, v.config.replace(seed=seed), v.spec) for v in pair)
    out = absolute(out)
    check_storage(input_url, out)  # before Ray starts (each side's job checks its own folder again)
    uri = default_tracking_uri(out, tracking_uri)
    joined = connect(address)  # one Ray session for both sides
    if joined.note and not quiet:
        typer.echo(f"note: {joined.note}", err=True)
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
                input_url, f"{out}/{variant.tag}", variant.config, samples=samples, metrics=split_metrics(metrics),
                inception_weights=inception_weights, tracking_uri=uri, experiment=experiment,
                run_name=f"benchmark {variant.tag}: {variant.label}", num_cpus_per_task=cpus_per_task,
                gpus_per_task=gpus_per_task, variant_tag=variant.tag, progress=not quiet,
            ))
            if summaries[-1].interrupted:
                raise fail("interrupted", 130)
    finally:
        if joined.started:
            ray.shutdown()
    (runs_a, metrics_a), (runs_b, metrics_b) = (job_tables(s) for s in summaries)
    table = compare_runs(runs_a, runs_b, metrics_a, metrics_b)
    write_parquet(table, f"{out}/{COMPARISON}")
    run_id = log_comparison(uri, experiment, out, table, pair, summaries)
    typer.echo(f"a = {pair[0].label}   b = {pair[1].label}   (time saved = a - b; delta = b - a)")
    typer.echo(format_table(table))
    typer.echo(totals_line(table))
    typer.echo(f"comparison: {out}/{COMPARISON}   MLflow run {run_id} in {uri}")
    return max(s.exit_code for s in summaries)


def job_tables(summary: RunSummary) -> tuple[pd.DataFrame, pd.DataFrame]:
    """This job's runs rows and the metrics rows of the same images, config and tag."""
    runs = summary.runs
    metrics = summary.read("metrics")
    if len(runs) and len(metrics):
        keys = runs[["image_id", "config_hash", "variant_tag", "variant"]].drop_duplicates()
        metrics = metrics.merge(keys, on=list(keys.columns), how="inner")
    return runs, metrics


def log_comparison(tracking_uri: str, experiment: str, out: str, table: pd.DataFrame,
                   pair: tuple[Variant, Variant], summaries: list[RunSummary]) -> str:
    """One MLflow run: both configs as params, the TOTAL row as metrics, the table as CSV and Parquet."""
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
    set_threads(threads)
    t0 = time.perf_counter()
    train(torch.zeros(1, 3, 32, 32).uniform_(-1, 1), preset("test").replace(niter=2), progress=False)
    return time.perf_counter() - t0


def warm_up_workers(cpus_per_task: int) -> int:
    """Run one throwaway training in every worker slot of the cluster at once; returns the slot count."""
    slots = max(1, int(ray.cluster_resources().get("CPU", 1) // cpus_per_task))
    task = ray.remote(_warm_up_task).options(num_cpus=cpus_per_task)
    ray.get([task.remote(cpus_per_task) for _ in range(slots)])
    return slots


def totals_line(table: pd.DataFrame) -> str:
    total = table[table["image_id"] == TOTAL].iloc[0]
    return (f"total over {int(total['images'])} image(s) ok in both: a {total['seconds_a']:.1f} s, "
            f"b {total['seconds_b']:.1f} s, saved {total['seconds_saved']:.1f} s ({total['percent_saved']:.1f} %)")

