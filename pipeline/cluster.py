"""The Ray cluster a job runs on: joining it, and what each task may ask of it.

    connect(None)                                   # $RAY_ADDRESS, a running local head, or a new local Ray
    res = plan_resources(live_nodes(), num_cpus=1, gpus_per_task=0.25)
    slots(live_nodes(), res)                        # how many training tasks fit at once
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import ray


@dataclass(frozen=True)
class TaskResources:
    """What every training and sampling task asks Ray for (`note`: why the request was changed)."""

    num_cpus: int
    num_gpus: float
    note: str | None = None

    def options(self) -> dict[str, float]:
        """The keyword arguments of `remote_fn.options(...)`."""
        return {"num_cpus": self.num_cpus, "num_gpus": self.num_gpus}


def connect(address: str | None) -> bool:
    """Join the Ray cluster at `address` ("auto", "ray://...", "local" for a private one; None: the
    cluster of $RAY_ADDRESS or a running local head, else a new local one, without the dashboard, which
    costs a 2-core machine more than it shows). True when this call connected."""
    if ray.is_initialized():
        return False
    ray.init(address=address, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    return True


def live_nodes() -> list[dict[str, float]]:
    """The resources of every node alive now."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


def plan_resources(nodes: Sequence[dict[str, float]], num_cpus: int, gpus_per_task: float) -> TaskResources:
    """Check the per-task request against the nodes' resources; fail fast instead of waiting forever.

    Without any GPU in the cluster the GPU request is dropped (tasks run on the CPU), with a note.
    """
    if num_cpus < 1:
        raise ValueError(f"--cpus-per-task must be at least 1, got {num_cpus}")
    if gpus_per_task < 0:
        raise ValueError(f"--gpus-per-task must not be negative, got {gpus_per_task}")
    if gpus_per_task > 1 and gpus_per_task != int(gpus_per_task):
        raise ValueError(f"--gpus-per-task above 1 must be a whole number, got {gpus_per_task}")
    if not nodes:
        raise ValueError("the Ray cluster has no live node")
    most_cpus = max(n.get("CPU", 0.0) for n in nodes)
    if num_cpus > most_cpus:
        raise ValueError(f"--cpus-per-task {num_cpus} is more than any node has (largest: {most_cpus:g} CPUs)")
    most_gpus = max(n.get("GPU", 0.0) for n in nodes)
    if gpus_per_task == 0:
        return TaskResources(num_cpus, 0.0)
    if most_gpus == 0:
        return TaskResources(num_cpus, 0.0, "no GPU in the Ray cluster: every task runs on the CPU")
    if gpus_per_task > most_gpus:
        raise ValueError(f"--gpus-per-task {gpus_per_task:g} is more than any node has (largest: {most_gpus:g} GPUs)")
    fitting = [n for n in nodes if n.get("CPU", 0) >= num_cpus and n.get("GPU", 0) >= gpus_per_task]
    if not fitting:
        raise ValueError(f"no node has both {num_cpus} CPUs and {gpus_per_task:g} GPUs for one task")
    return TaskResources(num_cpus, gpus_per_task)


def slots(nodes: Sequence[dict[str, float]], res: TaskResources) -> int:
    """How many training tasks fit in the cluster at once."""
    total = 0
    for n in nodes:
        fit = int(n.get("CPU", 0) // res.num_cpus)
        if res.num_gpus:
            fit = min(fit, int(n.get("GPU", 0) / res.num_gpus + 1e-9))
        total += fit
    return max(1, total)
