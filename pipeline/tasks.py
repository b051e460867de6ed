"""The work of the job, as plain functions and their Ray remote versions.

Each function takes URLs and small specs (never tensors), writes its outputs to the output storage
and returns a small typed result (`Trained`, `ChunkResult`) holding rows for the Parquet tables.
The driver chains them:

    train_pack_variants ─┬─> sample_chunk ──> evaluate_chunk   (per image: one chain per chunk of samples)
    (K images: K results) └─> ...          ──> evaluate_set    (diversity over all the image's samples)

A training task trains the K pyramids of its pack together (singan_core.train_pack) and returns one
result per pyramid (Ray's num_returns=K: one object reference each, so each image's chain waits on its own).
`train_variant` is the pack of one. High-Res mode: the base pyramid alone and the quadrants q0..q3 as a
pack feed each stitch_chunk instead of sample_chunk.

Training saves a checkpoint of every pyramid after every scale (train_pack(outs=...)); when Ray retries a
task whose worker died, the new attempt (same specs, so the same folders) resumes the pack from the last
scale all its pyramids finished.

Fault injection (for tests and drills): with the environment variable SINGAN_FAULT_EXIT_AFTER_SCALE=k
set in the driver's environment, every training task kills its own process right after its pack finished
scale k (0 = coarsest). The retry resumes after scale k, so each task dies once.
"""

from __future__ import annotations

import logging
import os
import socket
import time
import traceback
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, NamedTuple

import fsspec
import ray
import torch

from singan_core.config import Config
from singan_core.devices import set_threads
from singan_core.images import atomic_write, load_image, save_image
from singan_core.singan import ModelFileError, SinGAN, model_exists
from singan_core.train import train_pack

from .figures import loss_curves_png, png_bytes, sample_grid
from .packs import pack_id

FAULT_ENV = "SINGAN_FAULT_EXIT_AFTER_SCALE"
HIGHRES_PARTS = ("base", "q0", "q1", "q2", "q3")
GRID_SAMPLES = 16  # at most this many samples in a run's sample grid


# ---------------------------------------------------------------------------- specs
@dataclass(frozen=True)
class TrainSpec:
    """One pyramid to train: the whole image (variant 'full') or a High-Res part."""

    image_url: str
    image_id: str
    variant: str
    config: Config  # the job's config; High-Res parts derive theirs with highres_config
    model_url: str
    plot_url: str
    threads: int = 1
    fault_exit_after_scale: int | None = None

    @property
    def key(self) -> str:
        """The training's name on the progress board and in pack ids: "image_id/variant"."""
        return f"{self.image_id}/{self.variant}"


@dataclass(frozen=True)
class SampleSpec:
    """A chunk of samples [start, start + count), drawn in one batch from one seed."""

    image_id: str
    config_hash: str
    variant_tag: str
    variant: str
    start: int
    count: int
    seed: int
    scale_h: float
    scale_v: float
    samples_url: str  # folder of sample_0000.png ...
    grid_url: str | None = None  # where the chunk starting at 0 puts the sample grid
    threads: int = 1


@dataclass(frozen=True)
class EvalSpec:
    """Metrics of some samples against the real image: x_0 of the model at `real_model_url` (High-Res:
    the base pyramid, whose x_0 is the full image at the stitched samples' size)."""

    real_model_url: str
    metrics: tuple[str, ...]
    inception_weights: str | None = None
    threads: int = 1
    seed: int = 0


# ---------------------------------------------------------------------------- results
@dataclass(frozen=True)
class Trained:
    """What a training task returns: its row of runs.parquet (minus the job-level columns) and the
    config the pyramid was trained with (None when the task failed before it was known)."""

    row: dict[str, Any]
    config: Config | None = None

    @property
    def failed(self) -> bool:
        return self.row.get("status") != "ok"


@dataclass(frozen=True)
class ChunkResult:
    """What a sampling or evaluation task returns.

    rows: its rows of samples.parquet or metrics.parquet. error: what failed it (a failed sampling
    marks the sampled variant failed). notes: what could not be computed without failing anything
    (a metric). skipped: not run because a training it needs failed (its row says why).
    """

    rows: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    skipped: bool = False


# ---------------------------------------------------------------------------- small helpers
def now() -> datetime:
    return datetime.now(timezone.utc)


def one_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def task_device() -> str:
    """CUDA when this task was given a GPU by Ray and CUDA works here; the CPU otherwise."""
    try:
        has_gpu = bool(ray.get_gpu_ids()) if ray.is_initialized() else False
    except Exception:  # noqa: BLE001 - outside a Ray worker
        has_gpu = False
    return "cuda" if has_gpu and torch.cuda.is_available() else "cpu"


def write_bytes(url: str, data: bytes) -> None:
    with atomic_write(url) as f:
        f.write(data)


def finished_scales(model_url: str) -> tuple[int, str | None]:
    """How many scales the checkpoint at `model_url` holds (0 when there is none), and a note when it was
    damaged: a checkpoint that cannot be loaded (truncated, corrupt, refused) is set aside by `set_aside`
    and training starts from scratch (its files are one set for all scales, so no part of it is kept)."""
    if not model_exists(model_url):
        return 0, None
    try:
        return SinGAN.load(model_url, device="cpu").num_stages, None
    except (FileNotFoundError, ModelFileError) as e:
        aside = set_aside(model_url)
        reason = one_line(e).removeprefix(f"{model_url}: ")
        return 0, f"damaged checkpoint ({reason}) moved to {aside}; trained from scratch"


def set_aside(url: str) -> str:
    """Rename the folder `url` to `<url>.damaged-<UTC time>` (kept, not deleted); return the new URL."""
    fs, path = fsspec.core.url_to_fs(url)
    target = f"{path.rstrip('/')}.damaged-{time.strftime('%Y%m%dT%H%M%SZ', time.gmtime())}"
    fs.mv(path, target, recursive=True)
    return target if "://" not in url else fs.unstrip_protocol(target)


# ---------------------------------------------------------------------------- progress
@ray.remote(num_cpus=0)
class ProgressBoard:
    """Where training tasks say they started and post their current scale; the driver reads them now and then."""

    def __init__(self) -> None:
        self.scales: dict[str, tuple[int, int]] = {}
        self.begun: set[str] = set()

    def start(self, keys: list[str]) -> None:
        self.begun.update(keys)

    def post(self, key: str, done: int, total: int) -> None:
        self.scales[key] = (done, total)

    def snapshot(self) -> dict[str, tuple[int, int]]:
        return dict(self.scales)

    def started(self) -> set[str]:
        """The trainings ("image_id/variant") whose task has started: Ray granted its resources."""
        return set(self.begun)


def _stage_callback(keys: Sequence[str], board: Any, fault_after: int | None):
    def on_stage(index: int, report: dict[str, Any]) -> None:
        total = report["stage"] + report["scale"] + 1
        if board is not None:
            board.post.remote(keys[index], report["stage"] + 1, total)
        if fault_after is not None and report["stage"] == fault_after and index == len(keys) - 1:
            os._exit(17)  # fault injection: die like a killed worker, after the pack's checkpoints were saved

    return on_stage


# ---------------------------------------------------------------------------- training
def _prepared(spec: TrainSpec) -> tuple[torch.Tensor, Config, tuple[int, int]]:
    """What `spec` trains on and with: the image ('full'), or a High-Res part and its config; and the
    input's size (a part's: the size of the image it is cut from)."""
    image = load_image(spec.image_url)
    size = (int(image.shape[-2]), int(image.shape[-1]))
    if spec.variant == "full":
        return image, spec.config, size
    from singan_core.applications import highres

    part = highres.part_image(highres.full_image(image, spec.config), spec.variant)
    return part, highres.highres_config(spec.config, spec.variant), size


def train_variant(spec: TrainSpec, board: Any = None) -> Trained:
    """Train one pyramid: `train_pack` of one."""
    return train_pack_variants([spec], board)[0]


def train_pack_variants(specs: Sequence[TrainSpec], board: Any = None) -> list[Trained]:
    """Train K pyramids in one task, those of one training shape as one pack (`singan_core.train_pack`);
    return each one's row of runs.parquet (minus the job-level columns) and its config, in `specs` order.

    The pack is what the driver grouped; pyramids whose shapes turn out to differ (the header did not
    tell) train as separate packs here. Bad input (corrupt, too small, not an image) and any other error
    become failed rows of the images concerned; only the death of the process itself escapes (and makes
    Ray retry the task, which resumes every pyramid of the pack from its last finished scale).
    """
    set_threads(specs[0].threads)
    started = now()
    if board is not None:
        board.start.remote([s.key for s in specs])
    device = task_device()
    name = pack_id([s.key for s in specs])
    rows = [{"image_id": s.image_id, "variant": s.variant, "source_uri": s.image_url, "host": socket.gethostname(),
             "start_time": started, "model_url": s.model_url, "device": device, "pack_id": name} for s in specs]
    results: list[Trained | None] = [None] * len(specs)
    groups: dict[tuple[Any, ...], list[_Member]] = {}
    for i, spec in enumerate(specs):
        try:
            resumed, note = finished_scales(spec.model_url)
            if note:
                rows[i]["note"] = note
                logging.getLogger(__name__).warning("%s (%s): %s", spec.image_url, spec.variant, note)
            image, cfg, (rows[i]["orig_height"], rows[i]["orig_width"]) = _prepared(spec)
            groups.setdefault((cfg.hash(), tuple(image.shape)), []).append(_Member(i, image, cfg, resumed))
        except Exception as e:  # noqa: BLE001 - one bad image must never stop the job
            results[i] = _failed(rows[i], e)
    for j, members in enumerate(groups.values()):
        if len(groups) > 1:
            for m in members:
                rows[m.index]["pack_id"] = f"{name}.{j}"
        _train_group(members, [specs[m.index] for m in members], rows, results, device, board)
    return [r if r is not None else Trained(rows[i]) for i, r in enumerate(results)]


class _Member(NamedTuple):
    """A pyramid of a task's pack, ready to train: its place in the task's specs, x_0 before the max_size
    rule, its config, and the scales its checkpoint holds."""

    index: int
    image: torch.Tensor
    cfg: Config
    resumed: int


def _train_group(members: list[_Member], specs: list[TrainSpec],
                 rows: list[dict[str, Any]], results: list[Trained | None], device: str, board: Any) -> None:
    """Train one pack of same-shape pyramids and fill in the members' rows and results."""
    cfg = members[0].cfg
    on_stage = _stage_callback([s.key for s in specs], board, specs[0].fault_exit_after_scale)
    try:
        models = train_pack([m.image for m in members], cfg, outs=[s.model_url for s in specs],
                            device=device, progress=False, on_stage=on_stage)
    except Exception as e:  # noqa: BLE001
        for m in members:
            results[m.index] = _failed(rows[m.index], e)
        return
    resumed = min(m.resumed for m in members)  # the pack resumes from the last scale all its pyramids finished
    for m, spec, model in zip(members, specs, models, strict=True):
        row = rows[m.index]
        try:
            stages = model.report.get("stages", [])
            write_bytes(spec.plot_url, loss_curves_png(stages, f"{os.path.basename(spec.image_url)} ({spec.variant})"))
            row.update(_report_columns(model.report, model.shapes[-1]))
            k = int(model.report.get("pack_size", 1))
            row.update(status="ok", model_uri=spec.model_url, plot_uri=spec.plot_url, resumed_from_scale=resumed,
                       pack_size=k, pack_seconds=row["total_seconds"] * k,
                       stages=[{key: v for key, v in s.items() if key != "curve"} for s in stages])
            results[m.index] = Trained({**row, "end_time": now()}, cfg)
        except Exception as e:  # noqa: BLE001
            results[m.index] = _failed(row, e)


def _failed(row: dict[str, Any], error: Exception) -> Trained:
    row.update(status="failed", error=one_line(error), error_type=type(error).__name__,
               traceback="".join(traceback.format_exception(error))[-4000:], end_time=now())
    return Trained(row)


def _report_columns(report: dict[str, Any], finest: tuple[int, int]) -> dict[str, Any]:
    stages = report.get("stages", [])
    last = stages[-1] if stages else {}
    return {
        "train_height": int(finest[0]),
        "train_width": int(finest[1]),
        "num_scales": report.get("num_scales"),
        "scale_factor": report.get("scale_factor"),
        "iterations_per_scale": [int(s["iterations"]) for s in stages],
        "seconds_per_scale": [float(s["seconds"]) for s in stages],
        "total_iterations": report.get("total_iterations"),
        "total_seconds": report.get("total_seconds"),
        "final_loss_d": last.get("loss_d"),
        "final_loss_adv": last.get("loss_adv"),
        "final_loss_rec": last.get("loss_rec"),
        "device": report.get("device"),
    }


# ---------------------------------------------------------------------------- sampling
def _sample_rows(spec: SampleSpec, samples: torch.Tensor, scale: tuple[float, float]) -> list[dict[str, Any]]:
    rows = []
    base = spec.samples_url.rstrip("/")
    for j, x in enumerate(samples):
        index = spec.start + j
        url = f"{base}/sample_{index:04d}.png"
        save_image(x, url)
        rows.append({"image_id": spec.image_id, "config_hash": spec.config_hash, "variant_tag": spec.variant_tag,
                     "variant": spec.variant, "sample_index": index, "seed": spec.seed, "batch_size": spec.count,
                     "index_in_batch": j, "scale_h": scale[0], "scale_v": scale[1], "sample_uri": url,
                     "height": int(x.shape[-2]), "width": int(x.shape[-1])})
    if spec.grid_url:
        write_bytes(spec.grid_url, png_bytes(sample_grid(samples[:GRID_SAMPLES])))
    return rows


def sample_chunk(spec: SampleSpec, trained: Trained) -> ChunkResult:
    """Draw one chunk of samples from a trained pyramid."""
    if trained.failed:
        return ChunkResult(skipped=True)
    set_threads(spec.threads)
    try:
        model = SinGAN.load(trained.row["model_uri"], device=task_device())
        samples = model.sample(spec.count, scale_h=spec.scale_h, scale_v=spec.scale_v, seed=spec.seed,
                               batch_size=spec.count)
        return ChunkResult(_sample_rows(spec, samples, (spec.scale_h, spec.scale_v)))
    except Exception as e:  # noqa: BLE001
        return ChunkResult(error=f"sampling failed: {one_line(e)}")


def stitch_chunk(spec: SampleSpec, *parts: Trained) -> ChunkResult:
    """High-Res: stitched samples from the base pyramid and the four quadrant pyramids (in HIGHRES_PARTS order)."""
    if any(part.failed for part in parts):
        return ChunkResult(skipped=True)
    from singan_core.applications import highres

    set_threads(spec.threads)
    try:
        urls = [part.row["model_uri"] for part in parts]
        samples = highres.stitch(urls[0], urls[1:], n=spec.count, seed=spec.seed, device=task_device())
        return ChunkResult(_sample_rows(spec, samples.clamp(-1, 1), (1.0, 1.0)))
    except Exception as e:  # noqa: BLE001
        return ChunkResult(error=f"stitching failed: {one_line(e)}")


# ---------------------------------------------------------------------------- evaluation
def _real_image(spec: EvalSpec) -> torch.Tensor:
    """x_0 of the trained model: the real image at the training size."""
    return SinGAN.load(spec.real_model_url, device="cpu").reals[-1][:1]


def _load_samples(rows: Sequence[dict[str, Any]]) -> torch.Tensor:
    return torch.cat([load_image(r["sample_uri"]) for r in rows])


def _metric_rows(sample_rows: Sequence[dict[str, Any]], values: dict[str, list[float]]) -> list[dict[str, Any]]:
    out = []
    for name, per_sample in values.items():
        for row, value in zip(sample_rows, per_sample, strict=True):
            out.append({**_group(row), "sample_index": row["sample_index"], "metric": name, "value": value})
    return out


def _group(row: dict[str, Any]) -> dict[str, Any]:
    return {k: row[k] for k in ("image_id", "config_hash", "variant_tag", "variant")}


def evaluate_chunk(spec: EvalSpec, sampled: ChunkResult) -> ChunkResult:
    """Per-sample metrics (SIFID when its weights can be had, SWD, patch FD) of one chunk of samples."""
    rows = sampled.rows
    names = tuple(m for m in spec.metrics if m != "diversity")
    if not rows or not names:
        return ChunkResult()
    from singan_core.metrics import evaluate

    set_threads(spec.threads)
    try:
        samples = _load_samples(rows)
        real = _real_image(spec)
        result = evaluate(real, samples, names, inception_weights=spec.inception_weights, device="cpu",
                          seed=spec.seed, strict=False)
        return ChunkResult(_metric_rows(rows, result.per_sample), notes=list(result.errors.values()))
    except Exception as e:  # noqa: BLE001 - a metric that cannot be computed is a note, not a failure
        return ChunkResult(notes=[f"evaluation failed: {one_line(e)}"])


def evaluate_set(spec: EvalSpec, *sampled: ChunkResult) -> ChunkResult:
    """Set-level metrics (diversity) over all the samples of one image and variant."""
    rows = [r for chunk in sampled for r in chunk.rows]
    if "diversity" not in spec.metrics or len(rows) < 2:
        return ChunkResult()
    from singan_core.metrics import diversity

    set_threads(spec.threads)
    try:
        samples = _load_samples(rows)
        value = diversity(samples, _real_image(spec))
        return ChunkResult([{**_group(rows[0]), "sample_index": None, "metric": "diversity", "value": value}])
    except Exception as e:  # noqa: BLE001
        return ChunkResult(notes=[f"diversity failed: {one_line(e)}"])


# ---------------------------------------------------------------------------- Ray versions
# Training is retried when its worker dies (checkpoints make the retry resume); errors raised by our
# own code are already turned into failed rows, so they are never retried.
remote_train = ray.remote(max_retries=3)(train_variant)
remote_train_pack = ray.remote(max_retries=3)(train_pack_variants)  # .options(num_returns=K): one ref per image
remote_sample = ray.remote(max_retries=2)(sample_chunk)
remote_stitch = ray.remote(max_retries=2)(stitch_chunk)
remote_evaluate = ray.remote(max_retries=2)(evaluate_chunk)
remote_evaluate_set = ray.remote(max_retries=2)(evaluate_set)

__all__ = [
    "FAULT_ENV",
    "HIGHRES_PARTS",
    "ChunkResult",
    "EvalSpec",
    "ProgressBoard",
    "SampleSpec",
    "TrainSpec",
    "Trained",
    "evaluate_chunk",
    "evaluate_set",
    "remote_evaluate",
    "remote_evaluate_set",
    "remote_sample",
    "remote_stitch",
    "remote_train",
    "remote_train_pack",
    "sample_chunk",
    "stitch_chunk",
    "train_pack_variants",
    "train_variant",
]
