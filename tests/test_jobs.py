"""The benchmark and augmentation jobs (their table logic on synthetic Parquet inputs, then one small
run of each on Ray) and the cluster-launcher config."""

from __future__ import annotations

import copy
import importlib.util
import json
import math
import os
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from pipeline.augment import (
    MANIFEST_COLUMNS,
    SampleDataset,
    build_manifest,
    read_manifest,
    relative_path,
    write_manifest,
)
from pipeline.compare import TOTAL, compare_runs, format_table, primary_runs, resolve_pair, total_summary

from .conftest import synthetic_image, write_png

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------- synthetic job tables
def runs_table(rows: list[tuple], variant: str = "full") -> pd.DataFrame:
    """(image_id, status, total_seconds, iterations_per_scale) rows in runs.parquet's shape."""
    return pd.DataFrame([
        {"image_id": i, "source_uri": f"/data/{i}.png", "variant": variant, "status": s, "total_seconds": t,
         "iterations_per_scale": it}
        for i, s, t, it in rows
    ])


def metrics_table(values: dict[tuple[str, str], list[float]], variant: str = "full") -> pd.DataFrame:
    """{(image_id, metric): per-sample values} in metrics.parquet's shape."""
    return pd.DataFrame([
        {"image_id": i, "variant": variant, "sample_index": k, "metric": m, "value": v}
        for (i, m), vals in values.items() for k, v in enumerate(vals)
    ])


@pytest.fixture
def pair_tables():
    runs_a = runs_table([("x", "ok", 10.0, [10, 10]), ("y", "ok", 20.0, [10, 10, 10]), ("z", "failed", 5.0, None)])
    runs_b = runs_table([("x", "ok", 6.0, [10, 7]), ("y", "ok", 15.0, [10, 9, 8]), ("z", "ok", 3.0, [4])])
    metrics_a = metrics_table({("x", "swd"): [1.0, 2.0], ("y", "swd"): [3.0], ("z", "swd"): [9.0]})
    metrics_b = metrics_table({("x", "swd"): [2.0, 2.0], ("y", "swd"): [2.0], ("z", "swd"): [1.0]})
    return runs_a, runs_b, metrics_a, metrics_b


def row(table: pd.DataFrame, image_id: str) -> pd.Series:
    return table[table["image_id"] == image_id].iloc[0]


# ---------------------------------------------------------------------------- the comparison
def test_comparison_gives_time_saved_per_image_and_in_total(pair_tables):
    table = compare_runs(*pair_tables)
    assert list(table["image_id"]) == ["x", "y", "z", TOTAL]
    x = row(table, "x")
    assert (x["seconds_a"], x["seconds_b"], x["seconds_saved"]) == (10.0, 6.0, 4.0)
    assert x["percent_saved"] == pytest.approx(40.0)
    assert (x["iterations_a"], x["iterations_b"]) == (20, 17)
    total = row(table, TOTAL)
    # z failed in A: left out of the totals, and its A time (of a failed run) is not shown
    assert total["images"] == 2
    assert (total["seconds_a"], total["seconds_b"], total["seconds_saved"]) == (30.0, 21.0, 9.0)
    assert total["percent_saved"] == pytest.approx(30.0)
    assert math.isnan(row(table, "z")["seconds_a"]) and not row(table, "z")["ok_both"]


def test_comparison_gives_metric_deltas_of_the_per_image_means(pair_tables):
    table = compare_runs(*pair_tables)
    x, y, total = row(table, "x"), row(table, "y"), row(table, TOTAL)
    assert (x["swd_a"], x["swd_b"], x["swd_delta"]) == (1.5, 2.0, 0.5)
    assert y["swd_delta"] == -1.0
    assert total["swd_delta"] == pytest.approx(-0.25)  # mean over x and y only (z failed in A)
    summary = total_summary(table)
    assert summary["total_seconds_saved"] == 9.0 and summary["total_swd_delta"] == pytest.approx(-0.25)


def test_comparison_without_metrics_and_with_an_image_missing_from_one_side():
    runs_a = runs_table([("x", "ok", 8.0, [5, 5]), ("w", "ok", 4.0, [5])])
    runs_b = runs_table([("x", "ok", 10.0, [5, 5])])
    table = compare_runs(runs_a, runs_b)
    assert row(table, "x")["seconds_saved"] == -2.0  # B slower: a negative saving
    assert pd.isna(row(table, "w")["status_b"]) and not row(table, "w")["ok_both"]
    assert row(table, TOTAL)["seconds_a"] == 8.0
    assert not [c for c in table.columns if c.endswith("_delta")]


def test_comparison_of_highres_runs_uses_the_stitched_row():
    parts = [("x", "ok", 1.0, [3])]
    runs_a = pd.concat([runs_table(parts, v) for v in ("base", "q0")] + [runs_table([("x", "ok", 50.0, None)],
                                                                                  "stitched")])
    runs_b = pd.concat([runs_table([("x", "ok", 30.0, None)], "stitched"), runs_table(parts, "base")])
    metrics_a = pd.concat([metrics_table({("x", "swd"): [1.0]}, "stitched"), metrics_table({("x", "swd"): [7.0]})])
    metrics_b = metrics_table({("x", "swd"): [3.0]}, "stitched")
    assert list(primary_runs(runs_a)["variant"]) == ["stitched"]
    table = compare_runs(runs_a, runs_b, metrics_a, metrics_b)
    assert row(table, "x")["seconds_saved"] == 20.0
    assert row(table, "x")["swd_delta"] == 2.0  # the 7.0 of another variant is not mixed in


def test_comparison_survives_parquet_and_prints(pair_tables, tmp_path):
    table = compare_runs(*pair_tables)
    table.to_parquet(tmp_path / "comparison.parquet", index=False)
    back = pd.read_parquet(tmp_path / "comparison.parquet")
    assert back["seconds_saved"].tolist()[:2] == [4.0, 5.0]
    text = format_table(table)
    assert "TOTAL" in text and "x.png" in text and "40.0" in text and "swd_delta" in text


def test_comparison_rejects_tables_without_the_needed_columns(pair_tables):
    runs_a, runs_b, *_ = pair_tables
    with pytest.raises(ValueError, match="total_seconds"):
        compare_runs(runs_a.drop(columns="total_seconds"), runs_b)


# ---------------------------------------------------------------------------- the two variants
def test_default_pair_is_epoch_decay_off_against_on():
    a, b = resolve_pair(None, None, "quick")
    assert (a.config.epoch_decay, b.config.epoch_decay) == (False, True)
    assert a.config.niter == b.config.niter == 150  # both on the base preset


def test_pair_from_presets_and_overrides():
    a, b = resolve_pair(["paper", "niter=100"], ["ima206", "epoch_decay=on"], "quick")
    assert (a.config.niter, a.config.max_size) == (100, 250)
    assert (b.config.niter, b.config.gsteps, b.config.epoch_decay) == (1000, 1, True)


@pytest.mark.parametrize(
    ("a", "b", "message"),
    [
        (["paper", "quick"], None, "at most one preset"),
        (["nosuch"], None, "neither a preset"),
        (["epoch_decay=false"], ["epoch_decay=off"], "same config"),
        (["nosuch_field=1"], None, "unknown config field"),
    ],
)
def test_bad_pairs_are_one_line_errors(a, b, message):
    with pytest.raises(ValueError, match=message):
        resolve_pair(a, b, "quick")


# ---------------------------------------------------------------------------- the manifest
def samples_table(out: str, image_ids: list[str], n: int) -> pd.DataFrame:
    return pd.DataFrame([
        {"image_id": i, "variant": "full", "sample_index": k, "seed": 7, "batch_size": n, "index_in_batch": k,
         "sample_uri": f"{out}/samples/{i}/full/sample_{k:04d}.png", "height": 24, "width": 30}
        for i in image_ids for k in range(n)
    ])


def test_manifest_keeps_samples_of_successful_images_with_relative_paths(tmp_path):
    out = str(tmp_path / "aug")
    runs = runs_table([("x", "ok", 1.0, [1]), ("y", "failed", 1.0, [1])])
    table = build_manifest(samples_table(out, ["y", "x"], 3), runs, out)
    assert table.columns.tolist()[: len(MANIFEST_COLUMNS)] == MANIFEST_COLUMNS
    assert table["image_id"].unique().tolist() == ["x"]
    assert table["sample_path"].tolist() == [f"samples/x/full/sample_{k:04d}.png" for k in range(3)]
    assert table["source_uri"].unique().tolist() == ["/data/x.png"]
    assert all(os.path.isabs(u) for u in table["sample_uri"])
    assert table["index_in_batch"].tolist() == [0, 1, 2]


def test_manifest_paths_on_object_storage():
    assert relative_path("memory://bucket/aug/samples/a.png", "memory://bucket/aug") == "samples/a.png"
    assert relative_path("memory://elsewhere/a.png", "memory://bucket/aug") == "memory://elsewhere/a.png"
    assert relative_path("/tmp/a.png", "memory://bucket/aug") == "/tmp/a.png"


def test_manifest_round_trip_and_dataset(tmp_path):
    out = tmp_path / "aug"
    (out / "samples" / "x" / "full").mkdir(parents=True)
    for k in range(2):
        write_png(out / "samples" / "x" / "full" / f"sample_{k:04d}.png", synthetic_image(24, 30, seed=k))
    table = build_manifest(samples_table(str(out), ["x"], 2), runs_table([("x", "ok", 1.0, [1])]), str(out))
    url = write_manifest(table, str(out))
    assert url.endswith("manifest.parquet") and not [p for p in os.listdir(out) if ".tmp-" in p]
    assert read_manifest(str(out)).equals(read_manifest(url))
    data = SampleDataset(str(out))
    image, index = data[1]
    assert len(data) == 2 and index == 1 and tuple(image.shape) == (3, 24, 30)
    assert -1.0 <= float(image.min()) < float(image.max()) <= 1.0


def test_manifest_rejects_a_samples_table_without_sizes():
    with pytest.raises(ValueError, match="height"):
        build_manifest(samples_table("/o", ["x"], 1).drop(columns="height"), runs_table([("x", "ok", 1, [1])]), "/o")


# ---------------------------------------------------------------------------- cluster.yaml
@pytest.fixture(scope="module")
def cluster() -> dict:
    return yaml.safe_load((ROOT / "cluster.yaml").read_text())


def test_cluster_yaml_matches_rays_schema(cluster):
    import jsonschema
    import ray.autoscaler

    schema = json.loads((Path(ray.autoscaler.__file__).parent / "ray-schema.json").read_text())
    jsonschema.validate(cluster, schema)
    for key in ("cluster_name", "max_workers", "provider", "auth", "available_node_types", "head_node_type"):
        assert key in cluster
    assert "setup_commands" in cluster or "docker" in cluster


def test_cluster_yaml_passes_the_launchers_own_checks(cluster):
    """What `ray up` does before it calls the cloud: fill in the provider's defaults and validate."""
    util = pytest.importorskip("ray.autoscaler._private.util")
    full = util.prepare_config(copy.deepcopy(cluster))
    util.validate_config(full)
    assert full["provider"]["type"] == "aws"


def test_cluster_yaml_has_a_cpu_head_and_autoscaling_gpu_workers(cluster):
    types = cluster["available_node_types"]
    head = types[cluster["head_node_type"]]
    assert head["resources"].get("GPU", 0) == 0 and head["resources"]["CPU"] >= 1
    workers = [t for name, t in types.items() if name != cluster["head_node_type"]]
    gpu = [t for t in workers if t["resources"].get("GPU", 0) >= 1]
    assert gpu, "no worker type advertises a GPU"
    for t in gpu:
        assert t["node_config"]["InstanceType"].startswith(("g", "p"))  # an AWS GPU instance family
        assert t.get("min_workers", 0) < t["max_workers"] <= cluster["max_workers"]  # autoscaling
        # the job's default request (1 CPU, 0.25 GPU per image) packs four images per GPU
        assert t["resources"]["CPU"] >= 4 * 1 and t["resources"]["GPU"] / 0.25 >= 4


def test_cluster_yaml_installs_the_project_and_uses_instance_roles_for_s3(cluster):
    commands = " ".join(cluster.get("setup_commands", []) + cluster.get("head_setup_commands", []))
    assert "pip install" in commands and "singan-ray" in commands
    assert "s3fs" in commands  # s3:// URLs need it
    for t in cluster["available_node_types"].values():
        assert "IamInstanceProfile" in t["node_config"]
    text = (ROOT / "cluster.yaml").read_text().lower()
    assert "aws_secret_access_key" not in text and "aws_access_key_id" not in text


# ---------------------------------------------------------------------------- the jobs, end to end
def load_job(name: str):
    """A job script as a module; its functions are pickled by value for Ray (the script is no package)."""
    import ray.cloudpickle

    spec = importlib.util.spec_from_file_location(f"job_{name}", ROOT / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    ray.cloudpickle.register_pickle_by_value(module)
    return module


@pytest.fixture(scope="module")
def one_image(tmp_path_factory) -> str:
    folder = tmp_path_factory.mktemp("images")
    write_png(folder / "tiny.png", synthetic_image(32, 40, seed=3))
    return str(folder)


def test_benchmark_job_writes_prints_and_logs_the_comparison(local_ray, one_image, tmp_path):
    from typer.testing import CliRunner

    job = load_job("benchmark_epoch_decay")
    out = tmp_path / "bench"
    args = [one_image, "--out", str(out), "--preset", "test", "--a", "niter=8", "--b", "niter=4", "--samples", "2",
            "--metrics", "swd", "-q"]
    result = CliRunner().invoke(job.app, args)
    assert result.exit_code == 0, result.output
    table = pd.read_parquet(out / "comparison.parquet")
    assert table["image_id"].iloc[-1] == TOTAL and len(table) == 2
    assert table["iterations_a"].iloc[0] == 2 * table["iterations_b"].iloc[0]
    assert table["seconds_saved"].iloc[0] == pytest.approx(table["seconds_a"].iloc[0] - table["seconds_b"].iloc[0])
    assert {"swd_a", "swd_b", "swd_delta"} <= set(table.columns)
    assert (out / "a" / "runs.parquet").exists() and (out / "b" / "runs.parquet").exists()
    assert "TOTAL" in result.output and "saved" in result.output

    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{out / 'mlflow.db'}")
    experiment = client.get_experiment_by_name("singan-benchmark")
    runs = client.search_runs([experiment.experiment_id], "tags.kind = 'comparison'")
    assert len(runs) == 1
    assert runs[0].data.metrics["total_seconds_saved"] == pytest.approx(float(table["seconds_saved"].iloc[-1]))
    assert "comparison.csv" in [f.path for f in client.list_artifacts(runs[0].info.run_id)]


def test_benchmark_job_rejects_a_bad_pair(one_image, tmp_path):
    from typer.testing import CliRunner

    job = load_job("benchmark_epoch_decay")
    result = CliRunner().invoke(job.app, [one_image, "--out", str(tmp_path), "--a", "niter=5", "--b", "niter=5"])
    assert result.exit_code == 1 and "error: --a and --b give the same config" in result.output


def test_augment_job_writes_pngs_and_a_manifest(local_ray, one_image, tmp_path):
    from typer.testing import CliRunner

    from singan_core.images import load_image

    job = load_job("augment_dataset")
    out = tmp_path / "aug"
    args = [one_image, "--out", str(out), "--per-image", "3", "--preset", "test", "--set", "niter=4",
            "--scale-h", "1.5", "-q"]
    result = CliRunner().invoke(job.app, args)
    assert result.exit_code == 0, result.output
    manifest = pd.read_parquet(out / "manifest.parquet")
    assert len(manifest) == 3 and manifest["sample_index"].tolist() == [0, 1, 2]
    assert manifest["source_uri"].str.endswith("tiny.png").all()
    for _, item in manifest.iterrows():
        x = load_image(str(out / item["sample_path"]))
        assert (x.shape[-2], x.shape[-1]) == (item["height"], item["width"])
    trained = pd.read_parquet(out / "runs.parquet").iloc[0]
    assert manifest["width"].iloc[0] == round(1.5 * trained["train_width"])  # --scale-h reaches the samples
    assert manifest["height"].iloc[0] == trained["train_height"]
    assert "wrote 3 samples of 1 image(s)" in result.output
