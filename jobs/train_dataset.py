"""Train, sample and evaluate SinGAN on every image of a dataset, on Ray, with Parquet and MLflow results.

    python jobs/train_dataset.py photos/ --out results --preset quick
    python jobs/train_dataset.py --demo --out demo_out          # the bundled example photos
    RAY_AUTH_MODE=disabled ray job submit --address http://127.0.0.1:8265 -- \\
        python jobs/train_dataset.py s3://bucket/photos --out s3://bucket/results

Exit code: 0 when every image succeeded, 1 when some failed (or the options/input are bad), 130 on Ctrl-C.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from pipeline.cli import fail, friendly_errors, resolve_config
from singan_core.config import PRESETS

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False)

DEMO_SAMPLES = 8


def demo_hints(summary) -> str:
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


@app.command()
@friendly_errors
def main(
    input_url: Annotated[
        str | None, typer.Argument(metavar="INPUT", help="Folder (searched recursively), glob or file; any fsspec URL.")
    ] = None,
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (local or fsspec URL) for all results.")] = (
        "singan_runs"
    ),
    preset_name: Annotated[
        str | None, typer.Option("--preset", "-p", help=f"Hyper-parameter preset: {', '.join(PRESETS)} "
                                 "(default: paper; quick with --demo).")
    ] = None,
    overrides: Annotated[
        list[str] | None, typer.Option("--set", "-s", help="Override a config field, e.g. --set niter=500 "
                                       "(repeatable).")
    ] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed of training and sampling (default: the preset's).")] = (
        None
    ),
    highres: Annotated[
        bool, typer.Option("--highres", help="High-Res SinGAN: a base and four quadrant pyramids, stitched samples.")
    ] = False,
    samples: Annotated[
        int | None, typer.Option(help=f"Samples per image (default 50; {DEMO_SAMPLES} with --demo); 0: none.")
    ] = None,
    scale_h: Annotated[float, typer.Option(help="Width factor of the samples (1.0 = training size).")] = 1.0,
    scale_v: Annotated[float, typer.Option(help="Height factor of the samples (1.0 = training size).")] = 1.0,
    metrics: Annotated[
        list[str] | None,
        typer.Option(help="Metrics to compute: sifid, swd, patch_fd, diversity (repeatable or comma list; "
                          "default all; SIFID only when the Inception weights are available)."),
    ] = None,
    inception_weights: Annotated[
        str | None, typer.Option(help="Inception-v3 weights for SIFID: path or URL (default: "
                                      "$SINGAN_INCEPTION_WEIGHTS or torch's cache).")
    ] = None,
    tracking_uri: Annotated[
        str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else "
                                      "sqlite:///<out>/mlflow.db).")
    ] = None,
    experiment: Annotated[str, typer.Option(help="MLflow experiment name.")] = "singan",
    run_name: Annotated[str | None, typer.Option(help="Name of the job's parent MLflow run.")] = None,
    tag: Annotated[
        str | None, typer.Option(help="Variant tag stored with every row and run; jobs with another tag keep "
                                      "their own results.")
    ] = None,
    cpus_per_task: Annotated[int, typer.Option(help="CPUs (and torch threads) per training task.")] = 1,
    gpus_per_task: Annotated[
        float, typer.Option(help="GPU fraction per training task when the cluster has GPUs (0.25: four share one).")
    ] = 0.25,
    address: Annotated[
        str | None, typer.Option(help="Ray cluster: 'auto', 'ray://host:10001', or 'local' for a private one "
                                      "(default: $RAY_ADDRESS / a running local head / a new local one).")
    ] = None,
    demo: Annotated[
        bool, typer.Option("--demo", help=f"Run on the bundled example photos (quick preset, {DEMO_SAMPLES} samples).")
    ] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No live progress and no summary table.")] = False,
) -> None:
    """Train a SinGAN on every image under INPUT, sample and evaluate it, on Ray; Parquet + MLflow results."""
    from pipeline.run import counts_line, run_dataset

    if demo:
        from pipeline.examples import write_examples

        if input_url:
            raise fail("--demo uses the bundled example photos: give no INPUT")
        input_url = str(Path(out) / "examples") if "://" not in out else f"{out.rstrip('/')}/examples"
        write_examples(input_url)
    if not input_url:
        raise fail("missing INPUT (a folder, glob or file of images), or use --demo")
    cfg = resolve_config(preset_name or ("quick" if demo else "paper"), overrides, seed)
    metric_names = tuple(m for item in metrics for m in item.split(",") if m.strip()) if metrics else None
    n_samples = samples if samples is not None else (DEMO_SAMPLES if demo else 50)
    summary = run_dataset(
        input_url, out, cfg, highres=highres, samples=n_samples,
        scale_h=scale_h, scale_v=scale_v, metrics=metric_names, inception_weights=inception_weights,
        tracking_uri=tracking_uri, experiment=experiment, run_name=run_name, num_cpus_per_task=cpus_per_task,
        gpus_per_task=gpus_per_task, address=address, variant_tag=tag, progress=not quiet,
    )
    if quiet:
        typer.echo(counts_line(summary))
    if demo or not quiet:
        typer.echo(demo_hints(summary))
    raise typer.Exit(summary.exit_code)


if __name__ == "__main__":
    sys.exit(app())
