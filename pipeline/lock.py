"""A job's lock on its output folder: one job at a time writes models, samples and tables there.

    with hold_output("/abs/results", job="train_dataset photos/") as held:
        ...                    # held.note: set when a stale lock (its job gone) was taken over

The lock is the file `<out>/.singan-job.lock` (JSON: host, pid, start time, heartbeat, the job). A second
job on the same output stops at once with OutputInUseError (one line naming the running job). A lock is
stale, and taken over, when its process is gone (same host) or its heartbeat, renewed every HEARTBEAT_S
by a thread of the holder, is older than STALE_S (a crashed job on another host). Jobs on different
outputs never see each other's locks. Creating the lock is atomic on a local or shared POSIX filesystem
(O_EXCL); on object stores (s3://, gs://) it is written, then read back to check it is ours.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone

import fsspec
from fsspec.implementations.local import LocalFileSystem

from singan_core.images import atomic_write

LOCK_NAME = ".singan-job.lock"
HEARTBEAT_S = 30.0  # the holder renews its heartbeat this often
STALE_S = 120.0  # a lock whose heartbeat is older than this belongs to a job that is gone


class OutputInUseError(ValueError):
    """Another job holds the output folder's lock (one line naming it)."""


@dataclass(frozen=True)
class LockInfo:
    """What the lock file says about the job holding it."""

    host: str
    pid: int
    start_time: str  # ISO 8601, UTC
    heartbeat: float  # seconds since the epoch
    job: str
    token: str  # unique per acquisition, so a holder can tell its own lock from a successor's

    def describe(self) -> str:
        return f"{self.job!r} (pid {self.pid} on {self.host}, started {self.start_time})"


@dataclass(frozen=True)
class Held:
    """A lock this process holds; `note` says when it took over a stale one."""

    url: str
    info: LockInfo
    note: str | None = None
    created_folder: bool = False


@contextmanager
def hold_output(out: str, job: str) -> Iterator[Held]:
    """Hold the lock of the output folder `out` (created if missing) for the `with` block."""
    held = acquire(out, job)
    stop = threading.Event()
    beat = threading.Thread(target=_heartbeat, args=(held, stop), daemon=True, name="singan-lock-heartbeat")
    beat.start()
    try:
        yield held
    finally:
        stop.set()
        beat.join(timeout=5)
        release(held, out)


def lock_url(out: str) -> str:
    return f"{out.rstrip('/')}/{LOCK_NAME}"


def acquire(out: str, job: str) -> Held:
    """Take the lock of `out`, or raise OutputInUseError; a stale lock is taken over (with a note)."""
    fs, path = fsspec.core.url_to_fs(out)
    created = not fs.exists(path)
    try:
        fs.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ValueError(f"--out {out} cannot be created: {e.strerror or e}") from None
    url = lock_url(out)
    note = None
    for _ in range(3):
        info = LockInfo(socket.gethostname(), os.getpid(), datetime.now(timezone.utc).isoformat(timespec="seconds"),
                        time.time(), job, uuid.uuid4().hex)
        try:
            if _create(url, info):
                return Held(url, info, note, created)
        except OSError as e:
            raise ValueError(f"--out {out} is not writable: {e.strerror or e}") from None
        current = read_lock(url)
        if current is None:
            continue  # released meanwhile
        reason = stale_reason(current)
        if reason is None:
            raise OutputInUseError(f"{out} is in use by job {current.describe()}; wait for it to end, or use another "
                              f"--out (if that job is gone, delete {url})")
        _remove(url)
        note = f"took over the lock of {out} from job {current.describe()}: {reason}"
    raise OutputInUseError(f"{out}: another job keeps taking its lock ({url})")


def release(held: Held, out: str) -> None:
    """Remove the lock if it is still ours; remove the output folder too when this job created it and left
    it empty (a job stopped by bad options writes nothing)."""
    current = read_lock(held.url)
    if current is not None and current.token == held.info.token:
        _remove(held.url)
    if held.created_folder:
        fs, path = fsspec.core.url_to_fs(out)
        try:
            if isinstance(fs, LocalFileSystem) and not os.listdir(path):
                os.rmdir(path)
        except OSError:
            pass


def read_lock(url: str) -> LockInfo | None:
    """The lock at `url` (None when there is none). A file that is not a lock's JSON (being written, or
    damaged) reads as a lock of an unknown job whose heartbeat is the file's modification time."""
    fs, path = fsspec.core.url_to_fs(url)
    try:
        with fs.open(path, "rb") as f:
            data = json.loads(f.read().decode())
        return LockInfo(str(data["host"]), int(data["pid"]), str(data["start_time"]), float(data["heartbeat"]),
                        str(data.get("job", "?")), str(data["token"]))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        try:
            modified = fs.modified(path).timestamp()
        except (OSError, NotImplementedError, FileNotFoundError):
            modified = 0.0
        return LockInfo("?", 0, "?", modified, "(unreadable lock file)", "")


def stale_reason(info: LockInfo, now: float | None = None) -> str | None:
    """Why the lock's job is gone (None: it is running): its process ended, or its heartbeat is old."""
    age = (time.time() if now is None else now) - info.heartbeat
    if info.host == socket.gethostname() and info.pid > 0 and not _alive(info.pid):
        return "its process is gone"
    if age > STALE_S:
        return f"no heartbeat for {age:.0f} s"
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def _create(url: str, info: LockInfo) -> bool:
    """Create the lock file unless one exists; True when it is ours."""
    fs, path = fsspec.core.url_to_fs(url)
    data = json.dumps(asdict(info)).encode()
    if isinstance(fs, LocalFileSystem):
        try:
            fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return True
    if fs.exists(path):
        return False
    fs.pipe_file(path, data)
    time.sleep(0.2)  # let a racing writer's file land, then see whose survived
    current = read_lock(url)
    return current is not None and current.token == info.token


def _remove(url: str) -> None:
    fs, path = fsspec.core.url_to_fs(url)
    try:
        fs.rm_file(path)
    except FileNotFoundError:
        pass


def _heartbeat(held: Held, stop: threading.Event) -> None:
    """Renew the heartbeat every HEARTBEAT_S while the lock is ours; stop when it is not (taken over)."""
    while not stop.wait(HEARTBEAT_S):
        current = read_lock(held.url)
        if current is None or current.token != held.info.token:
            return
        renewed = {**asdict(held.info), "heartbeat": time.time()}
        try:
            with atomic_write(held.url) as f:
                f.write(json.dumps(renewed).encode())
        except OSError:
            pass  # best effort: a missed beat is renewed at the next one
