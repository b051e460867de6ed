"""Compare two trainings of the same images: time saved per image and in total, and metric deltas.

Pure pandas, so it is testable without Ray. The inputs are the Parquet tables `run_dataset` writes
for each variant: `runs.parquet` (one row per image) and `metrics.parquet` (one row per image,
sample and metric). Variant "a" is the reference, "b" the candidate: time saved = seconds_a -
seconds_b (positive when b is faster), metric delta = mean_b - mean_a.

A variant is given on the command line as a list of items: at most one preset name (default: the
job's base preset) and any number of `field=value` overrides applied on top of it, in order.
"""

from __future__ import annotations

import math
import posixpath
from collections.abc import Sequence
from dataclasses import dataclass

import pandas as pd

from singan_core.config import PRESETS, Config, preset

TOTAL = "TOTAL"
OK_STATUSES = ("ok", "skipped")  # "skipped": trained by an earlier run of the same job, still a result
DEFAULT_A = ("epoch_decay=false",)
DEFAULT_B = ("epoch_decay=true",)
PRIMARY_RANK = {"stitched": 0, "full": 1}  # which row of an image stands for it in the comparison


# ---------------------------------------------------------------------------- variants
@dataclass(frozen=True)
class Variant:
    """One side of the comparison: its tag, its config and the items it was built from."""

    tag: str
    config: Config
    spec: tuple[str, ...]

    @property
    def label(self) -> str:
        return " ".join(self.spec) or "(base preset)"


def resolve_variant(tag: str, items: Sequence[str], base_preset: str) -> Variant:
    """Build a variant from `[preset] [field=value ...]`; without a preset name, `base_preset` is used."""
    presets = [item for item in items if "=" not in item]
    overrides = [item for item in items if "=" in item]
    if len(presets) > 1:
        raise ValueError(f"--{tag}: at most one preset name, got {', '.join(presets)}")
    if presets and presets[0] not in PRESETS:
        raise ValueError(f"--{tag}: {presets[0]!r} is neither a preset ({', '.join(PRESETS)}) nor field=value")
    config = preset(presets[0] if presets else base_preset).override(overrides)
    return Variant(tag, config, tuple(items))


def resolve_pair(a: Sequence[str] | None, b: Sequence[str] | None, base_preset: str) -> tuple[Variant, Variant]:
    """The two variants; the default pair is epoch decay off (a) against on (b)."""
    va = resolve_variant("a", a or DEFAULT_A, base_preset)
    vb = resolve_variant("b", b or DEFAULT_B, base_preset)
    if va.config.hash() == vb.config.hash():
        raise ValueError(f"--a and --b give the same config ({va.label} vs {vb.label}); nothing to compare")
    return va, vb


# ---------------------------------------------------------------------------- the table
def _total_iterations(value: object) -> float:
    """Sum of an `iterations_per_scale` cell (list / array), NaN when missing."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return math.nan
    return float(sum(value))  # type: ignore[arg-type]


def primary_runs(runs: pd.DataFrame) -> pd.DataFrame:
    """One row per image: the result the user gets (High-Res: "stitched", whose seconds are the sum of
    its five pyramids; otherwise "full"); rows without a `variant` column: the image's last row."""
    if "variant" not in runs or runs.empty:
        return runs.drop_duplicates("image_id", keep="last")
    rank = runs["variant"].map(PRIMARY_RANK).fillna(len(PRIMARY_RANK))
    ordered = runs.assign(_rank=rank).sort_values("_rank", kind="stable")
    return ordered.drop_duplicates("image_id", keep="first").drop(columns="_rank")


def _per_image(runs: pd.DataFrame, tag: str) -> pd.DataFrame:
    """image_id -> status, seconds, iterations of one variant."""
    runs = primary_runs(runs).set_index("image_id")
    out = pd.DataFrame(index=runs.index)
    out[f"status_{tag}"] = runs["status"]
    out[f"seconds_{tag}"] = pd.to_numeric(runs["total_seconds"], errors="coerce")
    if "iterations_per_scale" in runs:
        out[f"iterations_{tag}"] = runs["iterations_per_scale"].map(_total_iterations)
    if "source_uri" in runs:
        out[f"source_uri_{tag}"] = runs["source_uri"]
    return out


def metric_means(metrics: pd.DataFrame | None, runs: pd.DataFrame | None = None) -> pd.DataFrame:
    """image_id x metric table of the mean value over an image's samples (NaN values ignored).

    With `runs`, only the metrics of each image's primary variant (see `primary_runs`) count.
    """
    if metrics is None or metrics.empty:
        return pd.DataFrame()
    if runs is not None and "variant" in metrics and "variant" in runs:
        keep = primary_runs(runs)[["image_id", "variant"]]
        metrics = metrics.merge(keep, on=["image_id", "variant"], how="inner")
    table = metrics.pivot_table(index="image_id", columns="metric", values="value", aggfunc="mean")
    table.columns = [str(c) for c in table.columns]
    return table


def _add_metrics(table: pd.DataFrame, means_a: pd.DataFrame, means_b: pd.DataFrame) -> list[str]:
    names = sorted(set(means_a.columns) | set(means_b.columns))
    for name in names:
        a = means_a[name] if name in means_a else pd.Series(dtype=float)
        b = means_b[name] if name in means_b else pd.Series(dtype=float)
        table[f"{name}_a"] = a.reindex(table.index)
        table[f"{name}_b"] = b.reindex(table.index)
        table[f"{name}_delta"] = table[f"{name}_b"] - table[f"{name}_a"]
    return names


def _total_row(table: pd.DataFrame, metric_names: list[str]) -> dict[str, object]:
    """Sums of the seconds over the images that succeeded in both variants, means of the metrics."""
    both = table[table["ok_both"]]
    row: dict[str, object] = {"image_id": TOTAL, "image": TOTAL, "source_uri": "", "status_a": "", "status_b": "",
                              "ok_both": True}
    row["images"] = len(both)
    for col in ("seconds_a", "seconds_b", "iterations_a", "iterations_b"):
        if col in both:
            row[col] = float(both[col].sum()) if len(both) else math.nan
    row["seconds_saved"] = row["seconds_a"] - row["seconds_b"]  # type: ignore[operator]
    row["percent_saved"] = _percent(row["seconds_saved"], row["seconds_a"])  # type: ignore[arg-type]
    for name in metric_names:
        for col in (f"{name}_a", f"{name}_b", f"{name}_delta"):
            row[col] = float(both[col].mean()) if len(both) else math.nan
    return row


def _first_present(a: pd.Series | None, b: pd.Series | None) -> pd.Series | str:
    if a is not None and b is not None:
        return a.combine_first(b)
    return a if a is not None else (b if b is not None else "")


def _percent(saved: float, reference: float) -> float:
    return 100.0 * saved / reference if reference and not math.isnan(reference) else math.nan


def compare_runs(
    runs_a: pd.DataFrame,
    runs_b: pd.DataFrame,
    metrics_a: pd.DataFrame | None = None,
    metrics_b: pd.DataFrame | None = None,
) -> pd.DataFrame:
    """One row per image (outer join on image_id) plus a TOTAL row.

    Columns: image_id, source_uri, status_a/b, ok_both, seconds_a/b, seconds_saved, percent_saved,
    iterations_a/b (when known), and for every metric m: m_a, m_b, m_delta (per-image sample means).
    The TOTAL row sums seconds and iterations over the images that succeeded in both variants and
    averages the per-image metric means; its `images` column counts those images.
    """
    for name, runs in (("a", runs_a), ("b", runs_b)):
        missing = {"image_id", "status", "total_seconds"} - set(runs.columns)
        if missing:
            raise ValueError(f"runs table of variant {name} lacks column(s) {', '.join(sorted(missing))}")
    table = _per_image(runs_a, "a").join(_per_image(runs_b, "b"), how="outer")
    uri_a, uri_b = (table.pop(c) if c in table else None for c in ("source_uri_a", "source_uri_b"))
    table["source_uri"] = _first_present(uri_a, uri_b)
    table["image"] = [posixpath.basename(str(u).rstrip("/")) if u else "" for u in table["source_uri"]]
    table["ok_both"] = table["status_a"].isin(OK_STATUSES) & table["status_b"].isin(OK_STATUSES)
    for tag in ("a", "b"):  # a failed run has no meaningful duration
        table.loc[~table[f"status_{tag}"].isin(OK_STATUSES), f"seconds_{tag}"] = math.nan
    table["seconds_saved"] = table["seconds_a"] - table["seconds_b"]
    table["percent_saved"] = 100.0 * table["seconds_saved"] / table["seconds_a"]
    names = _add_metrics(table, metric_means(metrics_a, runs_a), metric_means(metrics_b, runs_b))
    table = table.sort_index().reset_index(names="image_id")
    table["images"] = 1
    total = pd.DataFrame([_total_row(table, names)])
    table = pd.concat([table, total], ignore_index=True)
    return table[_column_order(table, names)]


def _column_order(table: pd.DataFrame, metric_names: list[str]) -> list[str]:
    first = ["image_id", "image", "source_uri", "status_a", "status_b", "ok_both", "images", "seconds_a", "seconds_b",
             "seconds_saved", "percent_saved", "iterations_a", "iterations_b"]
    metric_cols = [f"{n}_{s}" for n in metric_names for s in ("a", "b", "delta")]
    return [c for c in first if c in table] + metric_cols


def total_summary(table: pd.DataFrame) -> dict[str, float]:
    """The TOTAL row's numbers, as flat MLflow metric names (NaN values left out)."""
    row = table[table["image_id"] == TOTAL].iloc[0]
    out = {}
    for col, value in row.items():
        if col in ("images",) or col.startswith(("seconds", "percent", "iterations")) or col.endswith("_delta"):
            if isinstance(value, (int, float)) and not math.isnan(float(value)):
                out[f"total_{col}"] = float(value)
    return out


TEXT_COLUMNS = ("image_id", "image", "source_uri", "status_a", "status_b", "ok_both", "images")


def format_table(table: pd.DataFrame) -> str:
    """The table as aligned text (file names instead of ids and URIs): seconds and percents to 0.1,
    iterations whole, metrics to 4 decimals."""
    shown = table.drop(columns=[c for c in ("image_id", "source_uri", "ok_both") if c in table])
    formats = {}
    for col in shown.columns:
        if col.startswith(("seconds", "percent")):
            formats[col] = _fixed(1)
        elif col.startswith("iterations"):
            formats[col] = _fixed(0)
        elif col not in TEXT_COLUMNS:
            formats[col] = _fixed(4)
    return shown.to_string(index=False, formatters=formats, na_rep="-")


def _fixed(decimals: int):
    def fmt(value: object) -> str:
        try:
            number = float(value)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            return "-"
        return "-" if math.isnan(number) else f"{number:.{decimals}f}"

    return fmt
