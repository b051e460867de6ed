"""Submitting an image's tasks to Ray, and fetching their results.

    jobs = submit_pack(items, plan, board)     # the whole chains at once: train (one task) -> sample -> evaluate
    job.results[ref] = fetch(ref)              # a Trained / ChunkResult, or a TaskFailure

Ray runs each task when its inputs are ready (tasks are chained by object references), so the driver
only waits for results.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import ray

from .dataset import ImageItem
from .plan import Plan
from .tasks import (
    HIGHRES_PARTS,
    ChunkResult,
    EvalSpec,
    SampleSpec,
    Trained,
    TrainSpec,
    one_line,
    remote_evaluate,
    remote_evaluate_set,
    remote_sample,
    remote_stitch,
    remote_train,
    remote_train_pack,
)


@dataclass(frozen=True)
class TaskFailure:
    """A task that Ray gave up on (its worker died more often than max_retries, or it was cancelled)."""

    error: str
    error_type: str


TaskResult = Trained | ChunkResult | TaskFailure


@dataclass
class ImageJob:
    """The tasks of one image in flight, and their results as they arrive."""

    item: ImageItem
    group: str
    train: dict[str, Any]  # variant -> ObjectRef
    samples: list[Any]
    evals: list[Any]
    set_eval: Any | None
    results: dict[Any, TaskResult] = field(default_factory=dict)  # ObjectRef -> result

    def training(self) -> list[str]:
        """The keys ("image_id/variant") of this image's trainings still running or waiting."""
        return [f"{self.item.image_id}/{v}" for v, ref in self.train.items() if ref not in self.results]

    def refs(self) -> list[Any]:
        return [*self.train.values(), *self.samples, *self.evals, *([self.set_eval] if self.set_eval else [])]

    @property
    def complete(self) -> bool:
        return len(self.results) == len(self.refs())


def submit_pack(items: Sequence[ImageItem], plan: Plan, board: Any, quadrants: int = 1) -> list[ImageJob]:
    """Submit the chains of the images of one pack at once: one training task for all (one object
    reference per image, `num_returns`), then each image's sampling and evaluation. High-Res (one image
    at a time): the base alone, and the four quadrant pyramids in packs of `quadrants`."""
    layout, res = plan.layout, plan.resources
    specs = {(item.image_id, variant): TrainSpec(
        image_url=item.url, image_id=item.image_id, variant=variant, config=plan.config,
        model_url=layout.model(plan.group(item.image_id), variant),
        plot_url=layout.plot(plan.group(item.image_id), variant, "loss_curves.png"), threads=res.num_cpus,
        fault_exit_after_scale=plan.fault_exit_after_scale) for item in items for variant in plan.train_variants}
    if plan.highres:
        parts = list(specs.values())
        packs = [parts[:1], *(parts[i:i + quadrants] for i in range(1, len(parts), quadrants))]
    else:
        packs = [list(specs.values())]
    refs: dict[tuple[str, str], Any] = {}
    for pack in packs:
        if len(pack) == 1:
            got = [remote_train.options(**res.options()).remote(pack[0], board)]
        else:
            got = remote_train_pack.options(num_returns=len(pack), **res.options()).remote(pack, board)
        refs.update({(spec.image_id, spec.variant): ref for spec, ref in zip(pack, got, strict=True)})
    return [_submit_chain(item, plan, {v: refs[(item.image_id, v)] for v in plan.train_variants}) for item in items]


def _submit_chain(item: ImageItem, plan: Plan, train: dict[str, Any]) -> ImageJob:
    """An image's sampling and evaluation tasks, chained on its training tasks' references."""
    layout, res = plan.layout, plan.resources
    group = plan.group(item.image_id)
    variant = plan.sample_variant
    real_model = layout.model(group, "base" if plan.highres else variant)  # the stitch is at the base's size
    eval_spec = EvalSpec(real_model, plan.metrics, plan.inception_weights, seed=plan.config.seed)
    samples, evals = [], []
    for start in range(0, plan.samples, plan.sample_batch):
        spec = SampleSpec(
            image_id=item.image_id, config_hash=plan.config_hash, variant_tag=plan.tag, variant=variant, start=start,
            count=min(plan.sample_batch, plan.samples - start), seed=plan.config.seed * 1_000_003 + start,
            scale_h=plan.scale_h, scale_v=plan.scale_v, samples_url=layout.samples(group, variant),
            grid_url=layout.plot(group, variant, "sample_grid.png") if start == 0 else None, threads=res.num_cpus,
        )
        if plan.highres:
            ref = remote_stitch.options(**res.options()).remote(spec, *(train[p] for p in HIGHRES_PARTS))
        else:
            ref = remote_sample.options(**res.options()).remote(spec, train[variant])
        samples.append(ref)
        if set(plan.metrics) - {"diversity"}:
            evals.append(remote_evaluate.options(num_cpus=1).remote(eval_spec, ref))
    set_eval = None
    if "diversity" in plan.metrics and plan.samples >= 2:
        set_eval = remote_evaluate_set.options(num_cpus=1).remote(eval_spec, *samples)
    return ImageJob(item, group, train, samples, evals, set_eval)


def fetch(ref: Any) -> TaskResult:
    """The result of a finished task; a TaskFailure when Ray gave up on it."""
    try:
        return ray.get(ref)
    except ray.exceptions.RayError as e:
        return describe_ray_error(e)


def describe_ray_error(e: Exception) -> TaskFailure:
    cause = getattr(e, "cause", None)
    if isinstance(cause, Exception):
        return TaskFailure(f"{type(cause).__name__}: {one_line(cause)}", type(cause).__name__)
    text = str(e).strip().splitlines()
    message = next((line for line in text if "died" in line or "crash" in line.lower()), text[0] if text else "")
    return TaskFailure(f"{type(e).__name__}: {message}".strip(": "), type(e).__name__)
