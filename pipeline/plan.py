"""The job's plan: its checked options, where every output goes, and which images are left to do.

    check_options(samples=20, scale_h=1.0, scale_v=1.0, tag="", sample_batch=16)
    check_storage("photos/", "/abs/results")           # outputs a job can write, before Ray or MLflow start
    plan, notes = make_plan("/abs/results", preset("quick"), samples=20, metrics=("swd",))
    triage = sort_out([identify(url) for url in urls], previous_results(runs, plan))

Nothing here starts Ray or MLflow: a job whose images are all done stops after `sort_out`.
"""

from __future__ import annotations

import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

import fsspec
import pandas as pd
from fsspec.implementations.local import LocalFileSystem

from singan_core.config import Config

from .cluster import TaskResources
from .dataset import ImageItem
from .tasks import FAULT_ENV, HIGHRES_PARTS

PERMANENT_ERRORS = ("ImageError",)  # bad input: the same bytes fail the same way, a re-run skips them
OUTPUT_FOLDERS = ("models", "samples", "plots", "mlartifacts")  # never read back as input images
OUTPUT_FILES = ("runs.parquet", "samples.parquet", "metrics.parquet", "metrics_summary.parquet", "skipped.parquet",
                "mlflow.db", "comparison.parquet", "manifest.parquet")  # nor listed as files not taken
PROCESS_LOCAL_PROTOCOLS = ("memory",)  # each Ray worker would write into a filesystem of its own
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


def job_outputs(out: str) -> list[str]:
    """The job's own folders and files under `out`: never taken as input images, nor listed as not taken."""
    return [f"{out}/{name}" for name in (*OUTPUT_FOLDERS, *OUTPUT_FILES)]


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
    pack: int | None = None  # at most this many images per training task (None: the default, packs.py)

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
    gpus_per_task: float | None = None,
    variant_tag: str | None = None,
    pack: int | None = None,
) -> tuple[Plan, list[str]]:
    """The plan of a job writing to the (absolute) folder `out`, and notes for the user.

    The options are those `check_options` accepted; the metrics are resolved here (which may fetch
    SIFID's weights), raising ValueError (one line) for unknown ones. The resources are the request as
    given (None GPUs: the default); the driver checks them against the cluster (`cluster.plan_resources`)
    once it has joined it.
    """
    tag = variant_tag or ""
    metric_names, weights, notes = _resolve_metrics(metrics, inception_weights, samples)
    if highres:
        from singan_core.applications import highres as _highres  # noqa: F401 - fail now if it is missing
    plan = Plan(config, Layout(out), tag=tag, highres=highres, samples=samples, sample_batch=sample_batch,
                scale_h=scale_h, scale_v=scale_v, metrics=metric_names, inception_weights=weights,
                resources=TaskResources(num_cpus_per_task, gpus_per_task or 0.0), pack=pack,
                fault_exit_after_scale=_fault_switch())
    return plan, notes


def check_options(*, samples: int, scale_h: float, scale_v: float, tag: str, sample_batch: int,
                  pack: int | None = None, resource_timeout: float = 1.0) -> None:
    """Raise ValueError (one line) for options no job can run with."""
    if pack is not None and pack < 1:
        raise ValueError(f"--pack must be at least 1, got {pack}")
    if resource_timeout <= 0:
        raise ValueError(f"--resource-timeout must be positive, got {resource_timeout:g}")
    if samples < 0:
        raise ValueError(f"--samples must not be negative, got {samples}")
    if scale_h <= 0 or scale_v <= 0:
        raise ValueError("--scale-h and --scale-v must be positive")
    if not _TAG_RE.match(tag):
        raise ValueError(f"variant tag {tag!r} may hold only letters, digits, '.', '_' and '-'")
    if sample_batch < 1:
        raise ValueError("sample_batch must be at least 1")


def check_storage(input_url: str, out: str) -> None:
    """Raise ValueError (one line) for an input or output a Ray job cannot use, before anything starts:
    a filesystem local to one process (memory://), an --out that is a file, or one that cannot be written."""
    for name, url in (("INPUT", input_url), ("--out", out)):
        fs = fsspec.core.url_to_fs(url)[0]
        protocols = (fs.protocol,) if isinstance(fs.protocol, str) else fs.protocol
        if set(protocols) & set(PROCESS_LOCAL_PROTOCOLS):
            raise ValueError(f"{name} {url}: a {protocols[0]}:// filesystem lives in one process, so what Ray's "
                             "workers write there is lost; use a local folder or shared storage")
    fs, path = fsspec.core.url_to_fs(out)
    if not isinstance(fs, LocalFileSystem):
        return  # object stores: the output lock, written first, shows whether the job may write there
    existing = path
    while not os.path.exists(existing) and os.path.dirname(existing) != existing:
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        where = "" if existing == path else f" ({existing} is a file)"
        raise ValueError(f"--out {out} is a file, not a folder{where}")
    if not os.access(existing, os.W_OK | os.X_OK):
        raise ValueError(f"--out {out} is not writable ({existing}: permission denied)")


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
        return tuple(m for m in names if m != "sifid"), None, [sifid_note(e, inception_weights)]
    # An http(s) source is passed on as is, so a worker on another node can fetch it into its own cache.
    return names, inception_weights if inception_weights and "://" in inception_weights else location, []


def sifid_note(error: Exception, source: str | None) -> str:
    """The note of a job without SIFID: short, with the flag that fixes it; in full when the user named weights
    that did not work (--inception-weights or the environment variable)."""
    from singan_core.metrics import WEIGHTS_ENV, WEIGHTS_FILE

    if source or os.environ.get(WEIGHTS_ENV, "").strip():
        return f"SIFID skipped: {error}"
    return (f"SIFID skipped: no Inception-v3 weights ({WEIGHTS_FILE}); give them with --inception-weights "
            "PATH_OR_URL, or leave SIFID out with --metrics swd,patch_fd,diversity")


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
    not_taken: list[dict[str, str | None]] = field(default_factory=list)  # rows of skipped.parquet


def sort_out(items: Sequence[ImageItem], previous: dict[str, str], others: Sequence[str] = ()) -> Triage:
    """Images to do; images done before (same bytes, config and tag) or repeated in the dataset are skipped.

    `others`: the files under the input not taken for their extension. They and the repeats (trained once,
    under the first file's name) become the rows of skipped.parquet, with the reason."""
    todo: list[ImageItem] = []
    first: dict[str, str] = {}  # image_id -> the file it is trained under
    not_taken: list[dict[str, str | None]] = [
        {"source_uri": url, "reason": "extension", "image_id": None, "same_as": None,
         "detail": f"{os.path.splitext(url)[1] or 'no extension'} is not one of the image types"} for url in others]
    skipped = previously_failed = 0
    for item in items:
        if item.image_id in first:
            not_taken.append({"source_uri": item.url, "reason": "duplicate", "image_id": item.image_id,
                              "same_as": first[item.image_id], "detail": "same bytes as another file of the input"})
            skipped += 1
            continue
        first[item.image_id] = item.url
        if item.image_id in previous:
            skipped += 1
            previously_failed += previous[item.image_id] == "failed"
        else:
            todo.append(item)
    return Triage(todo, skipped, previously_failed, list(first), not_taken_notes(not_taken), not_taken)


def not_taken_notes(rows: Sequence[dict[str, str | None]], limit: int = 5) -> list[str]:
    """One note per file not taken (at most `limit`, then how many more)."""
    notes = []
    for row in rows[:limit]:
        why = f"same bytes as {row['same_as']}, trained once under that name" if row["reason"] == "duplicate" else (
            row["detail"])
        notes.append(f"{row['source_uri']}: not taken ({why})")
    if len(rows) > limit:
        notes.append(f"... and {len(rows) - limit} more files not taken")
    return notes
