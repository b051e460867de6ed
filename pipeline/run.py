"""The driver of a dataset job: discover, skip what is done, fan out on Ray, collect rows, log, write.

    summary = run_dataset("photos/", "results/", preset("quick"))

For every image: training (one task, or five plus stitching with `highres=True`), then sampling in
chunks and evaluation of each chunk, all chained by Ray object references so the driver only waits
for rows. When an image's tasks are all finished the driver logs its MLflow runs and queues its rows;
the Parquet tables are rewritten (atomically) every few seconds and at the end, Ctrl-C included.
"""

from __future__ import annotations

import json
import os
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import pandas as pd
import ray

from singan_core.config import Config

from . import results as rs
from .dataset import ImageItem, discover_images, identify
from .progress import Counts, LiveProgress, running_text, summary_table
from .tasks import (
    FAULT_ENV,
    HIGHRES_PARTS,
    EvalSpec,
    ProgressBoard,
    SampleSpec,
    TrainSpec,
    now,
    one_line,
    remote_evaluate,
    remote_evaluate_set,
    remote_sample,
    remote_stitch,
    remote_train,
)
from .tracking import Tracker, default_tracking_uri, log_variant, model_files

FLUSH_SECONDS = 10.0  # the Parquet tables are rewritten at most this often while the job runs
PERMANENT_ERRORS = ("ImageError",)  # bad input: the same bytes fail the same way, a re-run skips them
OUTPUT_FOLDERS = ("models", "samples", "plots", "mlartifacts")  # never read back as input images
_TAG_RE = re.compile(r"^[A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------- the result
@dataclass
class RunSummary:
    """What a job did. Counts are images (not variants); `runs` holds runs.parquet's rows of this job's
    images (including the skipped ones, whose rows come from the earlier run)."""

    ok: int
    failed: int
    skipped: int
    previously_failed: int  # skipped because an earlier run found the same bytes to be bad input
    interrupted: bool
    seconds: float
    out: str
    runs_path: str
    samples_path: str
    metrics_path: str
    summary_path: str
    tracking_uri: str
    experiment: str
    experiment_id: str
    parent_run_id: str
    notes: list[str] = field(default_factory=list)
    runs: pd.DataFrame = field(default_factory=pd.DataFrame)

    @property
    def exit_code(self) -> int:
        """0: every image ok; 1: some image failed (now or, for skipped bad input, before); 130: interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed or self.previously_failed else 0

    def read(self, table: str) -> pd.DataFrame:
        """One of the job's tables in full: 'runs', 'samples', 'metrics' or 'metrics_summary'."""
        return rs.read_table(rs.table_url(self.out, table), rs.TABLES[table])


# ---------------------------------------------------------------------------- resources
@dataclass(frozen=True)
class TaskResources:
    num_cpus: int
    num_gpus: float
    note: str | None = None


def plan_resources(nodes: Sequence[dict[str, float]], num_cpus: int, gpus_per_task: float) -> TaskResources:
    """Check the per-task request against the nodes' resources; fail fast instead of waiting forever.

    Without any GPU in the cluster the GPU request is dropped (tasks run on the CPU), with a note.
    """
    if num_cpus < 1:
        raise ValueError(f"--cpus-per-task must be at least 1, got {num_cpus}")
    if gpus_per_task < 0:
        raise ValueError(f"--gpus-per-task must not be negative, got {gpus_per_task}")
    if gpus_per_task > 1 and gpus_per_task != int(gpus_per_task):
        raise ValueError(f"--gpus-per-task above 1 must be a whole number, got {gpus_per_task}")
    if not nodes:
        raise ValueError("the Ray cluster has no live node")
    most_cpus = max(n.get("CPU", 0.0) for n in nodes)
    if num_cpus > most_cpus:
        raise ValueError(f"--cpus-per-task {num_cpus} is more than any node has (largest: {most_cpus:g} CPUs)")
    most_gpus = max(n.get("GPU", 0.0) for n in nodes)
    if gpus_per_task == 0:
        return TaskResources(num_cpus, 0.0)
    if most_gpus == 0:
        return TaskResources(num_cpus, 0.0, "no GPU in the Ray cluster: every task runs on the CPU")
    if gpus_per_task > most_gpus:
        raise ValueError(f"--gpus-per-task {gpus_per_task:g} is more than any node has (largest: {most_gpus:g} GPUs)")
    fitting = [n for n in nodes if n.get("CPU", 0) >= num_cpus and n.get("GPU", 0) >= gpus_per_task]
    if not fitting:
        raise ValueError(f"no node has both {num_cpus} CPUs and {gpus_per_task:g} GPUs for one task")
    return TaskResources(num_cpus, gpus_per_task)


def live_nodes() -> list[dict[str, float]]:
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def slots(nodes: Sequence[dict[str, float]], res: TaskResources) -> int:
    """How many training tasks fit in the cluster at once."""
    total = 0
    for n in nodes:
        fit = int(n.get("CPU", 0) // res.num_cpus)
        if res.num_gpus:
            fit = min(fit, int(n.get("GPU", 0) / res.num_gpus + 1e-9))
        total += fit
    return max(1, total)


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` ("auto", "ray://...", "local" for a private one; None: the
    cluster of $RAY_ADDRESS or a running local head, else a new local one, without the dashboard, which
    costs a 2-core machine more than it shows). True when this call connected."""
    if ray.is_initialized():
        return False
    import logging

    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    return True


# ---------------------------------------------------------------------------- the job's plan
@dataclass(frozen=True)
class Layout:
    """Where everything goes under the output folder."""

    out: str

    def group(self, image_id: str, config_hash: str, tag: str) -> str:
        return f"{image_id}-{config_hash}" + (f"-{tag}" if tag else "")

    def model(self, group: str, variant: str) -> str:
        return f"{self.out}/models/{group}/{variant}"

    def samples(self, group: str, variant: str) -> str:
        return f"{self.out}/samples/{group}/{variant}"

    def plot(self, group: str, variant: str, name: str) -> str:
        return f"{self.out}/plots/{group}/{variant}/{name}"


@dataclass(frozen=True)
class Plan:
    """Everything the driver needs to submit an image's tasks."""

    config: Config
    config_hash: str
    tag: str
    highres: bool
    samples: int
    sample_batch: int
    scale_h: float
    scale_v: float
    metrics: tuple[str, ...]
    inception_weights: str | None
    resources: TaskResources
    layout: Layout
    fault_exit_after_scale: int | None

    @property
    def train_variants(self) -> tuple[str, ...]:
        return HIGHRES_PARTS if self.highres else ("full",)

    @property
    def sample_variant(self) -> str:
        return "stitched" if self.highres else "full"

    @property
    def variants(self) -> tuple[str, ...]:
        return (*HIGHRES_PARTS, "stitched") if self.highres else ("full",)


@dataclass
class ImageJob:
    """The tasks of one image in flight, and their results as they arrive."""

    item: ImageItem
    group: str
    train: dict[str, Any]  # variant -> ObjectRef
    samples: list[Any]
    evals: list[Any]
    set_eval: Any | None
    results: dict[Any, Any] = field(default_factory=dict)  # ObjectRef -> result (or TaskFailure)

    def refs(self) -> list[Any]:
        return [*self.train.values(), *self.samples, *self.evals, *([self.set_eval] if self.set_eval else [])]

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.refs())


@dataclass(frozen=True)
class TaskFailure:
    """A task that Ray gave up on (its worker died more often than max_retries, or it was cancelled)."""

    error: str
    error_type: str


def describe_ray_error(e: Exception) -> TaskFailure:
    cause = getattr(e, "cause", None)
    if isinstance(cause, Exception):
        return TaskFailure(f"{type(cause).__name__}: {one_line(cause)}", type(cause).__name__)
    text = str(e).strip().splitlines()
    message = next((line for line in text if "died" in line or "crash" in line.lower()), text[0] if text else "")
    return TaskFailure(f"{type(e).__name__}: {message}".strip(": "), type(e).__name__)


# ---------------------------------------------------------------------------- submitting
def _train_options(res: TaskResources) -> dict[str, Any]:
    return {"num_cpus": res.num_cpus, "num_gpus": res.num_gpus}


def submit_image(item: ImageItem, plan: Plan, board: Any) -> ImageJob:
    """Submit the whole chain of one image at once; Ray runs each task when its inputs are ready."""
    layout, res = plan.layout, plan.resources
    group = layout.group(item.image_id, plan.config_hash, plan.tag)
    train = {}
    for variant in plan.train_variants:
        spec = TrainSpec(item.url, item.image_id, variant, plan.config.to_json(), layout.model(group, variant),
                         layout.plot(group, variant, "loss_curves.png"), res.num_cpus, plan.fault_exit_after_scale)
        train[variant] = remote_train.options(**_train_options(res)).remote(spec, board)

    variant = plan.sample_variant
    real_model = layout.model(group, "base" if plan.highres else variant)  # the stitch is at the base's size
    eval_spec = EvalSpec(real_model, plan.metrics, plan.inception_weights, seed=plan.config.seed)
    samples, evals = [], []
    for start in range(0, plan.samples, plan.sample_batch):
        spec = SampleSpec(
            item.image_id, plan.config_hash, plan.tag, variant, start, min(plan.sample_batch, plan.samples - start),
            seed=plan.config.seed * 1_000_003 + start, scale_h=plan.scale_h, scale_v=plan.scale_v,
            samples_url=layout.samples(group, variant),
            grid_url=layout.plot(group, variant, "sample_grid.png") if start == 0 else None, threads=res.num_cpus,
        )
        if plan.highres:
            ref = remote_stitch.options(**_train_options(res)).remote(spec, *(train[p] for p in HIGHRES_PARTS))
        else:
            ref = remote_sample.options(**_train_options(res)).remote(spec, train[variant])
        samples.append(ref)
        if set(plan.metrics) - {"diversity"}:
            evals.append(remote_evaluate.options(num_cpus=1).remote(eval_spec, ref))
    set_eval = None
    if "diversity" in plan.metrics and plan.samples >= 2:
        set_eval = remote_evaluate_set.options(num_cpus=1).remote(eval_spec, *samples)
    return ImageJob(item, group, train, samples, evals, set_eval)


# ---------------------------------------------------------------------------- collecting
@dataclass
class Finished:
    """The rows of one finished image, ready for the tables."""

    image_id: str
    status: str  # ok | failed
    runs: list[dict[str, Any]]
    samples: list[dict[str, Any]]
    metrics: list[dict[str, Any]]
    summary: list[dict[str, Any]]
    groups: list[tuple[str, str, str, str]]
    notes: list[str]


def _job_columns(plan: Plan, variant: str, cfg_json: str | None) -> dict[str, Any]:
    cfg = Config.from_dict(json.loads(cfg_json)) if cfg_json else plan.config
    return {"config_hash": plan.config_hash, "variant_tag": plan.tag, "variant": variant,
            "config_json": cfg.to_json(), "epoch_decay": cfg.epoch_decay, "adv_loss": cfg.adv_loss,
            "padding": cfg.padding}


def _train_row(item: ImageItem, variant: str, result: Any, plan: Plan) -> dict[str, Any]:
    if isinstance(result, TaskFailure):
        row = {"image_id": item.image_id, "source_uri": item.url, "variant": variant, "status": "failed",
               "error": result.error, "error_type": result.error_type, "end_time": now()}
    else:
        row = dict(result)
    return {**row, **_job_columns(plan, variant, row.get("config_json"))}


def _chunk_results(job: ImageJob, refs: Sequence[Any]) -> tuple[list[dict[str, Any]], list[str]]:
    rows, errors = [], []
    for ref in refs:
        result = job.results[ref]
        if isinstance(result, TaskFailure):
            errors.append(result.error)
        else:
            rows += result["rows"]
            if result.get("error") and not result.get("skipped"):
                errors.append(result["error"])
            errors += [f"note: {n}" for n in result.get("notes", [])]
    return rows, errors


def collect(job: ImageJob, plan: Plan) -> Finished:
    """Turn an image's task results into rows (MLflow ids are added by `log_image`)."""
    item = job.item
    train_rows = [_train_row(item, v, job.results[ref], plan) for v, ref in job.train.items()]
    sample_rows, sample_errors = _chunk_results(job, job.samples)
    metric_rows, eval_errors = _chunk_results(job, [*job.evals, *([job.set_eval] if job.set_eval else [])])
    eval_notes = sorted({e[len("note: "):] for e in eval_errors if e.startswith("note: ")})
    failures = [e for e in eval_errors if not e.startswith("note: ")]
    sample_errors = [e for e in sample_errors if not e.startswith("note: ")]

    sampled = plan.sample_variant
    rows = train_rows
    if plan.highres:
        rows = [*train_rows, _stitched_row(item, train_rows, plan)]
    for row in rows:
        if row["variant"] == sampled:
            row["num_samples"] = len(sample_rows)
            if row.get("status") == "ok" and (sample_errors or len(sample_rows) < plan.samples):
                row.update(status="failed", error=(sample_errors or ["fewer samples than asked for"])[0],
                           error_type="SamplingError")
    status = "ok" if all(r.get("status") == "ok" for r in rows) else "failed"
    groups = [(item.image_id, plan.config_hash, plan.tag, v) for v in plan.variants]
    return Finished(item.image_id, status, rows, sample_rows, metric_rows, rs.summarize_metrics(metric_rows),
                    groups, [*eval_notes, *failures])


def _stitched_row(item: ImageItem, train_rows: list[dict[str, Any]], plan: Plan) -> dict[str, Any]:
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
    return {**row, **_job_columns(plan, "stitched", None)}


def log_image(tracker: Tracker, parent_id: str, finished: Finished, plan: Plan) -> Finished:
    """One nested MLflow run per variant of the image; returns the rows with their `mlflow_run_id`."""
    layout = plan.layout
    rows = []
    for row in finished.runs:
        variant = row["variant"]
        group = layout.group(row["image_id"], plan.config_hash, plan.tag)
        files = {"plots/loss_curves.png": layout.plot(group, variant, "loss_curves.png"),
                 "plots/sample_grid.png": layout.plot(group, variant, "sample_grid.png")}
        if row.get("status") == "ok" and row.get("model_uri"):
            files.update(model_files(row["model_uri"]))
        summary = [s for s in finished.summary if s["variant"] == variant]
        name = f"{os.path.basename(str(row.get('source_uri')))} {variant}"
        rows.append({**row, "mlflow_run_id": log_variant(tracker, parent_id, row, summary, files, name)})
    return replace(finished, runs=rows)


# ---------------------------------------------------------------------------- skipping
def previous_results(runs: pd.DataFrame, plan: Plan) -> dict[str, str]:
    """image_id -> 'ok' | 'failed' for images this job need not redo (same bytes, config and tag).

    'ok': every variant finished ok. 'failed': the input itself was bad (corrupt, too small, not an
    image), which the same bytes would be again. Any other failure is retried.
    """
    if runs.empty:
        return {}
    mine = runs[(runs["config_hash"] == plan.config_hash) & (runs["variant_tag"].fillna("") == plan.tag)]
    mine = mine[mine["variant"].isin(plan.variants)]
    out = {}
    for image_id, rows in mine.groupby("image_id"):
        if rows["error_type"].isin(PERMANENT_ERRORS).any():
            out[image_id] = "failed"
        elif set(rows.loc[rows["status"] == "ok", "variant"]) >= set(plan.variants):
            out[image_id] = "ok"
    return out


# ---------------------------------------------------------------------------- writing
@dataclass
class Pending:
    """Rows waiting to be written to the Parquet tables."""

    runs: list[dict[str, Any]] = field(default_factory=list)
    samples: list[dict[str, Any]] = field(default_factory=list)
    metrics: list[dict[str, Any]] = field(default_factory=list)
    summary: list[dict[str, Any]] = field(default_factory=list)
    groups: list[tuple[str, str, str, str]] = field(default_factory=list)

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


# ---------------------------------------------------------------------------- the job
def _check_options(samples: int, scale_h: float, scale_v: float, tag: str, sample_batch: int) -> None:
    if samples < 0:
        raise ValueError(f"--samples must not be negative, got {samples}")
    if scale_h <= 0 or scale_v <= 0:
        raise ValueError("--scale-h and --scale-v must be positive")
    if not _TAG_RE.match(tag):
        raise ValueError(f"variant tag {tag!r} may hold only letters, digits, '.', '_' and '-'")
    if sample_batch < 1:
        raise ValueError("sample_batch must be at least 1")


def _resolve_metrics(metrics: Sequence[str] | None, inception_weights: str | None,
                     samples: int) -> tuple[tuple[str, ...], str | None, list[str]]:
    """Validated metric names (None: all; empty: none); SIFID is dropped (with a note) when its weights
    cannot be had."""
    from singan_core.metrics import MissingWeightsError, parse_metrics, resolve_inception_weights

    if metrics is not None and not [m for m in metrics if m.strip()]:
        return (), inception_weights, []
    names = parse_metrics(list(metrics) if metrics is not None else None)
    if "sifid" not in names or samples == 0:
        return names, inception_weights, []
    try:
        location = resolve_inception_weights(inception_weights)
    except MissingWeightsError as e:
        return tuple(m for m in names if m != "sifid"), None, [f"SIFID skipped: {e}"]
    # An http(s) source is passed on as is, so a worker on another node can fetch it into its own cache.
    return names, inception_weights if inception_weights and "://" in inception_weights else location, []


def _fault_switch() -> int | None:
    value = os.environ.get(FAULT_ENV, "").strip()
    return int(value) if value else None


def run_dataset(
    input_url: str,
    out_url: str,
    config: Config,
    *,
    highres: bool = False,
    samples: int = 50,
    scale_h: float = 1.0,
    scale_v: float = 1.0,
    metrics: tuple[str, ...] | None = None,
    inception_weights: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "singan",
    run_name: str | None = None,
    num_cpus_per_task: int = 1,
    gpus_per_task: float = 0.25,
    address: str | None = None,
    variant_tag: str | None = None,
    progress: bool = True,
    sample_batch: int = 16,
) -> RunSummary:
    """Train, sample and evaluate every image under `input_url`; results under `out_url`.

    Returns a RunSummary; raises ValueError / FileNotFoundError (one line) for bad options or input
    before any task runs. Ctrl-C stops the tasks, keeps what finished and returns (interrupted=True).
    When every image is already done (same bytes, config and tag), neither Ray nor MLflow is started.
    """
    t0 = time.perf_counter()
    out = absolute(out_url)
    tag = variant_tag or ""
    _check_options(samples, scale_h, scale_v, tag, sample_batch)
    urls = discover_images(input_url, exclude=[f"{out}/{folder}" for folder in OUTPUT_FOLDERS])
    metric_names, weights, notes = _resolve_metrics(metrics, inception_weights, samples)
    if highres:
        from singan_core.applications import highres as _highres  # noqa: F401 - fail now if it is missing
    plan = Plan(config, config.hash(), tag, highres, samples, sample_batch, scale_h, scale_v, metric_names, weights,
                TaskResources(num_cpus_per_task, gpus_per_task), Layout(out), _fault_switch())
    triage = sort_out([identify(url) for url in urls], previous_results(_read(out, "runs"), plan))
    uri = default_tracking_uri(out, tracking_uri)
    if not triage.todo:
        return _finish(triage, Outcome(Counts(), False, []), plan, uri, experiment, "", "", notes, t0, progress)

    started_ray = connect(address)
    board = None
    try:
        nodes = live_nodes()
        res = plan_resources(nodes, num_cpus_per_task, gpus_per_task)
        plan = replace(plan, resources=res)
        notes += [res.note] if res.note else []
        tracker = Tracker.open(uri, experiment, out)
        parent_id = tracker.start_run(
            run_name or f"train_dataset {os.path.basename(input_url.rstrip('/')) or input_url}",
            {**config.to_dict(), "highres": highres, "samples": samples, "scale_h": scale_h, "scale_v": scale_v,
             "metrics": ",".join(metric_names), "num_cpus_per_task": res.num_cpus, "gpus_per_task": res.num_gpus},
            {"input": input_url, "out": out, "config_hash": plan.config_hash, "variant_tag": tag or None},
        )
        for note in [*notes, *triage.notes]:
            _say(f"note: {note}", progress)
        board = ProgressBoard.remote()
        try:
            outcome = _drive(triage, plan, tracker, parent_id, board, 2 * slots(nodes, res) + 2, progress)
        except BaseException:
            tracker.end_run(parent_id, "FAILED")
            raise
    finally:
        if board is not None:
            ray.kill(board)
        if started_ray:
            ray.shutdown()
    counts = outcome.counts
    tracker.log_metrics(parent_id, [("images_ok", counts.ok, 0), ("images_failed", counts.failed, 0),
                                    ("images_skipped", triage.skipped, 0),
                                    ("job_seconds", time.perf_counter() - t0, 0)])
    tracker.end_run(parent_id, "KILLED" if outcome.interrupted else "FINISHED")
    return _finish(triage, outcome, plan, uri, experiment, tracker.experiment_id, parent_id, notes, t0, progress)


def absolute(url: str) -> str:
    """Local paths made absolute (Ray workers and MLflow do not share the driver's working folder)."""
    url = url.rstrip("/")
    return os.path.abspath(os.path.expanduser(url)) if "://" not in url else url


def _read(out: str, table: str) -> pd.DataFrame:
    return rs.read_table(rs.table_url(out, table), rs.TABLES[table])


def _finish(triage: Triage, outcome: Outcome, plan: Plan, uri: str, experiment: str, experiment_id: str,
            parent_id: str, notes: list[str], t0: float, progress: bool) -> RunSummary:
    out = plan.layout.out
    runs = _read(out, "runs")
    mine = runs["image_id"].isin(triage.image_ids) & (runs["config_hash"] == plan.config_hash)
    mine &= runs["variant_tag"].fillna("") == plan.tag
    summary = RunSummary(
        ok=outcome.counts.ok, failed=outcome.counts.failed, skipped=triage.skipped,
        previously_failed=triage.previously_failed, interrupted=outcome.interrupted,
        seconds=time.perf_counter() - t0, out=out,
        runs_path=rs.table_url(out, "runs"), samples_path=rs.table_url(out, "samples"),
        metrics_path=rs.table_url(out, "metrics"), summary_path=rs.table_url(out, "metrics_summary"),
        tracking_uri=uri, experiment=experiment, experiment_id=experiment_id, parent_run_id=parent_id,
        notes=_dedupe([*notes, *triage.notes, *outcome.notes]), runs=runs[mine].reset_index(drop=True),
    )
    if progress:
        print(format_report(summary), flush=True)
    return summary


def _say(text: str, progress: bool) -> None:
    if progress:
        print(text, flush=True)


@dataclass(frozen=True)
class Triage:
    """The job's images sorted out before any task starts."""

    todo: list[ImageItem]
    skipped: int
    previously_failed: int
    image_ids: list[str]
    notes: list[str]


def sort_out(items: Sequence[ImageItem], previous: dict[str, str]) -> Triage:
    """Images to do; images done before (same bytes, config and tag) or repeated in the dataset are skipped."""
    todo: list[ImageItem] = []
    seen: set[str] = set()
    skipped = previously_failed = 0
    notes = []
    for item in items:
        if item.image_id in seen:
            notes.append(f"{item.url}: same content as another file of this job, skipped")
            skipped += 1
        elif item.image_id in previous:
            skipped += 1
            previously_failed += previous[item.image_id] == "failed"
        else:
            todo.append(item)
        seen.add(item.image_id)
    return Triage(todo, skipped, previously_failed, list(dict.fromkeys(i.image_id for i in items)), notes)


@dataclass
class Outcome:
    counts: Counts
    interrupted: bool
    notes: list[str]


def _drive(triage: Triage, plan: Plan, tracker: Tracker, parent_id: str, board: Any, window: int,
           progress: bool) -> Outcome:
    """The loop: keep up to `window` images in flight, collect finished ones, write now and then."""
    queue = list(reversed(triage.todo))
    names = {item.image_id: item.name for item in triage.todo}
    notes: list[str] = []
    counts = Counts(skipped=triage.skipped)
    in_flight: dict[Any, ImageJob] = {}  # ObjectRef -> its image
    active: list[ImageJob] = []
    pending, last_flush = Pending(), time.monotonic()
    view = LiveProgress(len(triage.todo) + triage.skipped, progress)
    interrupted = False
    try:
        while queue or active:
            while queue and len(active) < window:
                item = queue.pop()
                if item.error:
                    pending.add(_unreadable(item, plan, tracker, parent_id))
                    counts = _bump(counts, failed=1)
                    continue
                job = submit_image(item, plan, board)
                active.append(job)
                in_flight.update({ref: job for ref in job.refs()})
            counts = Counts(counts.ok, counts.failed, counts.skipped, len(active))
            view.show(counts, running_text(_running_scales(board, active), names))
            if not in_flight:
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0.5)
            for ref in ready:
                job = in_flight.pop(ref)
                job.results[ref] = _result(ref)
                if job.complete:
                    active.remove(job)
                    finished = log_image(tracker, parent_id, collect(job, plan), plan)
                    pending.add(finished)
                    notes += [f"{job.item.name}: {n}" for n in finished.notes]
                    counts = _bump(counts, **{"ok" if finished.status == "ok" else "failed": 1})
            if time.monotonic() - last_flush > FLUSH_SECONDS and pending.groups:
                pending, last_flush = flush(plan.layout.out, pending), time.monotonic()
    except KeyboardInterrupt:
        interrupted = True
        for ref in in_flight:
            ray.cancel(ref, force=False)
        _say("\ninterrupted: stopping the tasks, keeping the finished results", progress)
    finally:
        flush(plan.layout.out, pending)
        counts = Counts(counts.ok, counts.failed, counts.skipped, 0)
        view.show(counts)
        view.close()
    return Outcome(counts, interrupted, _dedupe(notes))


def _bump(counts: Counts, ok: int = 0, failed: int = 0, skipped: int = 0) -> Counts:
    return Counts(counts.ok + ok, counts.failed + failed, counts.skipped + skipped, counts.running)


def _dedupe(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def _result(ref: Any) -> Any:
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        return describe_ray_error(e)


def _running_scales(board: Any, active: list[ImageJob]) -> dict[str, tuple[int, int]]:
    """Current scale of the trainings still running (from the progress board)."""
    try:
        posted = ray.get(board.snapshot.remote(), timeout=2)
    except Exception:  # noqa: BLE001 - progress is best effort
        return {}
    running = {f"{job.item.image_id}/{v}" for job in active for v, ref in job.train.items() if ref not in job.results}
    return {k: v for k, v in posted.items() if k in running}


def _unreadable(item: ImageItem, plan: Plan, tracker: Tracker, parent_id: str) -> Finished:
    """The rows of a file that could not even be read (no task was started for it)."""
    t = now()
    rows = [{"image_id": item.image_id, "source_uri": item.url, "status": "failed", "error": item.error,
             "error_type": "ReadError", "start_time": t, "end_time": t, **_job_columns(plan, v, None)}
            for v in plan.variants]
    finished = Finished(item.image_id, "failed", rows, [], [], [],
                        [(item.image_id, plan.config_hash, plan.tag, v) for v in plan.variants], [])
    return log_image(tracker, parent_id, finished, plan)


# ---------------------------------------------------------------------------- the report
def counts_line(summary: RunSummary) -> str:
    before = f" ({summary.previously_failed} of them bad input seen before)" if summary.previously_failed else ""
    state = " (interrupted)" if summary.interrupted else ""
    return (f"images: {summary.ok} ok, {summary.failed} failed, {summary.skipped} skipped{before} "
            f"in {summary.seconds:.1f} s{state}")


def format_report(summary: RunSummary) -> str:
    """The summary table, the counts and where everything is."""
    metrics = rs.read_table(summary.summary_path, rs.SUMMARY)
    metrics = metrics[metrics["image_id"].isin(summary.runs["image_id"])] if len(summary.runs) else metrics
    lines = ["", summary_table(summary.runs, metrics), ""]
    lines.append(counts_line(summary))
    for note in summary.notes:
        lines.append(f"note: {note}")
    lines += [
        f"runs:     {summary.runs_path}",
        f"samples:  {summary.samples_path}",
        f"metrics:  {summary.metrics_path}",
        f"          {summary.summary_path}",
        f"MLflow:   experiment {summary.experiment!r} (id {summary.experiment_id}), parent run "
        f"{summary.parent_run_id}, store {summary.tracking_uri}",
    ]
    return "\n".join(lines)

