"""A dataset job: discover, skip what is done, fan out on Ray, collect rows, log, write.

    summary = run_dataset("photos/", "results/", preset("quick"))

For every pack of same-shape images (packs.py; one image by default on the CPU): one training task
(`highres=True`: per image the base alone and the quadrants as a pack, plus stitching); then per image
sampling in chunks and evaluation of each chunk, all chained by Ray object references so the driver only
waits for results. When an image's tasks are all finished the driver logs its MLflow runs and queues its
rows; the Parquet tables are rewritten (atomically) every few seconds and at the end, Ctrl-C included.

Where each step lives:

    plan.py      the checked options, the output layout, which images are left to do
    cluster.py   joining Ray, what each task may ask of the cluster (GPUs the autoscaler can add included)
    packs.py     the images of one training task: same training shape, at most K
    submit.py    an image's chain of tasks (tasks.py holds the tasks themselves)
    drive.py     the loop that keeps images in flight and collects them
    rows.py      task results -> table rows, the rows waiting for Parquet (results.py: schemas, writes)
    tracking.py  MLflow: the job's parent run, one nested run per image and variant
    progress.py  the live line and the report
"""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

import pandas as pd
import ray

from singan_core.config import Config

from . import results as rs
from .cluster import addable_node_types, connect, live_nodes, plan_resources, slots
from .dataset import discover_files, identify
from .drive import RESOURCE_TIMEOUT_S, Outcome, dedupe, drive
from .lock import hold_output
from .packs import make_units
from .plan import (
    Plan,
    Triage,
    absolute,
    check_options,
    check_storage,
    job_outputs,
    make_plan,
    previous_results,
    sort_out,
)
from .progress import Counts, format_report, say
from .tasks import ProgressBoard
from .tracking import Tracker, default_tracking_uri, end_job_run, start_job_run


def run_dataset(
    input_url: str,
    out_url: str,
    config: Config,
    *,
    highres: bool = False,
    samples: int = 50,
    scale_h: float = 1.0,
    scale_v: float = 1.0,
    metrics: Sequence[str] | None = None,
    inception_weights: str | None = None,
    tracking_uri: str | None = None,
    experiment: str = "singan",
    run_name: str | None = None,
    num_cpus_per_task: int = 1,
    gpus_per_task: float | None = None,
    address: str | None = None,
    variant_tag: str | None = None,
    progress: bool = True,
    sample_batch: int = 16,
    pack: int | None = None,
    resource_timeout: float = RESOURCE_TIMEOUT_S,
) -> RunSummary:
    """Train, sample and evaluate every image under `input_url`; results under `out_url`.

    Returns a RunSummary; raises ValueError / FileNotFoundError (one line) for bad options or input
    before any task runs. Ctrl-C stops the tasks, keeps what finished and returns (interrupted=True).
    When every image is already done (same bytes, config and tag), neither Ray nor MLflow is started.

    `gpus_per_task` None: 0.25 when the cluster has or can add GPU nodes, else the CPU (cluster.plan_resources).
    `pack`: at most this many same-shape images per training task (None: one on the CPU, as many as fit on a
    GPU; packs.py). Training tasks that wait `resource_timeout` seconds with none running stop the job
    (ResourceTimeoutError, one line).
    """
    t0 = time.perf_counter()
    out = absolute(out_url)
    check_options(samples=samples, scale_h=scale_h, scale_v=scale_v, tag=variant_tag or "", sample_batch=sample_batch,
                  pack=pack, resource_timeout=resource_timeout)
    check_storage(input_url, out)
    found = discover_files(input_url, exclude=job_outputs(out))
    plan, notes = make_plan(out, config, highres=highres, samples=samples, sample_batch=sample_batch,
                            scale_h=scale_h, scale_v=scale_v, metrics=metrics, inception_weights=inception_weights,
                            num_cpus_per_task=num_cpus_per_task, gpus_per_task=gpus_per_task,
                            variant_tag=variant_tag, pack=pack)
    name = run_name or f"train_dataset {os.path.basename(input_url.rstrip('/')) or input_url}"
    with hold_output(out, job=name) as held:  # one job at a time on an output; released at the end, Ctrl-C included
        notes += [held.note] if held.note else []
        triage = sort_out([identify(url) for url in found.images], previous_results(_read(out, "runs"), plan),
                          found.others)
        rs.write_skipped(rs.table_url(out, "skipped"), triage.not_taken)
        uri = default_tracking_uri(out, tracking_uri)
        if not triage.todo:
            outcome = Outcome(Counts(), False, [])
            return _summarize(plan, triage, outcome, tracking_uri=uri, experiment=experiment, notes=notes, t0=t0,
                              progress=progress)

        joined = connect(address)
        board = None
        try:
            nodes, node_types = live_nodes(), addable_node_types()
            res = plan_resources(nodes, num_cpus_per_task, gpus_per_task, node_types)
            plan = replace(plan, resources=res)
            units = make_units(triage.todo, config, pack=pack, gpus=res.num_gpus, highres=highres)
            per_task = max(len(unit.items) for unit in units)
            notes += [note for note in (joined.note, res.note) if note]
            tracker = Tracker.open(uri, experiment, out)
            parent_id = start_job_run(tracker, name, plan, input_url)
            shown = dedupe([*notes, *triage.notes])
            for note in shown:
                say(f"note: {note}", progress)
            board = ProgressBoard.remote()
            try:
                outcome = drive(triage, plan, units, tracker=tracker, parent_id=parent_id, board=board,
                                window=(2 * slots([*nodes, *node_types], res) + 2) * per_task, progress=progress,
                                resource_timeout=resource_timeout)
            except BaseException:
                tracker.end_run(parent_id, "FAILED")
                raise
        finally:
            if board is not None:
                ray.kill(board)
            if joined.started:
                ray.shutdown()
        end_job_run(tracker, parent_id, ok=outcome.counts.ok, failed=outcome.counts.failed, skipped=triage.skipped,
                    seconds=time.perf_counter() - t0, interrupted=outcome.interrupted)
        return _summarize(plan, triage, outcome, tracking_uri=uri, experiment=experiment,
                          experiment_id=tracker.experiment_id, parent_run_id=parent_id, notes=notes, t0=t0,
                          progress=progress, shown=shown if progress else [])


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
    not_taken: dict[str, int] = field(default_factory=dict)  # files under the input without a row: reason -> count
    skipped_path: str = ""  # skipped.parquet: those files and why
    shown: list[str] = field(default_factory=list)  # notes already printed while the job ran (not repeated)

    @property
    def exit_code(self) -> int:
        """0: every image ok; 1: some image failed (now or, for skipped bad input, before); 130: interrupted."""
        if self.interrupted:
            return 130
        return 1 if self.failed or self.previously_failed else 0

    def read(self, table: str) -> pd.DataFrame:
        """One of the job's tables in full: 'runs', 'samples', 'metrics', 'metrics_summary' or 'skipped'."""
        return rs.read_table(rs.table_url(self.out, table), rs.SKIPPED if table == "skipped" else rs.TABLES[table])


def _summarize(plan: Plan, triage: Triage, outcome: Outcome, *, tracking_uri: str, experiment: str,
               experiment_id: str = "", parent_run_id: str = "", notes: list[str], t0: float,
               progress: bool, shown: list[str] | None = None) -> RunSummary:
    """The RunSummary of the finished job (printed as the report unless quiet)."""
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
        tracking_uri=tracking_uri, experiment=experiment, experiment_id=experiment_id, parent_run_id=parent_run_id,
        notes=dedupe([*notes, *triage.notes, *outcome.notes]), runs=runs[mine].reset_index(drop=True),
        not_taken=dict(Counter(row["reason"] for row in triage.not_taken)), skipped_path=rs.table_url(out, "skipped"),
        shown=shown or [],
    )
    if progress:
        print(format_report(summary), flush=True)
    return summary


def _read(out: str, table: str) -> pd.DataFrame:
    return rs.read_table(rs.table_url(out, table), rs.TABLES[table])
