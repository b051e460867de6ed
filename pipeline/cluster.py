"""The Ray cluster a job runs on: joining it, and what each task may ask of it.

    joined = connect(None)      # $RAY_ADDRESS, a running local head that answers, or a new private local Ray
    res = plan_resources(live_nodes(), num_cpus=1, gpus_per_task=None, node_types=addable_node_types())
    slots(live_nodes(), res)                        # how many training tasks fit at once
"""

from __future__ import annotations

import logging
import os
import socket
import time
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


DEFAULT_GPUS = 0.25  # GPU fraction per task when the cluster has or can add GPUs and none was given: four share one


# ---------------------------------------------------------------------------- joining a cluster
HEAD_PROBE_S = 3.0  # a head named by Ray's ray_current_cluster file must answer within this, else a private Ray
ADDRESS_WAIT_S = 10.0  # an address the user gave ($RAY_ADDRESS, --address) is tried for this long
_HTTP2_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" + b"\x00\x00\x00\x04\x00\x00\x00\x00\x00"  # + empty SETTINGS


class ClusterUnreachableError(ValueError):
    """The Ray cluster asked for does not answer (one line; a bad --address / $RAY_ADDRESS)."""


@dataclass(frozen=True)
class Connection:
    """What `connect` did: `started` when this call connected (the caller disconnects at the end);
    `note` when it chose a private local Ray because the head on record does not answer."""

    started: bool
    note: str | None = None


def connect(address: str | None, *, wait_s: float = ADDRESS_WAIT_S, probe_s: float = HEAD_PROBE_S) -> Connection:
    """Join the Ray cluster at `address` ("auto", "host:port", "ray://...", "local" for a private one; None:
    the cluster of $RAY_ADDRESS or a running local head, else a new private local Ray), without the
    dashboard, which costs a 2-core machine more than it shows.

    Every address is checked to answer before Ray is asked to join it (Ray's own join retries a dead head
    without end and does not see Ctrl-C meanwhile): a head Ray only has on record that does not answer
    within `probe_s` gives way to a private local Ray, with a note; an address the user gave that does
    not answer within `wait_s` raises ClusterUnreachableError.
    """
    if ray.is_initialized():
        return Connection(False)
    target, note = choose_cluster(address, wait_s=wait_s, probe_s=probe_s)
    auth_log = logging.getLogger(_AUTH_LOGGER)
    quiet = _DefaultAuthNotice()
    if target == "local":
        auth_log.addFilter(quiet)
    try:
        ray.init(address=target, include_dashboard=False, logging_level=logging.WARNING, log_to_driver=True)
    except ConnectionError as e:
        raise ClusterUnreachableError(f"cannot join the Ray cluster {target!r}: {_first_line(e)}") from None
    except KeyboardInterrupt:
        ray.shutdown()  # Ctrl-C while Ray starts: stop what has started now, not in the interpreter's exit
        raise
    finally:
        auth_log.removeFilter(quiet)
    return Connection(True, note)


def choose_cluster(address: str | None, *, wait_s: float = ADDRESS_WAIT_S,
                   probe_s: float = HEAD_PROBE_S) -> tuple[str, str | None]:
    """The address to give `ray.init` ('local': start a private Ray) and a note for the user, or
    ClusterUnreachableError. $RAY_ADDRESS counts as given when `address` is None or 'auto', as in Ray."""
    given = address if address not in (None, "auto") else (os.environ.get("RAY_ADDRESS") or address)
    if given == "local":
        return "local", None
    if given not in (None, "auto"):
        if not wait_for_answer(given, wait_s, probe_s):
            raise ClusterUnreachableError(f"the Ray cluster at {given} does not answer (tried for {wait_s:g} s); "
                                     "check --address / $RAY_ADDRESS, or use --address local")
        return given, None
    recorded, where = recorded_head()
    if recorded is None:
        return ("auto", None) if given == "auto" else ("local", None)  # Ray's 'auto' also finds heads by process
    if answers(recorded, probe_s):
        return recorded, None
    if given == "auto":
        raise ClusterUnreachableError(f"the Ray head at {recorded} (named in {where}) does not answer")
    return "local", f"the Ray head at {recorded} named in {where} does not answer: started a private local Ray"


def recorded_head() -> tuple[str | None, str]:
    """The head address in Ray's `ray_current_cluster` file (written by `ray start`, left behind when the head
    dies without `ray stop`) and the file's path; Ray 2.60 keeps it in $RAY_TMPDIR (else $TMPDIR, else /tmp)/ray."""
    from ray._common.utils import get_ray_address_file

    path = get_ray_address_file(None)
    try:
        with open(path) as f:
            return f.read().strip() or None, path
    except OSError:
        return None, path


def wait_for_answer(address: str, wait_s: float, probe_s: float) -> bool:
    """Whether the cluster at `address` answers within `wait_s` (tried about once a second)."""
    deadline = time.monotonic() + wait_s
    while True:
        if answers(address, min(probe_s, max(0.1, deadline - time.monotonic()))):
            return True
        if time.monotonic() + 1.0 > deadline:
            return False
        time.sleep(1.0)


def answers(address: str, timeout_s: float) -> bool:
    """Whether a gRPC server (a Ray GCS or Ray Client server) answers at `address` within `timeout_s`: it
    must accept a connection and reply to the HTTP/2 preface with a SETTINGS frame, so a dead head's port
    and a port reused by another program both count as not answering. Plain Python: Ctrl-C works here."""
    host, port = _host_port(address)
    deadline = time.monotonic() + timeout_s
    try:
        with socket.create_connection((host, port), timeout=timeout_s) as sock:
            if os.environ.get("RAY_USE_TLS", "0").lower() in ("1", "true"):
                return True  # a TLS server waits for a TLS hello: the open port is all a plain probe can see
            sock.sendall(_HTTP2_PREFACE)
            sock.settimeout(max(0.05, deadline - time.monotonic()))
            reply = sock.recv(9)
    except OSError:
        return False
    return len(reply) >= 4 and reply[3] == 0x04  # frame header: 3 bytes length, 1 byte type (4 = SETTINGS)


def _host_port(address: str) -> tuple[str, int]:
    rest = address.split("://", 1)[-1].rstrip("/")
    host, sep, port = rest.rpartition(":")
    if not sep or not port.isdigit():
        raise ClusterUnreachableError(f"Ray address {address!r} is not host:port (or ray://host:port, auto, local)")
    return host.strip("[]"), int(port)


_AUTH_LOGGER = "ray._private.authentication.authentication_token_setup"  # Ray 2.60


class _DefaultAuthNotice(logging.Filter):
    """Drops Ray's warning that it turned token authentication on for a new local cluster: for the private
    Ray a job starts for itself that is the right mode, not news (a mode set in $RAY_AUTH_MODE is Ray's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Token authentication is enabled")


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def live_nodes() -> list[dict[str, float]]:
    """The resources of every node alive now."""
    return [n["Resources"] for n in ray.nodes() if n.get("Alive")]


BOOTSTRAP_CONFIG = "~/ray_bootstrap_config.yaml"  # the cluster launcher's config, written on the head by `ray up`
MAX_NODES_COUNTED = 100  # per node type, in the window's count of task slots


def addable_node_types(bootstrap: str = BOOTSTRAP_CONFIG) -> list[dict[str, float]]:
    """The resources of the worker nodes the cluster's autoscaler may start, one entry per node (a node type
    up to its maximum count); [] without an autoscaler. From the cluster config the autoscaler reports to
    Ray (what Ray Data and Ray Train read), else from the launcher's config on the head (`bootstrap`: the
    `available_node_types` of cluster.yaml, the job's driver running on the head under `ray job submit`)."""
    try:
        from ray._private.state import state

        config = state.get_cluster_config()
    except Exception:  # noqa: BLE001 - a Ray Client connection or an older GCS: no such report
        config = None
    if config is not None and config.node_group_configs:
        return [dict(group.resources) for group in config.node_group_configs
                for _ in range(_count(group.max_count))]
    return _launcher_node_types(os.path.expanduser(bootstrap))


def _launcher_node_types(path: str) -> list[dict[str, float]]:
    import yaml

    try:
        with open(path) as f:
            config = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError):
        return []
    head = config.get("head_node_type")
    types = config.get("available_node_types") or {}
    return [{k: float(v) for k, v in (spec.get("resources") or {}).items()}
            for name, spec in types.items() if name != head for _ in range(_count(spec.get("max_workers", 0)))]


def _count(max_count: int) -> int:
    """Nodes of a type counted: its maximum (-1, no maximum: one), at most MAX_NODES_COUNTED."""
    return 1 if max_count < 0 else min(int(max_count), MAX_NODES_COUNTED)


def plan_resources(nodes: Sequence[dict[str, float]], num_cpus: int, gpus_per_task: float | None,
                   node_types: Sequence[dict[str, float]] = ()) -> TaskResources:
    """The per-task request, checked against the live `nodes` and the `node_types` the autoscaler can add;
    fails fast instead of waiting forever for a request that no node could ever meet.

    `gpus_per_task` None (the default): DEFAULT_GPUS when some node has a GPU or the autoscaler can add
    one (tasks wait for it: the autoscaler starts GPU nodes for them), else the CPU, with a note. A
    number given is asked for as given, even where no GPU is in sight (the job's --resource-timeout
    stops it if none comes); 0 means the CPU.
    """
    if num_cpus < 1:
        raise ValueError(f"--cpus-per-task must be at least 1, got {num_cpus}")
    if gpus_per_task is not None and gpus_per_task < 0:
        raise ValueError(f"--gpus-per-task must not be negative, got {gpus_per_task}")
    if gpus_per_task is not None and gpus_per_task > 1 and gpus_per_task != int(gpus_per_task):
        raise ValueError(f"--gpus-per-task above 1 must be a whole number, got {gpus_per_task}")
    if not nodes:
        raise ValueError("the Ray cluster has no live node")
    capacity = [*nodes, *node_types]
    most_cpus = max(n.get("CPU", 0.0) for n in capacity)
    if num_cpus > most_cpus:
        raise ValueError(f"--cpus-per-task {num_cpus} is more than any node has (largest: {most_cpus:g} CPUs)")
    most_gpus = max(n.get("GPU", 0.0) for n in capacity)
    alive_gpus = max(n.get("GPU", 0.0) for n in nodes)
    if gpus_per_task == 0:
        return TaskResources(num_cpus, 0.0)
    if most_gpus == 0:
        if gpus_per_task is None:
            return TaskResources(num_cpus, 0.0, "no GPU in the Ray cluster and its autoscaler can add none: every "
                                                "task runs on the CPU")
        return TaskResources(num_cpus, gpus_per_task, f"--gpus-per-task {gpus_per_task:g}: no GPU in the Ray "
                             "cluster nor in its autoscaler's node types; the tasks wait for one")
    gpus = DEFAULT_GPUS if gpus_per_task is None else gpus_per_task
    if gpus > most_gpus:
        raise ValueError(f"--gpus-per-task {gpus:g} is more than any node has (largest: {most_gpus:g} GPUs)")
    fitting = [n for n in capacity if n.get("CPU", 0) >= num_cpus and n.get("GPU", 0) >= gpus]
    if not fitting:
        raise ValueError(f"no node has both {num_cpus} CPUs and {gpus:g} GPUs for one task")
    note = None if alive_gpus else "no GPU node is up yet: the tasks ask for GPUs and wait for the autoscaler"
    return TaskResources(num_cpus, gpus, note)


def slots(nodes: Sequence[dict[str, float]], res: TaskResources) -> int:
    """How many training tasks fit in the cluster at once."""
    total = 0
    for n in nodes:
        fit = int(n.get("CPU", 0) // res.num_cpus)
        if res.num_gpus:
            fit = min(fit, int(n.get("GPU", 0) / res.num_gpus + 1e-9))
        total += fit
    return max(1, total)
