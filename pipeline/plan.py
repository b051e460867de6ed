"""The job's plan: its checked options, where every output goes, and which images are left to do.

    check_options(samples=20, scale_h=1.0, scale_v=1.0, tag="", sample_batch=16)
    plan, notes = make_plan("/abs/results", preset("quick"), samples=20, metrics=("swd",))
    triage = sort_out([identify(url) for url in urls], previous_results(runs, plan))

Nothing here starts Ray or MLflow: a job whose images are all done stops after `sort_out`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import pandas as pd

from singan_core.config import Config

from .cluster import TaskResources
from .dataset import ImageItem
from .tasks import FAULT_ENV, HIGHRES_PARTS

PERMANENT_ERRORS = ("ImageError",)  # bad input: the same bytes fail the same way, a re-run skips them
OUTPUT_FOLDERS = ("models", "samples", "plots", "mlartifacts")  # never read back as input images
_TAG_RE = re.compile(r"^[A-Za-z0-9_.-]*$")


# ---------------------------------------------------------------------------- where outputs go
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


def absolute(url: str) -> str:
    """Local paths made absolute (Ray workers and MLflow do not share the driver's working folder)."""
    url = url.rstrip("/")
    return os.path.abspath(os.path.expanduser(url)) if "://" not in url else url


# ---------------------------------------------------------------------------- the plan
@dataclass(frozen=True)
class Plan:
    """Everything the driver needs to submit an image's tasks and name its rows."""

    config: Config
    layout: Layout
    tag: str = ""  # the variant tag ('' when none)
    highres: bool = False
    samples: int = 50
    sample_batch: int = 16
    scale_h: float = 1.0
    scale_v: float = 1.0
    metrics: tuple[str, ...] = ()
    inception_weights: str | None = None
    resources: TaskResources = field(default_factory=lambda: TaskResources(1, 0.0))
    fault_exit_after_scale: int | None = None

    @property
    def config_hash(self) -> str:
        return self.config.hash()

    def group(self, image_id: str) -> str:
        """The folder name of an image's outputs under models/, samples/ and plots/."""
        return self.layout.group(image_id, self.config_hash, self.tag)

    def group_keys(self, image_id: str) -> list[tuple[str, str, str, str]]:
        """The Parquet group keys (image_id, config_hash, variant_tag, variant) of every variant of an image."""
        return [(image_id, self.config_hash, self.tag, v) for v in self.variants]

    @property
    def train_variants(self) -> tuple[str, ...]:
        return HIGHRES_PARTS if self.highres else ("full",)

    @property
    def sample_variant(self) -> str:
        return "stitched" if self.highres else "full"

    @property
    def variants(self) -> tuple[str, ...]:
        return (*HIGHRES_PARTS, "stitched") if self.highres else ("full",)


def make_plan(
    out: str,
    config: Config,
    *,
    highres: bool = False,
    samples: int = 50,
    sample_batch: int = 16,
    scale_h: float = 1.0,
    scale_v: float = 1.0,
    metrics: Sequence[str] | None = None,
    inception_weights: str | None = None,
    num_cpus_per_task: int = 1,
    gpus_per_task: float = 0.25,
    variant_tag: str | None = None,
) -> tuple[Plan, list[str]]:
    """The plan of a job writing to the (absolute) folder `out`, and notes for the user.

    The options are those `check_options` accepted; the metrics are resolved here (which may fetch
    SIFID's weights), raising ValueError (one line) for unknown ones. The resources are the request as
    given; the driver checks them against the cluster (`cluster.plan_resources`) once it has joined it.
    """
    tag = variant_tag or ""
    metric_names, weights, notes = _resolve_metrics(metrics, inception_weights, samples)
    if highres:
        from singan_core.applications import highres as _highres  # noqa: F401 - fail now if it is missing
    plan = Plan(config, Layout(out), tag=tag, highres=highres, samples=samples, sample_batch=sample_batch,
                scale_h=scale_h, scale_v=scale_v, metrics=metric_names, inception_weights=weights,
                resources=TaskResources(num_cpus_per_task, gpus_per_task), fault_exit_after_scale=_fault_switch())
    return plan, notes


def check_options(*, samples: int, scale_h: float, scale_v: float, tag: str, sample_batch: int) -> None:
    """Raise ValueError (one line) for options no job can run with."""
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


# ---------------------------------------------------------------------------- what is left to do
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


@dataclass(frozen=True)
class Triage:
    """The job's images sorted out before any task starts."""

    todo: list[ImageItem]
    skipped: int
    previously_failed: int  # skipped because an earlier run found the same bytes to be bad input
    image_ids: list[str]  # every image of the job, skipped ones included, in order
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
