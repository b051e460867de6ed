"""Augmented datasets: the manifest of the generated samples, and a torch Dataset that reads it.

The manifest (`manifest.parquet` next to the samples) has one row per PNG file:
source_uri, image_id, sample_index, sample_path (relative to the dataset folder), sample_uri
(absolute local path or URL), seed, height, width, and (to redraw a sample from its model)
batch_size, index_in_batch, scale_h, scale_v. Reading it needs only pandas/pyarrow, so any
training data loader can use it; `SampleDataset` is a ready one for torch.
"""

from __future__ import annotations

import posixpath

import fsspec
import pandas as pd
import torch
from fsspec.implementations.local import LocalFileSystem
from torch.utils.data import Dataset

from singan_core.images import load_image

from .results import write_parquet

MANIFEST_NAME = "manifest.parquet"
MANIFEST_COLUMNS = ["source_uri", "image_id", "sample_index", "sample_path", "sample_uri", "seed", "height", "width"]
# kept when the samples table has them: model.sample(batch_size, seed=seed, ...)[index_in_batch] redraws a sample
REPRODUCE_COLUMNS = ["batch_size", "index_in_batch", "scale_h", "scale_v"]
OK_STATUSES = ("ok", "skipped")


def relative_path(uri: str, base: str) -> str:
    """`uri` relative to the folder `base` when it lies below it (same filesystem), else `uri` itself."""
    fs_u, path_u = fsspec.core.url_to_fs(uri)
    fs_b, path_b = fsspec.core.url_to_fs(base)
    if type(fs_u) is not type(fs_b):
        return uri
    rel = posixpath.relpath(path_u, path_b.rstrip("/") or "/")
    return uri if rel == ".." or rel.startswith("../") else rel


def absolute_uri(uri: str) -> str:
    """Local paths made absolute (a data loader may run elsewhere); URLs are kept as they are."""
    fs, path = fsspec.core.url_to_fs(uri)
    return path if isinstance(fs, LocalFileSystem) else uri


def build_manifest(samples: pd.DataFrame, runs: pd.DataFrame, out_url: str) -> pd.DataFrame:
    """Join the samples with their source images; only samples of a successful run (the image's row of
    the samples' variant: "full", or "stitched" in High-Res mode) are kept."""
    missing = {"image_id", "sample_index", "seed", "sample_uri", "height", "width"} - set(samples.columns)
    if missing:
        raise ValueError(f"samples table lacks column(s) {', '.join(sorted(missing))}")
    keys = ["image_id", "variant"] if "variant" in samples and "variant" in runs else ["image_id"]
    good = runs[runs["status"].isin(OK_STATUSES)].drop_duplicates(keys, keep="last")
    table = samples.drop(columns=[c for c in ("source_uri",) if c in samples])
    table = table.merge(good[[*keys, "source_uri"]], on=keys, how="inner")
    table = table.drop_duplicates(["image_id", "sample_index"], keep="last")
    table["sample_uri"] = [absolute_uri(uri) for uri in table["sample_uri"]]
    table["sample_path"] = [relative_path(uri, out_url) for uri in table["sample_uri"]]
    table = table.sort_values(["image_id", "sample_index"]).reset_index(drop=True)
    table = table.astype({"sample_index": "int64", "seed": "int64", "height": "int64", "width": "int64"})
    return table[MANIFEST_COLUMNS + [c for c in REPRODUCE_COLUMNS if c in table]]


def write_manifest(table: pd.DataFrame, out_url: str) -> str:
    """Write `<out_url>/manifest.parquet` atomically; return its URL."""
    url = f"{out_url.rstrip('/')}/{MANIFEST_NAME}"
    write_parquet(table, url)
    return url


def read_manifest(url: str) -> pd.DataFrame:
    """A manifest from its file URL or from the dataset folder that holds it."""
    if not url.endswith(".parquet"):
        url = f"{url.rstrip('/')}/{MANIFEST_NAME}"
    with fsspec.open(url, "rb") as f:
        return pd.read_parquet(f)


class SampleDataset(Dataset):
    """The samples of a manifest as (image [3, H, W] in [-1, 1], row index) pairs.

    Samples of different sizes (--scale-h/--scale-v, or sources of other shapes) need a
    `transform` that brings them to one size before they are batched by a DataLoader.
    """

    def __init__(self, manifest_url: str, transform=None) -> None:
        self.table = read_manifest(manifest_url)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.table)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        x = load_image(self.table["sample_uri"].iloc[index])[0]
        return (self.transform(x) if self.transform else x), index
