"""The dataset job: discovery, Parquet tables, MLflow runs, skipping, fault tolerance, High-Res, GPU packing,
and `ray job submit` against a head started (and stopped) here.

One local Ray with 2 CPUs is shared by the tests of this module; the job-submission test starts its own head
(127.0.0.1, dedicated ports and temp dir, RAY_AUTH_MODE=disabled) and kills exactly that head's processes.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
import torch
from PIL import Image

from pipeline import results as rs
from pipeline.cluster import TaskResources, plan_resources
from pipeline.dataset import content_hash, discover_images, identify
from pipeline.plan import sort_out
from pipeline.tasks import FAULT_ENV
from singan_core.config import preset
from singan_core.singan import SinGAN

from .conftest import synthetic_image, write_png

torch.set_num_threads(1)
REPO = Path(__file__).resolve().parents[1]
PYTHON = sys.executable
JOB = str(REPO / "jobs" / "train_dataset.py")
CFG = preset("test").replace(niter=8)  # 3 scales on a 32 px image, about a second each
NO_SIFID = ("swd", "patch_fd", "diversity")


def make_dataset(folder: Path) -> Path:
    """Two good images (one in a subfolder, upper-case extension), a copy of one, a corrupt file, a too-small
    image, a text file and a hidden image."""
    (folder / "sub").mkdir(parents=True)
    (folder / ".hidden").mkdir()
    write_png(folder / "a.png", synthetic_image(32, 40, seed=1))
    write_png(folder / "sub" / "b.PNG", synthetic_image(36, 32, seed=2))
    write_png(folder / "sub" / "a_copy.png", synthetic_image(32, 40, seed=1))
    (folder / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not really a JPEG")
    write_png(folder / "small.png", synthetic_image(8, 8, seed=3))
    (folder / "notes.txt").write_text("not an image")
    write_png(folder / ".hidden" / "c.png", synthetic_image(32, 32, seed=4))
    return folder


# ---------------------------------------------------------------------------- no Ray needed
def test_discovery_is_recursive_case_insensitive_and_skips_hidden_and_output(tmp_path):
    data = make_dataset(tmp_path / "data")
    (data / "out" / "samples").mkdir(parents=True)
    write_png(data / "out" / "samples" / "sample_0000.png", synthetic_image(32, 32))
    found = discover_images(str(data), exclude=[str(data / "out" / "samples")])
    names = sorted(Path(p).relative_to(data).as_posix() for p in found)
    assert names == ["a.png", "corrupt.jpg", "small.png", "sub/a_copy.png", "sub/b.PNG"]
    assert discover_images(str(data / "a.png")) == [str(data / "a.png")]
    with pytest.raises(FileNotFoundError, match="no such file"):
        discover_images(str(tmp_path / "nowhere"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        discover_images(str(tmp_path / "empty"))


def test_content_hash_names_bytes_not_paths(tmp_path):
    data = make_dataset(tmp_path / "data")
    assert content_hash(str(data / "a.png")) == content_hash(str(data / "sub" / "a_copy.png"))
    assert content_hash(str(data / "a.png")) != content_hash(str(data / "sub" / "b.PNG"))
    items = [identify(str(p)) for p in (data / "a.png", data / "sub" / "a_copy.png", data / "sub" / "b.PNG")]
    triage = sort_out(items, previous={items[2].image_id: "ok"})
    assert [i.url for i in triage.todo] == [str(data / "a.png")]
    assert triage.skipped == 2 and "same bytes as" in triage.notes[0]
    assert [(r["source_uri"], r["reason"], r["same_as"]) for r in triage.not_taken] == [
        (str(data / "sub" / "a_copy.png"), "duplicate", str(data / "a.png"))]
    gone = identify(str(tmp_path / "gone.png"))
    assert gone.error and "cannot read" in gone.error and gone.image_id.startswith("u")


def test_replacing_a_group_never_duplicates_rows(tmp_path):
    url = str(tmp_path / "samples.parquet")

    def rows(image_id, n):
        return [{"image_id": image_id, "config_hash": "c", "variant_tag": "", "variant": "full", "sample_index": i,
                 "sample_uri": f"{image_id}/{i}.png", "height": 4, "width": 5} for i in range(n)]

    assert rs.replace_groups(url, rows("x", 3) + rows("y", 2), rs.SAMPLES) == 5
    assert rs.replace_groups(url, rows("x", 4), rs.SAMPLES) == 6  # x replaced, y kept
    assert rs.replace_groups(url, [], rs.SAMPLES, groups=[("y", "c", "", "full")]) == 4  # y cleared
    table = pq.read_table(url)
    assert table.schema.equals(rs.SAMPLES)
    assert sorted(table.column("image_id").to_pylist()) == ["x"] * 4
    assert not [p for p in tmp_path.iterdir() if ".tmp" in p.name]


def test_resource_requests_the_cluster_cannot_meet_fail_fast():
    cpu_node, gpu_node = {"CPU": 2.0}, {"CPU": 8.0, "GPU": 1.0}
    assert plan_resources([gpu_node], 2, None) == TaskResources(2, 0.25)
    assert plan_resources([gpu_node], 2, 0.5) == TaskResources(2, 0.5)
    with pytest.raises(ValueError, match="more than any node has"):
        plan_resources([cpu_node], 4, 0)
    with pytest.raises(ValueError, match="more than any node has"):
        plan_resources([gpu_node], 1, 2)
    with pytest.raises(ValueError, match="whole number"):
        plan_resources([gpu_node], 1, 1.5)
    with pytest.raises(ValueError, match="both"):
        plan_resources([cpu_node, {"CPU": 1.0, "GPU": 1.0}], 2, 0.5)


def test_gpus_are_asked_for_where_the_autoscaler_can_add_them_and_dropped_where_it_never_can():
    head, gpu_type, cpu_type = {"CPU": 2.0, "GPU": 0.0}, {"CPU": 4.0, "GPU": 1.0}, {"CPU": 16.0}
    # A fresh autoscaling cluster: only the CPU head is up, the GPU workers are a node type: ask, and wait.
    scaling = plan_resources([head], 1, None, node_types=[head, gpu_type])
    assert (scaling.num_cpus, scaling.num_gpus) == (1, 0.25) and "wait for the autoscaler" in scaling.note
    # A cluster that can never have a GPU: the CPU, with a note.
    never = plan_resources([head], 1, None, node_types=[cpu_type])
    assert never.num_gpus == 0 and "can add none" in never.note
    assert plan_resources([head], 1, 0) == TaskResources(1, 0.0)
    # An explicit --gpus-per-task is asked for as given, even with no GPU in sight (the resource timeout guards it).
    explicit = plan_resources([head], 1, 0.5)
    assert explicit.num_gpus == 0.5 and "wait" in explicit.note
    with pytest.raises(ValueError, match="more than any node has"):
        plan_resources([head], 1, 2, node_types=[gpu_type])
    with pytest.raises(ValueError, match="cpus-per-task 8 is more than any node has"):
        plan_resources([head], 8, None, node_types=[gpu_type])
    with pytest.raises(ValueError, match="no node has both 8 CPUs and 0.25 GPUs"):
        plan_resources([head], 8, None, node_types=[gpu_type, cpu_type])


def test_the_node_types_come_from_the_autoscaler_or_the_launchers_config_on_the_head(local_ray, tmp_path):
    from pipeline.cluster import addable_node_types, slots

    assert addable_node_types(bootstrap=str(tmp_path / "none.yaml")) == []  # a local Ray: nothing can be added
    # On a `ray up cluster.yaml` head (the launcher's copy of cluster.yaml): 8 GPU workers may be added.
    workers = addable_node_types(bootstrap=str(REPO / "cluster.yaml"))
    assert workers == [{"CPU": 4.0, "GPU": 1.0}] * 8
    head = {"CPU": 2.0, "GPU": 0.0}
    res = plan_resources([head], 1, None, workers)
    assert res.num_gpus == 0.25 and slots([head, *workers], res) == 32  # the window counts what may be added


def test_packs_group_images_by_training_shape_and_leave_bad_input_alone(tmp_path):
    from pipeline.dataset import ImageItem
    from pipeline.packs import make_packs, make_units, pack_size_for, training_shapes

    paths = {"a0": (32, 40), "b": (36, 32), "a1": (64, 80), "a2": (32, 40), "small": (8, 8), "a3": (32, 40)}
    for name, (h, w) in paths.items():
        write_png(tmp_path / f"{name}.png", synthetic_image(h, w, seed=len(name) + h))
    (tmp_path / "corrupt.png").write_bytes(b"not a png")
    items = [identify(str(tmp_path / f"{name}.png")) for name in ("a0", "b", "corrupt", "a1", "a2", "small", "a3")]
    items.append(ImageItem(str(tmp_path / "gone.png"), "u1", "cannot read"))
    # 64x80 trains at 32x40's shapes: max_size=32 brings both to 26x32
    assert training_shapes(items[0].url, CFG) == training_shapes(items[3].url, CFG)
    names = [[os.path.basename(i.url) for i in pack] for pack in make_packs(items, CFG, 2, gpus=0)]
    assert names == [["a0.png", "a1.png"], ["b.png"], ["corrupt.png"], ["a2.png", "a3.png"], ["small.png"],
                     ["gone.png"]]
    assert all(len(p) == 1 for p in make_packs(items, CFG, None, gpus=0))  # the CPU default: one image a task
    on_gpu = make_packs(items, CFG, None, gpus=0.25)  # tiny images: all four of one shape fit in one pack
    assert [len(p) for p in on_gpu] == [4, 1, 1, 1, 1]
    assert [u.quadrants for u in make_units(items[:2], CFG, pack=None, gpus=0.25, highres=True)] == [4, 4]
    assert [u.quadrants for u in make_units(items[:2], CFG, pack=None, gpus=0, highres=True)] == [1, 1]
    # The default K on a GPU: the memory estimate of the finest scale, smaller for larger images.
    paper = preset("paper")
    birds = training_shapes_of(164, 244, paper)
    assert pack_size_for(birds, paper, 0.25) == 3 and pack_size_for(birds, paper, 1.0) == 14
    assert pack_size_for(training_shapes_of(32, 40, CFG), CFG, 0.25) == 16  # capped at PACK_MAX


def training_shapes_of(height: int, width: int, cfg):
    from singan_core.pyramid import pyramid_for

    return pyramid_for(height, width, cfg).shapes


def test_image_size_reads_the_header_as_load_image_decodes(tmp_path):
    from singan_core.images import image_size, load_image

    for h, w, ext in ((32, 40, "png"), (4100, 4200, "png"), (900, 700, "jpg")):  # 4100x4200: reduced by 2
        path = str(tmp_path / f"i{h}.{ext}")
        Image.fromarray(np.zeros((h, w, 3), np.uint8)).save(path)
        assert image_size(path) == tuple(load_image(path).shape[-2:])


def test_job_script_help_and_bad_input(tmp_path):
    shown = subprocess.run([PYTHON, JOB, "--help"], capture_output=True, text=True, env={**os.environ,
                           "COLUMNS": "200"})
    assert shown.returncode == 0
    for option in ("--out", "--preset", "--set", "--highres", "--samples", "--scale-h", "--scale-v", "--metrics",
                   "--inception-weights", "--tracking-uri", "--experiment", "--cpus-per-task", "--gpus-per-task",
                   "--address", "--seed", "--demo", "--pack", "--resource-timeout"):
        assert option in shown.stdout
    bad = subprocess.run([PYTHON, JOB, str(tmp_path / "missing"), "--out", str(tmp_path / "out")],
                         capture_output=True, text=True)
    assert bad.returncode == 1
    assert bad.stderr.strip().splitlines()[-1].startswith("error: ") and "no such file" in bad.stderr
    assert not (tmp_path / "out").exists()


def test_the_demo_trains_the_fast_preset_at_its_size_unless_told_otherwise():
    from pipeline.jobs import DEMO_MAX_SIZE, job_config
    from singan_core.devices import native_bfloat16, resolve_device

    precision = "bfloat16" if native_bfloat16(resolve_device(None)) else "float32"  # emulated bfloat16 is slower
    demo = preset("fast").replace(max_size=DEMO_MAX_SIZE, precision=precision)
    assert job_config(None, None, None, demo=True) == demo
    assert job_config(None, ["max_size=64"], 3, demo=True) == demo.replace(max_size=64, seed=3)
    assert job_config("quick", None, None, demo=True) == preset("quick")
    assert job_config(None, None, None, demo=False) == preset("paper")


# ---------------------------------------------------------------------------- the job end to end
@pytest.fixture(scope="module")
def job(local_ray, tmp_path_factory):
    """One job on the dataset (SIFID with random Inception weights), then the same job again."""
    from pipeline.run import run_dataset
    from singan_core.metrics import random_inception_state_dict

    root = tmp_path_factory.mktemp("job")
    data = make_dataset(root / "data")
    weights = root / "inception.pt"
    torch.save(random_inception_state_dict(), weights)
    kwargs = dict(samples=4, sample_batch=3, inception_weights=str(weights), progress=False)
    first = run_dataset(str(data), str(root / "out"), CFG, **kwargs)
    tables = {name: pd.read_parquet(rs.table_url(first.out, name)) for name in rs.TABLES}
    t0 = time.perf_counter()
    second = run_dataset(str(data), str(root / "out"), CFG, **kwargs)
    return first, tables, second, time.perf_counter() - t0


def test_job_counts_and_exit_code(job):
    first, _, _, _ = job
    assert (first.ok, first.failed, first.skipped) == (2, 2, 1)  # the copy of a.png is skipped
    assert first.exit_code == 1 and not first.interrupted
    assert any("a_copy.png: not taken (same bytes as" in n for n in first.notes)
    assert first.not_taken == {"duplicate": 1, "extension": 1}  # a_copy.png, notes.txt


def test_parquet_schemas_and_rows(job):
    first, tables, _, _ = job
    for name, schema in rs.TABLES.items():
        assert pq.read_schema(rs.table_url(first.out, name)).equals(schema), name
    runs = tables["runs"].set_index(tables["runs"]["source_uri"].map(lambda u: Path(u).name))
    assert sorted(runs.index) == ["a.png", "b.PNG", "corrupt.jpg", "small.png"]
    assert set(runs["variant"]) == {"full"} and set(runs["config_hash"]) == {CFG.hash()}
    for name in ("corrupt.jpg", "small.png"):
        row = runs.loc[name]
        assert row["status"] == "failed" and row["error_type"] == "ImageError" and row["error"]
    assert "min_size" in runs.loc["small.png", "error"]
    for name in ("a.png", "b.PNG"):
        row = runs.loc[name]
        assert row["status"] == "ok" and pd.isna(row["error"])
        assert row["num_scales"] == len(row["iterations_per_scale"]) == len(row["seconds_per_scale"]) >= 2
        assert list(row["iterations_per_scale"]) == [CFG.niter] * int(row["num_scales"])
        assert row["total_seconds"] >= sum(row["seconds_per_scale"]) * 0.99
        assert row["orig_height"] > 0 and row["train_height"] <= CFG.max_size and row["num_samples"] == 4
        assert row["start_time"] < row["end_time"] and row["device"] == "cpu" and row["mlflow_run_id"]
        assert json.loads(row["config_json"])["niter"] == CFG.niter
        assert Path(row["model_uri"], "model.json").exists()
    samples = tables["samples"]
    assert len(samples) == 8 and sorted(samples["sample_index"].unique()) == [0, 1, 2, 3]
    for _, s in samples.iterrows():
        with Image.open(s["sample_uri"]) as im:
            assert im.size == (s["width"], s["height"])
    assert set(samples.groupby(["image_id", "seed"]).size()) == {3, 1}  # chunks of sample_batch=3, one seed per chunk
    metrics = tables["metrics"]
    per_sample = metrics[metrics["sample_index"].notna()]
    assert per_sample.groupby("metric").size().to_dict() == {"patch_fd": 8, "sifid": 8, "swd": 8}
    assert per_sample["value"].notna().all()
    diversity = metrics[metrics["metric"] == "diversity"]
    assert len(diversity) == 2 and diversity["sample_index"].isna().all() and (diversity["value"] > 0).all()
    summary = tables["metrics_summary"]
    assert len(summary) == 8 and set(summary["count"]) == {1, 4}
    swd = summary[summary["metric"] == "swd"].set_index("image_id")["mean"]
    assert np.allclose(swd.sort_index(), per_sample[per_sample["metric"] == "swd"].groupby("image_id")["value"]
                       .mean().sort_index())


def test_mlflow_runs_metrics_artifacts_and_model_by_run_id(job):
    from mlflow import MlflowClient

    from pipeline.tracking import load_model

    first, tables, _, _ = job
    client = MlflowClient(tracking_uri=first.tracking_uri)
    assert first.tracking_uri == f"sqlite:///{first.out}/mlflow.db"
    children = client.search_runs([first.experiment_id], f"tags.mlflow.parentRunId = '{first.parent_run_id}'")
    assert len(children) == 4
    assert {r.info.run_id for r in children} == set(tables["runs"]["mlflow_run_id"])
    ok = [r for r in children if r.info.status == "FINISHED"]
    assert len(ok) == 2 and sum(r.info.status == "FAILED" for r in children) == 2
    run = ok[0]
    assert run.data.params["niter"] == str(CFG.niter)
    assert run.data.tags["variant"] == "full" and run.data.tags["epoch_decay"] == "False"
    assert run.data.tags["image_id"] in set(tables["runs"]["image_id"])
    for key in ("train_seconds_total", "final_loss_rec", "sifid_mean", "sifid_std", "swd_mean", "patch_fd_mean",
                "diversity"):
        assert key in run.data.metrics, key
    history = client.get_metric_history(run.info.run_id, "train_seconds")
    assert sorted(m.step for m in history) == list(range(int(run.data.metrics["num_scales"])))
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "model")}
    assert {"model/model.json", "model/model.pt"} <= artifacts
    assert {a.path for a in client.list_artifacts(run.info.run_id, "plots")} == {"plots/loss_curves.png",
                                                                                 "plots/sample_grid.png"}
    model = load_model(run.info.run_id, first.tracking_uri, device="cpu")
    assert model.sample(2, seed=1).shape[0] == 2
    parent = client.get_run(first.parent_run_id)
    assert parent.data.metrics["images_ok"] == 2 and parent.data.metrics["images_failed"] == 2


def test_rerun_adds_nothing_and_is_fast(job):
    from mlflow import MlflowClient

    first, tables, second, seconds = job
    assert (second.ok, second.failed, second.skipped, second.previously_failed) == (0, 0, 5, 2)
    assert second.exit_code == 1  # the bad inputs are still bad
    assert seconds < 15, f"re-run took {seconds:.1f} s"
    for name in rs.TABLES:
        again = pd.read_parquet(rs.table_url(first.out, name))
        assert len(again) == len(tables[name]), name
    assert len(second.runs) == 4
    client = MlflowClient(tracking_uri=first.tracking_uri)
    assert len(client.search_runs([first.experiment_id])) == 5  # the first job's parent and 4 children


def test_fail_fast_on_more_cpus_than_a_node_has(local_ray, tmp_path):
    from pipeline.run import run_dataset

    data = tmp_path / "data"
    data.mkdir()
    write_png(data / "a.png", synthetic_image(32, 32))
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match="cpus-per-task 3 is more than any node has"):
        run_dataset(str(data), str(tmp_path / "out"), CFG, num_cpus_per_task=3, progress=False)
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "out" / "runs.parquet").exists()


def test_killed_training_task_resumes_from_its_checkpoint(local_ray, tmp_path, monkeypatch):
    from pipeline.run import run_dataset

    data = tmp_path / "data"
    data.mkdir()
    write_png(data / "a.png", synthetic_image(32, 40, seed=5))
    monkeypatch.setenv(FAULT_ENV, "0")  # the first attempt dies right after saving scale 0
    summary = run_dataset(str(data), str(tmp_path / "out"), CFG, samples=2, metrics=(), progress=False)
    assert summary.ok == 1 and summary.exit_code == 0
    row = summary.runs.iloc[0]
    assert row["status"] == "ok" and row["resumed_from_scale"] == 1  # the retry found scale 0 done
    assert row["num_scales"] == len(row["seconds_per_scale"]) >= 2
    assert len(pd.read_parquet(summary.samples_path)) == 2
    assert pd.read_parquet(summary.metrics_path).empty  # metrics=(): none asked for


def test_a_pack_job_keeps_rows_models_and_samples_per_image(local_ray, tmp_path):
    """--pack 2 over three images of one training shape, one of another and a bad one: two packs of the first
    shape, the others alone; every row says its pack, and total_seconds is the pack's time / K."""
    from mlflow import MlflowClient

    from pipeline.run import run_dataset

    data = tmp_path / "data"
    data.mkdir()
    for i in range(3):
        write_png(data / f"same{i}.png", synthetic_image(32, 40, seed=20 + i))
    write_png(data / "other.png", synthetic_image(36, 32, seed=30))
    write_png(data / "small.png", synthetic_image(8, 8, seed=31))
    summary = run_dataset(str(data), str(tmp_path / "out"), CFG, samples=2, metrics=(), progress=False, pack=2)
    assert (summary.ok, summary.failed) == (4, 1)
    runs = summary.runs.assign(name=summary.runs["source_uri"].map(os.path.basename)).set_index("name")
    ok = runs[runs["status"] == "ok"]
    assert sorted(ok["pack_size"]) == [1, 1, 2, 2]
    packed = ok[ok["pack_size"] == 2]
    assert packed["pack_id"].nunique() == 1 and set(packed.index) <= {"same0.png", "same1.png", "same2.png"}
    assert ok["pack_id"].nunique() == 3 and ok.loc["other.png", "pack_size"] == 1
    assert list(ok["total_seconds"]) == pytest.approx(list(ok["pack_seconds"] / ok["pack_size"]))
    task_seconds = (ok["end_time"] - ok["start_time"]).dt.total_seconds()
    assert (ok["pack_seconds"] > 0).all() and (ok["pack_seconds"] <= task_seconds + 1e-3).all()  # the task's time
    assert runs.loc["small.png", "error_type"] == "ImageError"  # bad input: its failed row, as without packs
    samples = pd.read_parquet(summary.samples_path)
    assert samples.groupby("image_id").size().to_dict() == {i: 2 for i in ok["image_id"]}
    for row in ok.itertuples():  # one model per image, of that image's shape
        assert SinGAN.load(row.model_uri).shapes[-1] == (row.train_height, row.train_width)
    children = MlflowClient(tracking_uri=summary.tracking_uri).search_runs(
        [summary.experiment_id], f"tags.mlflow.parentRunId = '{summary.parent_run_id}'")
    assert sorted(r.data.tags.get("pack_size", "") for r in children if r.data.tags["status"] == "ok") == [
        "1", "1", "2", "2"]
    again = run_dataset(str(data), str(tmp_path / "out"), CFG, samples=2, metrics=(), progress=False, pack=2)
    assert (again.ok, again.failed, again.skipped) == (0, 0, 5)


def test_a_pack_killed_mid_way_resumes_from_its_last_finished_scale(local_ray, tmp_path, monkeypatch):
    from pipeline.run import run_dataset

    data = tmp_path / "data"
    data.mkdir()
    for i in range(2):
        write_png(data / f"p{i}.png", synthetic_image(32, 40, seed=40 + i))
    monkeypatch.setenv(FAULT_ENV, "0")  # the first attempt dies once the pack has saved scale 0 of both images
    summary = run_dataset(str(data), str(tmp_path / "out"), CFG, samples=1, metrics=(), progress=False, pack=2)
    assert summary.ok == 2 and summary.exit_code == 0
    runs = summary.runs
    assert list(runs["pack_size"]) == [2, 2] and runs["pack_id"].nunique() == 1
    assert list(runs["resumed_from_scale"]) == [1, 1]


def test_tasks_that_are_never_given_their_resources_stop_the_job_with_one_line(local_ray, tmp_path):
    """An explicit --gpus-per-task on a cluster without GPUs (a logical resource no node has): the tasks
    wait, and the job stops after --resource-timeout instead of waiting forever."""
    from pipeline.drive import ResourceTimeoutError
    from pipeline.run import run_dataset

    data = tmp_path / "data"
    data.mkdir()
    write_png(data / "a.png", synthetic_image(32, 40, seed=50))
    with pytest.raises(ResourceTimeoutError) as caught:
        run_dataset(str(data), str(tmp_path / "out"), CFG, samples=1, metrics=(), progress=False,
                    gpus_per_task=0.5, resource_timeout=1.0)
    message = str(caught.value)
    assert "\n" not in message and "within --resource-timeout 1 s" in message and "0.5 GPU" in message
    assert not (tmp_path / "out" / "models").exists()  # nothing trained


def test_a_rerun_skips_done_images_and_bad_input_but_retries_other_failures():
    from dataclasses import replace

    from pipeline.plan import Layout, Plan, previous_results

    plan = Plan(CFG, Layout("/o"), samples=4, resources=TaskResources(1, 0))
    rows = [("ok1", "ok", None, CFG.hash(), ""), ("bad", "failed", "ImageError", CFG.hash(), ""),
            ("crashed", "failed", "WorkerCrashedError", CFG.hash(), ""), ("other_cfg", "ok", None, "x", ""),
            ("other_tag", "ok", None, CFG.hash(), "t")]
    runs = pd.DataFrame([{"image_id": i, "variant": "full", "status": st, "error_type": et, "config_hash": h,
                          "variant_tag": t} for i, st, et, h, t in rows])
    assert previous_results(runs, plan) == {"ok1": "ok", "bad": "failed"}
    highres = replace(plan, highres=True)
    partial = pd.DataFrame([{"image_id": "hr", "variant": v, "status": "ok", "error_type": None,
                             "config_hash": CFG.hash(), "variant_tag": ""} for v in ("base", "q0", "q1", "q2", "q3")])
    assert previous_results(partial, highres) == {}  # no stitched row yet: redo


def test_highres_trains_five_pyramids_and_stitches(local_ray, tmp_path):
    from mlflow import MlflowClient

    from pipeline.run import run_dataset

    data = tmp_path / "data"
    data.mkdir()
    write_png(data / "wide.png", synthetic_image(48, 64, seed=6))
    summary = run_dataset(str(data), str(tmp_path / "out"), CFG.replace(niter=4), highres=True, samples=2,
                          metrics=("swd", "diversity"), progress=False)
    assert summary.ok == 1
    runs = summary.runs.set_index("variant")
    assert sorted(runs.index) == ["base", "q0", "q1", "q2", "q3", "stitched"]
    assert (runs["status"] == "ok").all()
    assert runs.loc["base", "train_height"] == 2 * runs.loc["q0", "train_height"]
    assert runs.loc["stitched", "total_seconds"] == pytest.approx(runs.loc[["base", "q0", "q1", "q2", "q3"],
                                                                          "total_seconds"].sum())
    samples = pd.read_parquet(summary.samples_path)
    assert list(samples["variant"]) == ["stitched"] * 2
    assert set(samples["height"]) == {runs.loc["base", "train_height"]}
    assert set(samples["width"]) == {runs.loc["base", "train_width"]}
    metrics = pd.read_parquet(summary.metrics_path)
    assert set(metrics["variant"]) == {"stitched"} and set(metrics["metric"]) == {"swd", "diversity"}
    children = MlflowClient(tracking_uri=summary.tracking_uri).search_runs(
        [summary.experiment_id], f"tags.mlflow.parentRunId = '{summary.parent_run_id}'")
    assert sorted(r.data.tags["variant"] for r in children) == ["base", "q0", "q1", "q2", "q3", "stitched"]


# ---------------------------------------------------------------------------- a head started here
def _free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


def _stop_group(pgid: int) -> None:
    """Stop the processes of the head started here (its own process group), never any other Ray."""
    for sig, wait in ((signal.SIGTERM, 3), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.time() + wait
        while time.time() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.5)


def test_ray_job_submit_on_a_head_with_one_logical_gpu_packs_four_training_tasks(tmp_path):
    """`ray start --head` on 127.0.0.1 with 4 CPUs and 1 logical GPU, then `ray job submit` of the job on four
    images with --gpus-per-task 0.25: the four trainings run at once and fall back to the CPU (no CUDA)."""
    data = tmp_path / "data"
    data.mkdir()
    for i in range(4):
        write_png(data / f"img{i}.png", synthetic_image(32, 32, seed=10 + i))
    gcs, dashboard, client, agent = _free_ports(4)
    temp = f"/tmp/rt-{os.getpid()}-{gcs}"  # short: Ray's socket paths must stay under 108 characters
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}
    ray_bin = str(Path(PYTHON).parent / "ray")
    # A new session: the head's daemons inherit this process group, so stopping it stops exactly them.
    head = subprocess.Popen(
        [ray_bin, "start", "--head", "--node-ip-address", "127.0.0.1", "--port", str(gcs), "--dashboard-host",
         "127.0.0.1", "--dashboard-port", str(dashboard), "--ray-client-server-port", str(client),
         "--dashboard-agent-listen-port", str(agent), "--num-cpus", "4", "--num-gpus", "1", "--temp-dir", temp,
         "--include-dashboard", "true", "--disable-usage-stats"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        started = head.communicate(timeout=180)[0]
        assert head.returncode == 0, started[-2000:]
        out = tmp_path / "out"
        submitted = subprocess.run(
            [ray_bin, "job", "submit", "--address", f"http://127.0.0.1:{dashboard}", "--", PYTHON, JOB, str(data),
             "--out", str(out), "-p", "test", "--set", "niter=20", "--samples", "0", "--gpus-per-task", "0.25",
             "--pack", "1", "--quiet"],
            env=env, capture_output=True, text=True, timeout=600,
        )
        assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-3000:]
        assert "images: 4 ok" in submitted.stdout
        runs = pd.read_parquet(out / "runs.parquet")
        assert len(runs) == 4 and (runs["status"] == "ok").all() and set(runs["device"]) == {"cpu"}
        assert runs["start_time"].max() < runs["end_time"].min(), "the four 0.25-GPU tasks did not overlap"
    finally:
        _stop_group(head.pid)
        shutil.rmtree(temp, ignore_errors=True)
