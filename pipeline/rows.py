"""An image's task results turned into table rows, and the rows waiting to be written to Parquet.

    finished = collect(job, plan)        # runs, samples, metrics and summary rows of one image
    pending.add(finished)
    pending = flush(out, pending)        # replaces those images' groups in the four tables

The config becomes JSON here, in the `config_json` column of runs.parquet, and nowhere before.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from singan_core.config import Config

from . import results as rs
from .dataset import ImageItem
from .plan import Plan
from .submit import ImageJob, TaskFailure, TaskResult
from .tasks import ChunkResult, Trained, now

Row = dict[str, Any]
GroupKey = tuple[str, str, str, str]  # (image_id, config_hash, variant_tag, variant)


@dataclass
class Finished:
    """The rows of one finished image, ready for the tables (MLflow ids are added by `tracking.log_image`)."""

    image_id: str
    status: str  # ok | failed
    runs: list[Row]
    samples: list[Row]
    metrics: list[Row]
    summary: list[Row]
    groups: list[GroupKey]
    configs: dict[str, Config]  # variant -> the config it was trained with
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------- one image
def collect(job: ImageJob, plan: Plan) -> Finished:
    """Turn an image's task results into rows."""
    item = job.item
    trained = {v: job.results[ref] for v, ref in job.train.items()}
    configs = {v: _config(result, plan) for v, result in trained.items()}
    train_rows = [{**_train_row(item, v, result), **job_columns(plan, v, configs[v])} for v, result in trained.items()]
    sampled = [_as_chunk(job.results[ref]) for ref in job.samples]
    evaluated = [_as_chunk(job.results[ref]) for ref in [*job.evals, *([job.set_eval] if job.set_eval else [])]]
    sample_rows = [r for chunk in sampled for r in chunk.rows]
    metric_rows = [r for chunk in evaluated for r in chunk.rows]
    sample_errors = [chunk.error for chunk in sampled if chunk.error and not chunk.skipped]
    eval_notes = sorted({note for chunk in evaluated for note in chunk.notes})
    eval_failures = [chunk.error for chunk in evaluated if chunk.error]

    rows = train_rows
    if plan.highres:
        configs["stitched"] = plan.config
        rows = [*train_rows, {**_stitched_row(item, train_rows), **job_columns(plan, "stitched", plan.config)}]
    for row in rows:
        if row["variant"] == plan.sample_variant:
            row["num_samples"] = len(sample_rows)
            if row.get("status") == "ok" and (sample_errors or len(sample_rows) < plan.samples):
                row.update(status="failed", error=(sample_errors or ["fewer samples than asked for"])[0],
                           error_type="SamplingError")
    status = "ok" if all(r.get("status") == "ok" for r in rows) else "failed"
    return Finished(item.image_id, status, rows, sample_rows, metric_rows, rs.summarize_metrics(metric_rows),
                    plan.group_keys(item.image_id), configs, [*eval_notes, *eval_failures])


def unreadable(item: ImageItem, plan: Plan) -> Finished:
    """The rows of a file that could not even be read (no task was started for it)."""
    t = now()
    rows = [{"image_id": item.image_id, "source_uri": item.url, "status": "failed", "error": item.error,
             "error_type": "ReadError", "start_time": t, "end_time": t, **job_columns(plan, v, plan.config)}
            for v in plan.variants]
    return Finished(item.image_id, "failed", rows, [], [], [], plan.group_keys(item.image_id),
                    {v: plan.config for v in plan.variants})


def job_columns(plan: Plan, variant: str, config: Config) -> Row:
    """The columns of runs.parquet that the job, not the task, knows: its keys and the variant's config."""
    return {"config_hash": plan.config_hash, "variant_tag": plan.tag, "variant": variant,
            "config_json": config.to_json(), "epoch_decay": config.epoch_decay, "adv_loss": config.adv_loss,
            "padding": config.padding}


def _config(result: TaskResult, plan: Plan) -> Config:
    """The config a variant was trained with; the job's when its task failed before knowing it."""
    return result.config if isinstance(result, Trained) and result.config is not None else plan.config


def _train_row(item: ImageItem, variant: str, result: TaskResult) -> Row:
    if isinstance(result, TaskFailure):
        return {"image_id": item.image_id, "source_uri": item.url, "variant": variant, "status": "failed",
                "error": result.error, "error_type": result.error_type, "end_time": now()}
    return dict(result.row)


def _as_chunk(result: TaskResult) -> ChunkResult:
    """A chunk task's result; one Ray gave up on counts as a chunk that failed with its error."""
    return ChunkResult(error=result.error) if isinstance(result, TaskFailure) else result


def _stitched_row(item: ImageItem, train_rows: Sequence[Row]) -> Row:
    failed = [r for r in train_rows if r.get("status") != "ok"]
    parts_seconds = [r.get("total_seconds") for r in train_rows]
    starts = [r["start_time"] for r in train_rows if r.get("start_time") is not None]
    base = train_rows[0]  # the stitched samples have the base pyramid's x_0 size
    row = {"image_id": item.image_id, "source_uri": item.url, "status": "ok" if not failed else "failed",
           "total_seconds": sum(parts_seconds) if None not in parts_seconds else None,
           **{k: base.get(k) for k in ("orig_height", "orig_width", "train_height", "train_width")},
           "start_time": min(starts) if starts else None, "end_time": now()}
    if failed:
        row.update(error=f"{failed[0]['variant']}: {failed[0].get('error')}", error_type=failed[0].get("error_type"))
    return row


# ---------------------------------------------------------------------------- writing
@dataclass
class Pending:
    """Rows waiting to be written to the Parquet tables."""

    runs: list[Row] = field(default_factory=list)
    samples: list[Row] = field(default_factory=list)
    metrics: list[Row] = field(default_factory=list)
    summary: list[Row] = field(default_factory=list)
    groups: list[GroupKey] = field(default_factory=list)

    def add(self, finished: Finished) -> None:
        self.runs += finished.runs
        self.samples += finished.samples
        self.metrics += finished.metrics
        self.summary += finished.summary
        self.groups += finished.groups


def flush(out: str, pending: Pending) -> Pending:
    """Write the pending rows (replacing their groups' old rows); return an empty Pending."""
    if pending.groups:
        for name, rows in (("samples", pending.samples), ("metrics", pending.metrics),
                           ("metrics_summary", pending.summary), ("runs", pending.runs)):
            rs.replace_groups(rs.table_url(out, name), rows, rs.TABLES[name], pending.groups)
    return Pending()
