"""The driver's loop: keep a window of images in flight on Ray, collect each finished one, write now and then.

    outcome = drive(triage, plan, units, tracker=tracker, parent_id=run_id, board=board, window=6, progress=True)

The images go in as training units (packs.py: the images of one training task). Each finished image is
logged to MLflow (one nested run per variant) and its rows are queued; the Parquet tables are rewritten
every FLUSH_SECONDS and at the end, Ctrl-C included. When training tasks wait for longer than
`resource_timeout` seconds with none of them running and no task finishing (the cluster does not grant
what they ask for), the job stops with ResourceTimeoutError.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

import ray

from .packs import Unit
from .plan import Plan, Triage
from .progress import Counts, LiveProgress, running_text, say
from .rows import Pending, collect, flush, unreadable
from .submit import ImageJob, fetch, submit_pack
from .tracking import Tracker, log_image

FLUSH_SECONDS = 10.0  # the Parquet tables are rewritten at most this often while the job runs
RESOURCE_TIMEOUT_S = 600.0  # --resource-timeout: a new cloud GPU node takes minutes (boot, image pull, setup)


@dataclass(frozen=True)
class Outcome:
    """What the loop did: the images' counts, whether Ctrl-C stopped it, the notes of finished images."""

    counts: Counts
    interrupted: bool
    notes: list[str]


class ResourceTimeoutError(ValueError):
    """No training task was given its resources in time (one line for the user)."""


def drive(triage: Triage, plan: Plan, units: list[Unit], *, tracker: Tracker, parent_id: str, board: Any,
          window: int, progress: bool, resource_timeout: float = RESOURCE_TIMEOUT_S) -> Outcome:
    """The loop: keep up to `window` images in flight, collect finished ones, write now and then."""
    queue = list(reversed(units))
    names = {item.image_id: item.name for item in triage.todo}
    notes: list[str] = []
    counts = Counts(skipped=triage.skipped)
    in_flight: dict[Any, ImageJob] = {}  # ObjectRef -> its image
    active: list[ImageJob] = []
    pending, last_flush = Pending(), time.monotonic()
    view = LiveProgress(len(triage.todo) + triage.skipped, progress)
    interrupted = False
    waiting = Waiting(resource_timeout, plan)
    try:
        while queue or active:
            while queue and len(active) < window:
                unit = queue.pop()
                if unit.items[0].error:  # unreadable files are units of one
                    pending.add(log_image(tracker, parent_id, unreadable(unit.items[0], plan), plan))
                    counts = replace(counts, failed=counts.failed + 1)
                    continue
                for job in submit_pack(unit.items, plan, board, unit.quadrants):
                    active.append(job)
                    in_flight.update({ref: job for ref in job.refs()})
            counts = replace(counts, running=len(active))
            view.show(counts, running_text(_running_scales(board, active), names))
            if not in_flight:
                continue
            ready, _ = ray.wait(list(in_flight), num_returns=len(in_flight), timeout=0.5)
            try:
                waiting.check(_started(board), active, progressed=bool(ready))
            except ResourceTimeoutError:
                for ref in in_flight:
                    ray.cancel(ref, force=False)
                raise
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


class Waiting:
    """How long the training tasks in flight have waited with none of them running and no task finishing
    (a training waiting behind other images' sampling tasks is not stuck)."""

    def __init__(self, timeout: float, plan: Plan) -> None:
        self.timeout, self.plan = timeout, plan
        self.since: float | None = None

    def check(self, started: set[str] | None, active: list[ImageJob], progressed: bool) -> None:
        """Raise ResourceTimeoutError when trainings have waited `timeout` seconds with none running and no
        task finishing (`progressed`: some task finished just now)."""
        waiting = [key for job in active for key in job.training()]
        if progressed or started is None or not waiting or set(waiting) & started:
            self.since = None
            return
        self.since = self.since if self.since is not None else time.monotonic()
        if time.monotonic() - self.since > self.timeout:
            res = self.plan.resources
            raise ResourceTimeoutError(
                f"no training task was given its resources ({res.num_cpus} CPU + {res.num_gpus:g} GPU per task) "
                f"within --resource-timeout {self.timeout:g} s: no node can run it and none was added; see "
                "`ray status`, or ask for less (--gpus-per-task 0: the CPU)")


def dedupe(notes: list[str]) -> list[str]:
    return list(dict.fromkeys(notes))


def _started(board: Any) -> set[str] | None:
    """The trainings that have started (None: the board did not answer, so nothing is known)."""
    try:
        return ray.get(board.started.remote(), timeout=2)
    except Exception:  # noqa: BLE001 - best effort, like the progress
        return None


def _running_scales(board: Any, active: list[ImageJob]) -> dict[str, tuple[int, int]]:
    """Current scale of the trainings still running (from the progress board)."""
    try:
        posted = ray.get(board.snapshot.remote(), timeout=2)
    except Exception:  # noqa: BLE001 - progress is best effort
        return {}
    running = {key for job in active for key in job.training()}
    return {k: v for k, v in posted.items() if k in running}
