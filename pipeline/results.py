"""The job's results as Parquet tables: their schemas, reading them, and atomic per-image replacement.

Four tables live under the output folder (documented column by column in docs/pipeline.md):

- runs.parquet: one row per image and variant (training or stitching): sizes, config, timings, status.
- samples.parquet: one row per generated sample.
- metrics.parquet: one row per sample and metric (sample_index null for set metrics such as diversity).
- metrics_summary.parquet: one row per image, variant and metric: mean, std and count over the samples.
- skipped.parquet: the files under the input that got no row of their own, and why (SKIPPED).

Every table shares the group key (image_id, config_hash, variant_tag, variant). Writing rows of a
group first removes that group's old rows, so re-running a job replaces an image's results instead
of duplicating them. Only the driver writes; each write is a whole new file put in place atomically.
"""

from __future__ import annotations

import io
from collections.abc import Iterable, Sequence
from datetime import datetime, timezone
from typing import Any

import fsspec
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from singan_core.images import atomic_write

GROUP_KEY = ("image_id", "config_hash", "variant_tag", "variant")
_TIME = pa.timestamp("us", tz="UTC")

RUNS = pa.schema(
    [
        ("image_id", pa.string()),  # sha256 of the file's bytes (16 hex characters)
        ("source_uri", pa.string()),
        ("variant", pa.string()),  # full | base | q0 | q1 | q2 | q3 | stitched
        ("variant_tag", pa.string()),  # free label of the job ('' when none)
        ("config_hash", pa.string()),  # hash of the job's resolved config
        ("config_json", pa.string()),  # the config this variant was trained with
        ("epoch_decay", pa.bool_()),
        ("adv_loss", pa.string()),
        ("padding", pa.string()),
        ("orig_height", pa.int32()),
        ("orig_width", pa.int32()),
        ("train_height", pa.int32()),  # x_0, the finest training scale
        ("train_width", pa.int32()),
        ("num_scales", pa.int32()),
        ("scale_factor", pa.float64()),
        ("iterations_per_scale", pa.list_(pa.int32())),  # coarsest first
        ("seconds_per_scale", pa.list_(pa.float64())),  # coarsest first
        ("total_iterations", pa.int64()),
        ("total_seconds", pa.float64()),  # training seconds; in a pack of K: pack_seconds / K (stitched: parts summed)
        ("pack_id", pa.string()),  # the training task's pack (the same for the images trained together)
        ("pack_size", pa.int32()),  # K: pyramids trained together in it (1: alone)
        ("pack_seconds", pa.float64()),  # the pack's training wall time
        ("resumed_from_scale", pa.int32()),  # scales found finished in the checkpoint at start
        ("final_loss_d", pa.float64()),
        ("final_loss_adv", pa.float64()),
        ("final_loss_rec", pa.float64()),
        ("device", pa.string()),
        ("host", pa.string()),
        ("status", pa.string()),  # ok | failed
        ("error", pa.string()),
        ("error_type", pa.string()),  # ImageError = bad input (not retried by a re-run)
        ("note", pa.string()),  # what the task did about a fault, e.g. a damaged checkpoint set aside
        ("model_uri", pa.string()),
        ("mlflow_run_id", pa.string()),
        ("num_samples", pa.int32()),
        ("start_time", _TIME),
        ("end_time", _TIME),
    ]
)

SAMPLES = pa.schema(
    [
        ("image_id", pa.string()),
        ("config_hash", pa.string()),
        ("variant_tag", pa.string()),
        ("variant", pa.string()),
        ("sample_index", pa.int32()),
        # reproduce: model.sample(batch_size, seed=seed, scale_h=.., scale_v=.., batch_size=batch_size)[index_in_batch]
        ("seed", pa.int64()),
        ("batch_size", pa.int32()),
        ("index_in_batch", pa.int32()),
        ("scale_h", pa.float64()),
        ("scale_v", pa.float64()),
        ("sample_uri", pa.string()),
        ("height", pa.int32()),
        ("width", pa.int32()),
    ]
)

METRICS = pa.schema(
    [
        ("image_id", pa.string()),
        ("config_hash", pa.string()),
        ("variant_tag", pa.string()),
        ("variant", pa.string()),
        ("sample_index", pa.int32()),  # null: a metric of the whole sample set (diversity)
        ("metric", pa.string()),
        ("value", pa.float64()),
    ]
)

SUMMARY = pa.schema(
    [
        ("image_id", pa.string()),
        ("config_hash", pa.string()),
        ("variant_tag", pa.string()),
        ("variant", pa.string()),
        ("metric", pa.string()),
        ("mean", pa.float64()),
        ("std", pa.float64()),  # population std over the samples (0 for a set metric)
        ("count", pa.int32()),
    ]
)

# The files under the latest job's input that got no row of their own, and why (rewritten by every job).
SKIPPED = pa.schema(
    [
        ("source_uri", pa.string()),
        ("reason", pa.string()),  # extension (not an image type) | duplicate (same bytes as `same_as`)
        ("detail", pa.string()),
        ("image_id", pa.string()),  # duplicate: the id it shares (its rows are those of `same_as`)
        ("same_as", pa.string()),
        ("time", _TIME),
    ]
)

TABLES: dict[str, pa.Schema] = {
    "runs": RUNS,
    "samples": SAMPLES,
    "metrics": METRICS,
    "metrics_summary": SUMMARY,
}


_NULLABLE_INTS = {pa.int32(): pd.Int32Dtype(), pa.int64(): pd.Int64Dtype()}  # keep ints ints despite nulls


def table_url(out: str, name: str) -> str:
    return f"{out.rstrip('/')}/{name}.parquet"


def empty_frame(schema: pa.Schema) -> pd.DataFrame:
    return schema.empty_table().to_pandas()


def to_table(rows: Sequence[dict[str, Any]] | pd.DataFrame, schema: pa.Schema) -> pa.Table:
    """Rows (dicts or a DataFrame) as a table of exactly `schema`; missing columns become nulls."""
    frame = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(list(rows))
    columns = {}
    for field in schema:
        values = frame[field.name] if field.name in frame else [None] * len(frame)
        columns[field.name] = pa.array(list(_clean(values)), type=field.type, from_pandas=True)
    return pa.table(columns, schema=schema)


def _clean(values: Any) -> list[Any]:
    """NaN/NaT to None and numpy arrays to lists, so pyarrow converts every cell the same way."""
    out = []
    for v in values:
        if hasattr(v, "tolist") and not isinstance(v, (str, bytes)):
            v = v.tolist()
        if v is pd.NaT or v is pd.NA or (isinstance(v, float) and v != v):
            v = None
        out.append(v)
    return out


def read_table(url: str, schema: pa.Schema) -> pd.DataFrame:
    """The table at `url` as a DataFrame with `schema`'s columns (empty when the file does not exist)."""
    fs, path = fsspec.core.url_to_fs(url)
    if not fs.exists(path):
        return empty_frame(schema)
    with fs.open(path, "rb") as f:
        table = pq.read_table(f)
    return to_table(table.to_pandas(), schema).to_pandas(types_mapper=_NULLABLE_INTS.get)


def write_table(url: str, frame: pd.DataFrame, schema: pa.Schema) -> None:
    """Write `frame` as a table of exactly `schema` to `url`, atomically."""
    write_parquet(to_table(frame, schema), url)


def write_parquet(data: pd.DataFrame | pa.Table, url: str) -> None:
    """Write a DataFrame (without its index) or an Arrow table as Parquet to `url`, atomically: the one
    Parquet writer of the project."""
    table = data if isinstance(data, pa.Table) else pa.Table.from_pandas(data, preserve_index=False)
    buf = io.BytesIO()
    pq.write_table(table, buf)
    with atomic_write(url) as f:
        f.write(buf.getvalue())


def replace_groups(
    url: str, rows: Sequence[dict[str, Any]], schema: pa.Schema, groups: Iterable[tuple[str, str, str, str]] = ()
) -> int:
    """Write `rows` into the table at `url`, first dropping every old row of their groups and of `groups`.

    A group is (image_id, config_hash, variant_tag, variant); `groups` names groups to clear even when
    they get no new rows (a re-run that now fails has no samples). Returns the table's new row count.
    """
    new = to_table(rows, schema).to_pandas()
    keys = list(GROUP_KEY)
    drop = pd.concat([new[keys], pd.DataFrame(list(groups), columns=keys)], ignore_index=True).drop_duplicates()
    old = read_table(url, schema)
    if drop.empty:
        return len(old)
    if len(old):
        marked = old[keys].merge(drop, on=keys, how="left", indicator=True)
        old = old[(marked["_merge"] == "left_only").to_numpy()]
    frame = pd.concat([old, new], ignore_index=True) if len(old) else new
    write_table(url, frame, schema)
    return len(frame)


def write_skipped(url: str, rows: Sequence[dict[str, Any]]) -> None:
    """Write skipped.parquet: the files the latest job on this output did not take (an old table with
    rows gives way to an empty one; none is created when there is nothing to list)."""
    fs, path = fsspec.core.url_to_fs(url)
    if rows or fs.exists(path):
        now = datetime.now(timezone.utc)
        write_table(url, pd.DataFrame([{"time": now, **row} for row in rows]), SKIPPED)


def summarize_metrics(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per group and metric: mean, population std and count of the values (NaN values left out)."""
    if not rows:
        return []
    frame = pd.DataFrame(list(rows)).dropna(subset=["value"])
    if frame.empty:
        return []
    keys = [*GROUP_KEY, "metric"]
    stats = frame.groupby(keys, sort=True)["value"].agg(mean="mean", std=lambda v: float(v.std(ddof=0)),
                                                       count="count")
    return stats.reset_index().to_dict("records")
