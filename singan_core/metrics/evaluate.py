"""All metrics of one real image against N samples, batched, as a plain report or a long-format DataFrame.

Metric names (also the `metric` column):
    sifid       SIFID at Inception layer 64 (the authors' script); `sifid_192` when sifid_layer=192
    swd         patch sliced Wasserstein distance (7x7 patches, Laplacian pyramid)
    patch_fd    patch Fréchet distance (11x11 patches, IMA206)
    diversity   the paper's diversity, one value for the whole set of samples

Long format, one row per number (`Evaluation.rows()`, `evaluate_frame`):
    metric  str     the name above
    sample  Int64   sample index 0..N-1 for per-sample values; <NA> for summaries and set-level metrics
    stat    str     "value" (one sample), "mean" / "std" (over the N samples, population std),
                    "set" (a set-level metric: diversity)
    value   float64
"""

from __future__ import annotations

import math
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from ..devices import resolve_device
from ._common import as_batch
from .diversity import diversity
from .patch import patch_fd, patch_swd, swd_levels
from .sifid import MissingWeightsError, load_inception, sifid

if TYPE_CHECKING:
    import pandas as pd

METRICS = ("sifid", "swd", "patch_fd", "diversity")
SET_METRICS = ("diversity",)
COLUMNS = ("metric", "sample", "stat", "value")


def metric_name(metric: str, sifid_layer: int = 64) -> str:
    """The reported name: `sifid` is SIFID at layer 64, `sifid_192` at layer 192; other names are unchanged."""
    return f"sifid_{sifid_layer}" if metric == "sifid" and sifid_layer != 64 else metric


def parse_metrics(metrics: str | Sequence[str] | None) -> tuple[str, ...]:
    """Validated metric names in request order, from "sifid,swd" or ["sifid", "swd"]; None, "" or "all": all."""
    if metrics is None:
        return METRICS
    items = metrics.split(",") if isinstance(metrics, str) else list(metrics)
    names = [m.strip().lower().replace("-", "_") for m in items if m.strip()]
    if not names or names == ["all"]:
        return METRICS
    unknown = [m for m in names if m not in METRICS]
    if unknown:
        raise ValueError(f"unknown metric {unknown[0]!r} (known: {', '.join(METRICS)})")
    return tuple(dict.fromkeys(names))


@dataclass
class Evaluation:
    """What `evaluate` returns: plain Python numbers, no pandas."""

    num_samples: int
    per_sample: dict[str, list[float]] = field(default_factory=dict)  # metric name -> N values
    per_set: dict[str, float] = field(default_factory=dict)  # metric name -> one value
    errors: dict[str, str] = field(default_factory=dict)  # metric name -> why it was not computed
    info: dict[str, Any] = field(default_factory=dict)  # layer, weights file, seed, device, seconds per metric

    def summary(self) -> dict[str, dict[str, float]]:
        """{metric: {"mean": ..., "std": ...}} over the samples (population std); set-level metrics as {"set": v}."""
        out: dict[str, dict[str, float]] = {}
        for name, values in self.per_sample.items():
            t = torch.tensor(values, dtype=torch.float64)
            out[name] = {"mean": float(t.mean()), "std": float(t.std(unbiased=False))}
        for name, value in self.per_set.items():
            out[name] = {"set": value}
        return out

    def rows(self) -> list[dict[str, Any]]:
        """The long-format rows (see the module docstring), per metric: the samples, then mean and std."""
        rows: list[dict[str, Any]] = []
        summary = self.summary()
        for name, values in self.per_sample.items():
            rows += [{"metric": name, "sample": i, "stat": "value", "value": v} for i, v in enumerate(values)]
            rows += [{"metric": name, "sample": None, "stat": s, "value": summary[name][s]} for s in ("mean", "std")]
        for name, value in self.per_set.items():
            rows.append({"metric": name, "sample": None, "stat": "set", "value": value})
        return rows

    def to_frame(self) -> pd.DataFrame:
        """The rows as a pandas DataFrame (pandas is imported here only)."""
        import pandas as pd

        frame = pd.DataFrame(self.rows(), columns=list(COLUMNS))
        return frame.astype({"metric": "string", "sample": "Int64", "stat": "string", "value": "float64"})


def _groups(samples: torch.Tensor | Sequence[torch.Tensor]) -> tuple[int, list[tuple[list[int], torch.Tensor]]]:
    """Samples as (indices, same-size batch) groups, so that a folder of mixed sizes is still batched."""
    if isinstance(samples, torch.Tensor):
        batch = as_batch(samples, "samples")
        return batch.shape[0], [(list(range(batch.shape[0])), batch)]
    images = [as_batch(s, f"samples[{i}]") for i, s in enumerate(samples)]
    if not images:
        raise ValueError("samples is empty")
    by_shape: dict[tuple[int, int], list[int]] = {}
    flat: list[torch.Tensor] = []
    for img in images:
        for one in img:
            by_shape.setdefault(tuple(one.shape[-2:]), []).append(len(flat))
            flat.append(one)
    return len(flat), [(idx, torch.stack([flat[i] for i in idx])) for idx in by_shape.values()]


def evaluate(
    real: torch.Tensor,
    samples: torch.Tensor | Sequence[torch.Tensor],
    metrics: str | Sequence[str] | None = None,
    *,
    sifid_layer: int = 64,
    inception_weights: str | None = None,
    download: bool = True,
    device: str | torch.device | None = None,
    seed: int = 0,
    batch_size: int | None = None,
    strict: bool = True,
) -> Evaluation:
    """Compare the samples with the real image by every metric asked for (default all four).

    real: [1, 3, H, W] in [-1, 1]. samples: [N, 3, H', W'] in [-1, 1], or a list of such tensors (sizes may
    differ; diversity then cannot be computed). Runs on `device` (default: CUDA when present), in chunks of
    `batch_size` samples (default: sized from a memory budget); the numbers do not depend on the chunking.
    `seed` fixes the SWD projections. When SIFID is asked for and its weights cannot be had, `strict` raises
    MissingWeightsError before computing anything; otherwise the message goes to `errors` and the rest is done.
    """
    names = parse_metrics(metrics)
    dev = resolve_device(device)
    real = as_batch(real, "real")
    if real.shape[0] != 1:
        raise ValueError(f"real must be one image, got a batch of {real.shape[0]}")
    real = real.to(dev)
    n, groups = _groups(samples)
    result = Evaluation(num_samples=n, info={"seed": seed, "device": str(dev), "seconds": {}})

    model = None
    if "sifid" in names:
        result.info["sifid_layer"] = sifid_layer
        try:
            t0 = time.perf_counter()
            model = load_inception(inception_weights, sifid_layer, dev, download=download)
            result.info["inception_weights"] = model.source
            result.info["seconds"]["inception_load"] = time.perf_counter() - t0
        except MissingWeightsError as e:
            if strict:
                raise
            result.errors[metric_name("sifid", sifid_layer)] = str(e)
    if "swd" in names:
        result.info["swd_levels"] = swd_levels(*real.shape[-2:])

    per_sample = {
        "sifid": lambda x: sifid(real, x, model=model, batch_size=batch_size),
        "swd": lambda x: patch_swd(real, x, seed=seed, batch_size=batch_size),
        "patch_fd": lambda x: patch_fd(real, x, batch_size=batch_size),
    }
    for metric in names:
        if metric in SET_METRICS or (metric == "sifid" and model is None):
            continue
        t0 = time.perf_counter()
        values = [math.nan] * n
        for idx, batch in groups:
            for i, v in zip(idx, per_sample[metric](batch.to(dev)).tolist(), strict=True):
                values[i] = v
        name = metric_name(metric, sifid_layer)
        result.per_sample[name] = values
        result.info["seconds"][name] = time.perf_counter() - t0

    if "diversity" in names:
        t0 = time.perf_counter()
        if len(groups) > 1:
            result.errors["diversity"] = "diversity needs samples of one size (per-pixel std over the samples)"
            result.per_set["diversity"] = math.nan
        elif n < 2:
            result.errors["diversity"] = "diversity needs at least 2 samples"
            result.per_set["diversity"] = math.nan
        else:
            result.per_set["diversity"] = diversity(groups[0][1].to(dev), real)
        result.info["seconds"]["diversity"] = time.perf_counter() - t0
    return result


def evaluate_frame(
    real: torch.Tensor,
    samples: torch.Tensor | Sequence[torch.Tensor],
    metrics: str | Sequence[str] | None = None,
    **kwargs: Any,
) -> pd.DataFrame:
    """`evaluate(real, samples, metrics, **kwargs).to_frame()`: the long-format DataFrame (pandas imported lazily)."""
    return evaluate(real, samples, metrics, **kwargs).to_frame()
