"""What the driver shows: a live progress line while the job runs, and the report at the end (a summary
table, the counts, where everything is)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

import pandas as pd
from tqdm.auto import tqdm

from . import results as rs

if TYPE_CHECKING:
    from .run import RunSummary


@dataclass(frozen=True)
class Counts:
    ok: int = 0
    failed: int = 0
    skipped: int = 0
    running: int = 0

    @property
    def finished(self) -> int:
        return self.ok + self.failed + self.skipped


def running_text(scales: Mapping[str, tuple[int, int]], names: Mapping[str, str], limit: int = 4) -> str:
    """'coffee.png full 3/5, cat.jpg q1 1/4 +2' from {image_id/variant: (scales done, scales)}."""
    parts = []
    for key, (done, total) in list(scales.items())[:limit]:
        image_id, _, variant = key.partition("/")
        parts.append(f"{names.get(image_id, image_id[:8])} {variant} {done}/{total}")
    more = len(scales) - limit
    return ", ".join(parts) + (f" +{more}" if more > 0 else "")


class LiveProgress:
    """A tqdm bar over the images (ETA from tqdm) with done / failed / skipped / running counts and
    the current scale of the running trainings. Disabled: does nothing."""

    def __init__(self, total: int, enabled: bool = True) -> None:
        self.bar = tqdm(total=total, unit="image", disable=not enabled, dynamic_ncols=True, file=sys.stderr,
                        desc="images")
        self.last = ""
        self.last_time = 0.0

    def show(self, counts: Counts, running: str = "") -> None:
        """Redraw when something changed or every 10 s (a log gets one line per change, not one per poll)."""
        text = f"ok={counts.ok} failed={counts.failed} skipped={counts.skipped} running={counts.running} {running}"
        if text == self.last and counts.finished == self.bar.n and time.monotonic() - self.last_time < 10:
            return
        self.last, self.last_time = text, time.monotonic()
        self.bar.n = counts.finished
        self.bar.set_postfix_str(text.strip(), refresh=False)
        self.bar.refresh()

    def close(self) -> None:
        self.bar.close()


# ---------------------------------------------------------------------------- the summary
def _count(value: object) -> str:
    return "-" if pd.isna(value) else str(int(value))  # type: ignore[arg-type]


def summary_table(runs: pd.DataFrame, metrics_summary: pd.DataFrame | None = None, width: int = 40) -> str:
    """One line per image and variant: name, id, status, scales, training seconds, samples, metrics, error."""
    if runs.empty:
        return "(no images)"
    table = pd.DataFrame({
        "image": runs["source_uri"].map(lambda u: os.path.basename(str(u))),
        "id": runs["image_id"].str[:8],
        "variant": runs["variant"],
        "status": runs["status"],
        "scales": runs["num_scales"].map(_count),
        "train_s": runs["total_seconds"].round(1),
        "samples": runs["num_samples"].map(_count),
    })
    if metrics_summary is not None and not metrics_summary.empty:
        means = metrics_summary.pivot_table(index=["image_id", "variant"], columns="metric", values="mean")
        for metric in means.columns:
            keys = list(zip(runs["image_id"], runs["variant"], strict=True))
            table[metric] = [round(float(means[metric].get(k, float("nan"))), 4) for k in keys]
    table["error"] = runs["error"].fillna("").map(lambda e: e if len(e) <= width else e[: width - 3] + "...")
    return table.to_string(index=False, na_rep="-")


# ---------------------------------------------------------------------------- the report
def say(text: str, progress: bool) -> None:
    """Print a line of the driver's, unless it is quiet."""
    if progress:
        print(text, flush=True)


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
