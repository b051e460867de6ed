"""The driver's loop: keep a window of images in flight on Ray, collect each finished one, write now and then.

    outcome = drive(triage, plan, tracker=tracker, parent_id=run_id, board=board, window=6, progress=True)

Each finished image is logged to MLflow (one nested run per variant) and its rows are queued; the
Parquet tables are rewritten every FLUSH_SECONDS and at the end, Ctrl-C included.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import ray

from .plan import Plan, Triage
from .progress import Counts, LiveProgress, running_text, say
from .rows import Pending, collect, flush, unreadable
from .submit import ImageJob, fetch, submit_image
from .tracking import Tracker, log_image

FLUSH_SECONDS = 10.0  # the Parquet tables are rewritten at most this often while the job runs


@dataclass(frozen=True)
class Outcome:
    """What the loop did: the images' counts, whether Ctrl-C stopped it, the notes of finished images."""

    counts: Counts
    interrupted: bool
    notes: list[str]


def drive(triage: Triage, plan: Plan, *, tracker: Tracker, parent_id: str, board: Any, window: int,
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
                    pending.add(log_image(tracker, parent_id, unreadable(item, plan), plan))
                    counts = replace(counts, failed=counts.failed + 1)
                    continue
                job = submit_image(item, plan, board)
                active.append(job)
                in_flight.update({ref: job for ref in job.refs()})
            counts = replace(counts, running=len(active))
            view.show(counts, running_text(_running_scales(board, active), names))
            if not in_flight:
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0.5)
            for ref in ready:
                job = in_flight.pop(ref)
                job.results[ref] = fetch(ref)
                if job.complete:
                    active.remove(job)
                    finished = log_image(tracker, parent_id, collect(job, plan), plan)
                    pending.add(finished)
                    notes += [f"{job.item.name}: {n}" for n in finished.notes]
                    if finished.status == "ok":
                        counts = replace(counts, ok=counts.ok + 1)
                    else:
                        counts = replace(counts, failed=counts.failed + 1)
            if time.monotonic() - last_flush > FLUSH_SECONDS and pending.groups:
                pending, last_flush = flush(plan.layout.out, pending), time.monotonic()
    except KeyboardInterrupt:
        interrupted = True
        for ref in in_flight:
            ray.cancel(ref, force=False)
        say("\ninterrupted: stopping the tasks, keeping the finished results", progress)
    finally:
        flush(plan.layout.out, pending)
        counts = replace(counts, running=0)
        view.show(counts)
        view.close()
    return Outcome(counts, interrupted, dedupe(notes))


def dedupe(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def _running_scales(board: Any, active: list[ImageJob]) -> dict[str, tuple[int, int]]:
    """Current scale of the trainings still running (from the progress board)."""
    try:
        posted = ray.get(board.snapshot.remote(), timeout=2)
    except Exception:  # noqa: BLE001 - progress is best effort
        return {}
    running = {f"{job.item.image_id}/{v}" for job in active for v, ref in job.train.items() if ref not in job.results}
    return {k: v for k, v in posted.items() if k in running}
