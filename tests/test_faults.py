"""Faults a real user hits (issue 15): a stale cluster address, two jobs on one output, a damaged checkpoint,
a model file the weights-only loader refuses, outputs that cannot hold data, files not taken, noise.

The stale-cluster tests point Ray's `ray_current_cluster` file, in a private $RAY_TMPDIR, at a port nobody
serves or at a socket that never answers: never at a real head. Jobs started here run on a private Ray.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
import torch
from typer.testing import CliRunner

from pipeline.cli import app
from pipeline.cluster import ClusterUnreachableError, choose_cluster
from pipeline.dataset import content_hash
from pipeline.lock import LOCK_NAME, OutputInUseError, acquire, hold_output, lock_url, read_lock, release
from pipeline.tasks import TrainSpec, train_variant
from singan_core.config import preset
from singan_core.singan import SinGAN

from .conftest import synthetic_image, write_png

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
JOB = str(REPO / "jobs" / "train_dataset.py")
CFG = preset("test").replace(niter=8)
runner = CliRunner()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class FakeServer:
    """A TCP server on 127.0.0.1: `silent` accepts and never answers (a port reused by another program);
    otherwise it answers like a gRPC server (an HTTP/2 SETTINGS frame). `accepted` is set on a connection."""

    def __init__(self, silent: bool) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        self.silent = silent
        self.accepted = threading.Event()
        self.conns: list[socket.socket] = []
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.conns.append(conn)
            if not self.silent:
                conn.sendall(b"\x00\x00\x00\x04\x00\x00\x00\x00\x00")
            self.accepted.set()

    def close(self) -> None:
        for conn in self.conns:
            conn.close()
        self.sock.close()


@pytest.fixture
def ray_tmp(monkeypatch):
    """A private $RAY_TMPDIR (short: Ray's socket paths must stay under 108 characters), no $RAY_ADDRESS;
    `record(address)` writes the ray_current_cluster file Ray reads there."""
    root = Path(f"/tmp/rf-{os.getpid()}-{free_port()}")
    (root / "ray").mkdir(parents=True)
    monkeypatch.setenv("RAY_TMPDIR", str(root))
    monkeypatch.delenv("RAY_ADDRESS", raising=False)

    def record(address: str) -> None:
        (root / "ray" / "ray_current_cluster").write_text(address + "\n")

    yield root, record
    shutil.rmtree(root, ignore_errors=True)


def job_env(ray_root: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "RAY_AUTH_MODE")}
    return {**env, "RAY_TMPDIR": str(ray_root), "PYTHONPATH": str(REPO), "RAY_USAGE_STATS_ENABLED": "0", **extra}


def one_image_folder(folder: Path, seed: int = 1) -> Path:
    folder.mkdir(parents=True)
    write_png(folder / "a.png", synthetic_image(32, 32, seed=seed))
    return folder


def job_args(data: Path, out: Path, *extra: str) -> list[str]:
    return [PYTHON, JOB, str(data), "--out", str(out), "-p", "test", "--set", "niter=4", "--samples", "0", *extra]


def error_lines(text: str) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()]


# ---------------------------------------------------------------------------- 1. a stale cluster address
def test_a_head_on_record_that_does_not_answer_gives_way_to_a_private_ray(ray_tmp):
    _, record = ray_tmp
    assert choose_cluster(None) == ("local", None)  # no head on record: a private Ray, silently
    record(f"127.0.0.1:{free_port()}")  # the head died: nothing listens on its port any more
    target, note = choose_cluster(None, probe_s=1)
    assert target == "local" and "does not answer: started a private local Ray" in note
    silent = FakeServer(silent=True)  # the port answers TCP but is not a Ray head
    try:
        record(silent.address)
        assert choose_cluster(None, probe_s=1)[0] == "local"
    finally:
        silent.close()
    head = FakeServer(silent=False)  # a live head (as far as the probe can tell) is joined
    try:
        record(head.address)
        assert choose_cluster(None, probe_s=1) == (head.address, None)
        assert choose_cluster(head.address, wait_s=1) == (head.address, None)
    finally:
        head.close()
    assert choose_cluster("local") == ("local", None)


def test_an_address_the_user_gave_that_does_not_answer_fails_after_a_bounded_wait(ray_tmp, monkeypatch):
    dead = f"127.0.0.1:{free_port()}"
    for given in (dead, f"ray://{dead}"):
        with pytest.raises(ClusterUnreachableError, match="does not answer"):
            choose_cluster(given, wait_s=1, probe_s=0.5)
    monkeypatch.setenv("RAY_ADDRESS", dead)
    with pytest.raises(ClusterUnreachableError, match=f"{dead} does not answer"):
        choose_cluster(None, wait_s=1, probe_s=0.5)
    with pytest.raises(ClusterUnreachableError, match="not host:port"):
        choose_cluster("nonsense", wait_s=1)


def test_job_with_a_stale_cluster_file_runs_on_a_private_ray_quietly(ray_tmp, tmp_path):
    """The job started by hand after a head died: a note, a private Ray, no token-authentication warning."""
    root, record = ray_tmp
    record(f"127.0.0.1:{free_port()}")
    data = one_image_folder(tmp_path / "data")
    done = subprocess.run(job_args(data, tmp_path / "out"), env=job_env(root), capture_output=True, text=True,
                          timeout=300)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-3000:]
    assert "does not answer: started a private local Ray" in output and "images: 1 ok" in output
    assert "Token authentication" not in output
    assert not (tmp_path / "out" / LOCK_NAME).exists()  # the lock is released at the end


def test_job_with_an_address_that_does_not_answer_is_one_error_line(ray_tmp, tmp_path):
    root, _ = ray_tmp
    data = one_image_folder(tmp_path / "data")
    dead = f"127.0.0.1:{free_port()}"
    done = subprocess.run(job_args(data, tmp_path / "out", "--address", dead), env=job_env(root),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(f"error: the Ray cluster at {dead} does not answer"), done.stderr
    assert not (tmp_path / "out").exists()  # nothing written


def test_a_job_whose_tasks_are_never_given_their_gpus_stops_with_one_error_line(ray_tmp, tmp_path):
    """--gpus-per-task on a private Ray without GPUs (and no autoscaler): the tasks would wait forever; the job
    stops after --resource-timeout with one line and exit code 1, its lock released."""
    root, _ = ray_tmp
    data = one_image_folder(tmp_path / "data")
    done = subprocess.run(job_args(data, tmp_path / "out", "--address", "local", "--gpus-per-task", "0.5",
                                   "--resource-timeout", "2", "--quiet"),
                          env=job_env(root), capture_output=True, text=True, timeout=300)
    assert done.returncode == 1, done.stderr[-3000:]
    lines = [line for line in error_lines(done.stderr) if line.startswith("error:")]
    assert lines == [error_lines(done.stderr)[-1]] and "within --resource-timeout 2 s" in lines[0], done.stderr
    assert not (tmp_path / "out" / "models").exists() and not (tmp_path / "out" / LOCK_NAME).exists()


def test_ctrl_c_while_the_job_checks_the_cluster_stops_it(ray_tmp, tmp_path):
    """Ctrl-C in start-up: the job waits for a head on record that never answers; SIGINT stops it at once."""
    root, record = ray_tmp
    silent = FakeServer(silent=True)
    record(silent.address)
    data = one_image_folder(tmp_path / "data")
    # Ctrl-C as in a terminal: a test run started in the background of a script ignores SIGINT, and a child would
    # inherit that; a handler here (not SIG_IGN) becomes the default in the job, where Python makes it an interrupt
    before = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        job = subprocess.Popen(job_args(data, tmp_path / "out"), env=job_env(root), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    finally:
        signal.signal(signal.SIGINT, before)
    try:
        assert silent.accepted.wait(120), "the job never checked the head on record"
        job.send_signal(signal.SIGINT)
        _, stderr = job.communicate(timeout=60)
    finally:
        if job.poll() is None:
            job.kill()
        silent.close()
    assert job.returncode == 130
    assert error_lines(stderr)[-1] == "error: interrupted"
    assert not (tmp_path / "out").exists()  # the lock released, the empty folder it made removed


# ---------------------------------------------------------------------------- 2. two jobs on one output
def test_a_second_job_on_the_same_output_stops_at_once_naming_the_first(ray_tmp, tmp_path):
    root, _ = ray_tmp
    data = one_image_folder(tmp_path / "data")
    out = tmp_path / "out"
    first = subprocess.Popen(job_args(data, out, "--set", "niter=40", "--quiet"), env=job_env(root),
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not (out / LOCK_NAME).exists() and first.poll() is None and time.monotonic() < deadline:
            time.sleep(0.2)
        holder = read_lock(str(out / LOCK_NAME))
        assert holder is not None and holder.pid == first.pid
        second = subprocess.run(job_args(data, out, "--quiet"), env=job_env(root), capture_output=True, text=True,
                                timeout=120)
        assert first.poll() is None, "the first job ended before the second one tried: the test proves nothing"
        assert second.returncode == 1
        lines = error_lines(second.stderr)
        assert len(lines) == 1 and "is in use by job" in lines[0] and f"pid {first.pid}" in lines[0], second.stderr
        other = acquire(str(tmp_path / "other_out"), "another job")  # other outputs are not affected
        release(other, str(tmp_path / "other_out"))
        stdout, stderr = first.communicate(timeout=300)
    finally:
        if first.poll() is None:
            first.kill()
    assert first.returncode == 0, (stdout + stderr)[-3000:]
    runs = pd.read_parquet(out / "runs.parquet")
    assert len(runs) == 1 and runs["status"].tolist() == ["ok"]
    assert not (out / LOCK_NAME).exists()


def test_a_stale_lock_is_taken_over_and_a_live_one_is_not(tmp_path):
    out = str(tmp_path / "out")
    gone = subprocess.Popen(["true"])
    gone.wait()  # a finished process: its pid names no process now
    os.makedirs(out)

    def plant(**fields) -> None:
        info = {"host": socket.gethostname(), "pid": os.getpid(), "start_time": "2026-01-01T00:00:00+00:00",
                "heartbeat": time.time(), "job": "earlier job", "token": "t0", **fields}
        Path(lock_url(out)).write_text(json.dumps(info))

    plant(pid=gone.pid)
    held = acquire(out, "new job")
    assert "its process is gone" in held.note and read_lock(lock_url(out)).token == held.info.token
    release(held, out)
    assert not Path(lock_url(out)).exists()
    plant(host="elsewhere", heartbeat=time.time() - 3600)  # another host's job that stopped beating
    held = acquire(out, "new job")
    assert "no heartbeat for" in held.note
    release(held, out)
    plant()  # this very process, beating now: a running job
    with pytest.raises(OutputInUseError, match="in use by job 'earlier job'"):
        acquire(out, "new job")


def test_the_heartbeat_is_renewed_while_the_job_runs(tmp_path, monkeypatch):
    import pipeline.lock as lock

    monkeypatch.setattr(lock, "HEARTBEAT_S", 0.05)
    out = str(tmp_path / "out")
    with hold_output(out, "beating job") as held:
        deadline = time.monotonic() + 20
        while read_lock(held.url).heartbeat == held.info.heartbeat and time.monotonic() < deadline:
            time.sleep(0.05)
        assert read_lock(held.url).heartbeat > held.info.heartbeat
        assert read_lock(held.url).token == held.info.token
    assert not Path(lock_url(out)).exists()


# ---------------------------------------------------------------------------- 3. a damaged checkpoint
def train_spec(image: str, model: Path) -> TrainSpec:
    return TrainSpec(image_url=image, image_id="x", variant="full", config=CFG, model_url=str(model),
                     plot_url=str(model.parent / "loss.png"))


@pytest.mark.parametrize("damaged", ["model.pt", "model.json"])
def test_a_damaged_checkpoint_is_set_aside_and_the_pyramid_retrained(tmp_path, damaged):
    image = write_png(tmp_path / "a.png", synthetic_image(32, 32, seed=3))
    model = tmp_path / "models" / "full"
    assert train_variant(train_spec(image, model)).row["status"] == "ok"
    (model / damaged).write_bytes((model / damaged).read_bytes()[:50])  # truncated, as by a full disk
    row = train_variant(train_spec(image, model)).row
    assert row["status"] == "ok" and row["resumed_from_scale"] == 0, row.get("error")
    aside = [p for p in model.parent.iterdir() if p.name.startswith("full.damaged-")]
    assert len(aside) == 1 and len((aside[0] / damaged).read_bytes()) == 50  # kept, not deleted
    assert "damaged checkpoint" in row["note"] and str(aside[0]) in row["note"] and "from scratch" in row["note"]
    assert SinGAN.load(str(model)).num_stages == row["num_scales"]


def test_a_failed_row_carries_no_resumed_from_scale(tmp_path):
    image = write_png(tmp_path / "small.png", synthetic_image(8, 8))
    row = train_variant(train_spec(image, tmp_path / "m")).row
    assert row["status"] == "failed" and row["error_type"] == "ImageError"
    assert "resumed_from_scale" not in row and "num_scales" not in row


# ---------------------------------------------------------------------------- 4. one line, not a traceback
@pytest.fixture(scope="module")
def refused_model(tiny_model, tmp_path_factory):
    """A model folder whose model.pt holds a pickle that would write a file when unpickled."""
    root = tmp_path_factory.mktemp("refused")
    shutil.copytree(tiny_model[1], root / "model")
    marker = root / "side_effect_ran"

    class Evil:
        def __reduce__(self):
            return (Path.write_text, (marker, "ran"))

    torch.save({"z_star": Evil()}, root / "model" / "model.pt")
    return root / "model", marker


@pytest.mark.parametrize("command", ["sample", "reconstruct", "eval", "animate"])
def test_a_model_file_refused_by_the_weights_only_loader_is_one_line(refused_model, tmp_path, command):
    model, marker = refused_model
    real = write_png(tmp_path / "real.png", synthetic_image(32, 32))
    args = {"sample": ["sample", str(model), "--out", str(tmp_path / "s")],
            "reconstruct": ["reconstruct", str(model), "--out", str(tmp_path / "r.png")],
            "eval": ["eval", str(model), "--real", real, "--metrics", "swd"],
            "animate": ["animate", str(model), "--out", str(tmp_path / "a.gif")]}[command]
    res = runner.invoke(app, args)
    assert res.exit_code == 1
    lines = error_lines(res.output)  # `eval` says first which model it draws from
    assert "Traceback" not in res.output and [line for line in lines if line.startswith("error: ")] == lines[-1:]
    assert "refused by the weights-only loader" in lines[-1] and len(lines[-1]) < 300
    assert not marker.exists()


def test_an_output_that_is_a_file_or_not_writable_is_one_line_before_anything_starts(tmp_path):
    from pipeline.run import run_dataset

    data = one_image_folder(tmp_path / "data")
    afile = tmp_path / "results.txt"
    afile.write_text("not a folder")
    for out in (afile, afile / "sub"):
        with pytest.raises(ValueError, match="is a file, not a folder"):
            run_dataset(str(data), str(out), CFG, progress=False)
    done = subprocess.run(job_args(data, afile), capture_output=True, text=True, timeout=120)
    assert done.returncode == 1 and error_lines(done.stderr) == [f"error: --out {afile} is a file, not a folder"]
    assert afile.read_text() == "not a folder"


@pytest.mark.skipif(os.geteuid() == 0, reason="root may write anywhere: no folder is unwritable to it")
def test_an_unwritable_output_folder_is_one_line(tmp_path):
    from pipeline.run import run_dataset

    data = one_image_folder(tmp_path / "data")
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        with pytest.raises(ValueError, match="is not writable"):
            run_dataset(str(data), str(locked / "out"), CFG, progress=False)
    finally:
        locked.chmod(0o700)


# ---------------------------------------------------------------------------- 5. process-local filesystems
def test_memory_urls_are_refused_for_the_ray_jobs(tmp_path):
    from pipeline.run import run_dataset

    data = one_image_folder(tmp_path / "data")
    with pytest.raises(ValueError, match="lives in one process"):
        run_dataset(str(data), "memory://results", CFG, progress=False)
    with pytest.raises(ValueError, match="INPUT memory://photos"):
        run_dataset("memory://photos", str(tmp_path / "out"), CFG, progress=False)
    done = subprocess.run(job_args(data, "memory://results"), capture_output=True, text=True, timeout=120)
    lines = error_lines(done.stderr)
    assert done.returncode == 1 and len(lines) == 1 and "--out memory://results" in lines[0]
    assert not (tmp_path / "out").exists()


# ---------------------------------------------------------------------------- 3 + 6 through the pipeline
def test_the_job_lists_files_not_taken_and_sets_a_damaged_checkpoint_aside(local_ray, tmp_path):
    from pipeline.run import run_dataset

    data = one_image_folder(tmp_path / "data", seed=7)
    shutil.copy(data / "a.png", data / "a_again.png")
    (data / "anim.gif").write_bytes(b"GIF89a not taken")
    out = tmp_path / "out"
    model = out / "models" / f"{content_hash(str(data / 'a.png'))}-{CFG.hash()}" / "full"
    model.mkdir(parents=True)
    (model / "model.json").write_text('{"format_version": 1, "stag')  # a checkpoint cut short
    (model / "model.pt").write_bytes(b"PK\x03\x04 truncated")
    summary = run_dataset(f"file://{data}", f"file://{out}", CFG, samples=0, progress=False)
    assert (summary.ok, summary.failed, summary.skipped) == (1, 0, 1)
    row = summary.runs.iloc[0]
    assert row["source_uri"] == f"file://{data}/a.png" and row["model_uri"] == f"file://{model}"  # as given
    assert "damaged checkpoint" in row["note"] and row["resumed_from_scale"] == 0
    assert any("damaged checkpoint" in note for note in summary.notes)
    assert sorted(p.name.split("-")[0] for p in model.parent.iterdir()) == ["full", "full.damaged"]
    skipped = summary.read("skipped").set_index("source_uri")
    assert skipped.loc[f"file://{data}/anim.gif", "reason"] == "extension"
    assert skipped.loc[f"file://{data}/a_again.png", "reason"] == "duplicate"
    assert skipped.loc[f"file://{data}/a_again.png", "same_as"] == f"file://{data}/a.png"
    assert summary.not_taken == {"duplicate": 1, "extension": 1}
    from pipeline.progress import counts_line

    assert "files not taken: 1 same bytes as another file, 1 not an image type" in counts_line(summary)
    (data / "anim.gif").unlink()  # the next job on the same input: the gif's old row goes
    again = run_dataset(f"file://{data}", f"file://{out}", CFG, samples=0, progress=False)
    assert list(again.read("skipped")["reason"]) == ["duplicate"] and again.skipped == 2


# ---------------------------------------------------------------------------- 7. quiet where nothing is wrong
def test_the_sifid_note_is_short_and_said_once(local_ray, tmp_path, monkeypatch, capsys):
    from pipeline.run import run_dataset
    from singan_core.metrics import MissingWeightsError

    def no_weights(source=None, download=True):
        raise MissingWeightsError("SIFID needs the Inception-v3 weights (a long explanation)")

    monkeypatch.setattr("singan_core.metrics.resolve_inception_weights", no_weights)
    monkeypatch.delenv("SINGAN_INCEPTION_WEIGHTS", raising=False)
    data = one_image_folder(tmp_path / "data", seed=8)
    summary = run_dataset(str(data), str(tmp_path / "out"), CFG, samples=2, metrics=("sifid", "swd"), progress=True)
    printed = capsys.readouterr().out
    notes = [line for line in printed.splitlines() if "SIFID" in line]
    assert len(notes) == 1 and len(notes[0]) < 200 and "--inception-weights" in notes[0], notes
    assert summary.ok == 1
