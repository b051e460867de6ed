"""MLflow tracking of a job, done by the driver alone (tasks only return rows, so the store never sees
concurrent writers and a local SQLite store cannot hit "database is locked").

Where runs go: `--tracking-uri`, else $MLFLOW_TRACKING_URI, else a SQLite store embedded in the output
folder (`sqlite:///<out>/mlflow.db`, artifacts in `<out>/mlartifacts`; no server needed). Open it with

    mlflow ui --backend-store-uri sqlite:///<out>/mlflow.db

One parent run per job (`start_job_run`, `end_job_run`); one nested run per image and variant
(`log_image`) with params = the resolved config,
metrics = training seconds (total and per scale, step = scale index with 0 the coarsest), iterations
per scale, losses, sample metrics; tags = image id, variant, epoch_decay; artifacts = the model
(`model/`), the loss curves and the sample grid (`plots/`). `load_model(run_id)` brings a model back.

mlflow is imported inside the functions: it takes seconds to import and tasks never need it.
"""

from __future__ import annotations

import logging
import math
import os
import shutil
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

if TYPE_CHECKING:
    from singan_core.config import Config

    from .plan import Plan
    from .rows import Finished

MODEL_ARTIFACT = "model"
MODEL_FILES = ("model.json", "model.pt", "report.json")
_MAX_TAG = 5000


def is_local(url: str) -> bool:
    return isinstance(fsspec.core.url_to_fs(url)[0], LocalFileSystem)


def local_path(url: str) -> str:
    return fsspec.core.url_to_fs(url)[1]


def default_tracking_uri(out_url: str, explicit: str | None = None) -> str:
    """The tracking URI of a job: explicit > $MLFLOW_TRACKING_URI > SQLite in the output folder.

    When the output folder is not local (s3://...), the embedded store goes to ./mlflow.db instead.
    """
    if explicit:
        return explicit
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    folder = Path(local_path(out_url)).resolve() if is_local(out_url) else Path.cwd()
    return f"sqlite:///{folder / 'mlflow.db'}"


def _artifact_root(out_url: str, tracking_uri: str) -> str | None:
    """Artifacts of a new experiment in an embedded store: <out>/mlartifacts (None: the server decides)."""
    if not tracking_uri.startswith("sqlite:"):
        return None
    if is_local(out_url):
        return (Path(local_path(out_url)).resolve() / "mlartifacts").as_uri()
    return out_url.rstrip("/") + "/mlartifacts"


def _ms(t: Any) -> int | None:
    return None if t is None else int(t.timestamp() * 1000)


def _finite(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(float(value))


@dataclass(frozen=True)
class Tracker:
    """A handle on one experiment of one tracking store (an explicit client: no global MLflow state)."""

    tracking_uri: str
    experiment_id: str
    experiment_name: str

    @classmethod
    def open(cls, tracking_uri: str, experiment: str, out_url: str) -> Tracker:
        """Create the store and the experiment when needed (before any task runs)."""
        from mlflow import MlflowClient

        logging.getLogger("mlflow.store.db.utils").setLevel(logging.WARNING)  # not "Creating initial ... tables"
        client = MlflowClient(tracking_uri=tracking_uri)
        found = client.get_experiment_by_name(experiment)
        if found is None:
            root = _artifact_root(out_url, tracking_uri)
            experiment_id = client.create_experiment(experiment, artifact_location=root)
        else:
            experiment_id = found.experiment_id
            if found.lifecycle_stage == "deleted":
                client.restore_experiment(experiment_id)
        return cls(tracking_uri, experiment_id, experiment)

    @property
    def client(self):
        from mlflow import MlflowClient

        return MlflowClient(tracking_uri=self.tracking_uri)

    # ------------------------------------------------------------------ runs
    def start_run(self, name: str, params: dict[str, Any], tags: dict[str, Any], parent_id: str | None = None,
                  start_time: Any = None) -> str:
        from mlflow.entities import Param

        all_tags = {k: _tag(v) for k, v in tags.items() if v is not None}
        if parent_id:
            all_tags["mlflow.parentRunId"] = parent_id
        run = self.client.create_run(self.experiment_id, start_time=_ms(start_time), tags=all_tags, run_name=name)
        run_id = run.info.run_id
        items = [Param(k, _tag(v)) for k, v in params.items()]
        for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
            self.client.log_batch(run_id, params=items[i : i + 100])
        return run_id

    def log_metrics(self, run_id: str, metrics: Iterable[tuple[str, float, int]]) -> None:
        """(name, value, step) triples; non-finite values are left out."""
        from mlflow.entities import Metric

        stamp = int(time.time() * 1000)
        items = [Metric(k, float(v), stamp, int(step)) for k, v, step in metrics if _finite(v)]
        for i in range(0, len(items), 1000):
            self.client.log_batch(run_id, metrics=items[i : i + 1000])

    def set_tags(self, run_id: str, tags: dict[str, Any]) -> None:
        from mlflow.entities import RunTag

        items = [RunTag(k, _tag(v)) for k, v in tags.items() if v is not None]
        if items:
            self.client.log_batch(run_id, tags=items)

    def log_files(self, run_id: str, files: dict[str, str]) -> None:
        """{"folder/name": url}: each existing file (any fsspec URL) into the run's artifacts at folder/name."""
        with tempfile.TemporaryDirectory(prefix="singan-mlflow-") as tmp:
            for target, url in files.items():
                fs, path = fsspec.core.url_to_fs(url)
                if not fs.exists(path):
                    continue
                folder, name = os.path.split(target)
                local = Path(tmp, folder or ".", name)
                local.parent.mkdir(parents=True, exist_ok=True)
                fs.get(path, str(local))  # also for local files: the artifact keeps the target's name
                self.client.log_artifact(run_id, str(local), folder or None)

    def log_text(self, run_id: str, text: str, name: str) -> None:
        self.client.log_text(run_id, text, name)

    def end_run(self, run_id: str, status: str = "FINISHED", end_time: Any = None) -> None:
        self.client.set_terminated(run_id, status, end_time=_ms(end_time))

    def child_runs(self, parent_id: str) -> list[Any]:
        return list(self.client.search_runs([self.experiment_id], f"tags.mlflow.parentRunId = '{parent_id}'",
                                            max_results=10000))


def _tag(value: Any) -> str:
    text = str(value)
    return text if len(text) <= _MAX_TAG else text[: _MAX_TAG - 3] + "..."


# ---------------------------------------------------------------------------- the job's run
def start_job_run(tracker: Tracker, name: str, plan: Plan, input_url: str) -> str:
    """The job's parent run: the config and the job's options as params; returns its run id."""
    res = plan.resources
    params = {**plan.config.to_dict(), "highres": plan.highres, "samples": plan.samples, "scale_h": plan.scale_h,
              "scale_v": plan.scale_v, "metrics": ",".join(plan.metrics), "num_cpus_per_task": res.num_cpus,
              "gpus_per_task": res.num_gpus, "pack": plan.pack or "auto"}
    tags = {"input": input_url, "out": plan.layout.out, "config_hash": plan.config_hash,
            "variant_tag": plan.tag or None}
    return tracker.start_run(name, params, tags)


def end_job_run(tracker: Tracker, run_id: str, *, ok: int, failed: int, skipped: int, seconds: float,
                interrupted: bool) -> None:
    """The job's counts and seconds as the parent run's metrics, then its end (KILLED when interrupted)."""
    tracker.log_metrics(run_id, [("images_ok", ok, 0), ("images_failed", failed, 0), ("images_skipped", skipped, 0),
                                 ("job_seconds", seconds, 0)])
    tracker.end_run(run_id, "KILLED" if interrupted else "FINISHED")


# ---------------------------------------------------------------------------- one image's runs
def log_image(tracker: Tracker, parent_id: str, finished: Finished, plan: Plan) -> Finished:
    """One nested MLflow run per variant of the image; returns the rows with their `mlflow_run_id`."""
    layout = plan.layout
    group = plan.group(finished.image_id)
    rows = []
    for row in finished.runs:
        variant = row["variant"]
        files = {"plots/loss_curves.png": layout.plot(group, variant, "loss_curves.png"),
                 "plots/sample_grid.png": layout.plot(group, variant, "sample_grid.png")}
        if row.get("status") == "ok" and row.get("model_uri"):
            files.update(model_files(row["model_uri"]))
        summary = [s for s in finished.summary if s["variant"] == variant]
        name = f"{os.path.basename(str(row.get('source_uri')))} {variant}"
        run_id = log_variant(tracker, parent_id, row, config=finished.configs[variant], summary=summary,
                             files=files, run_name=name)
        rows.append({**row, "mlflow_run_id": run_id})
    return replace(finished, runs=rows)



def variant_metrics(row: dict[str, Any], summary: Sequence[dict[str, Any]]) -> list[tuple[str, float, int]]:
    """MLflow metrics of one image and variant: training numbers per scale and the sample metrics."""
    out: list[tuple[str, float, int]] = [
        ("train_seconds_total", row.get("total_seconds"), 0),  # in a pack of K: the pack's seconds / K
        ("pack_seconds", row.get("pack_seconds"), 0),
        ("iterations_total", row.get("total_iterations"), 0),
        ("num_scales", row.get("num_scales"), 0),
        ("final_loss_d", row.get("final_loss_d"), 0),
        ("final_loss_adv", row.get("final_loss_adv"), 0),
        ("final_loss_rec", row.get("final_loss_rec"), 0),
    ]
    for stage in row.get("stages") or []:
        k = int(stage["stage"])
        out += [("train_seconds", stage["seconds"], k), ("iterations", stage["iterations"], k),
                ("loss_d", stage["loss_d"], k), ("loss_adv", stage["loss_adv"], k),
                ("loss_rec", stage["loss_rec"], k), ("noise_amp", stage["noise_amp"], k)]
    for item in summary:
        if item["metric"] == "diversity":
            out.append(("diversity", item["mean"], 0))
        else:
            out += [(f"{item['metric']}_mean", item["mean"], 0), (f"{item['metric']}_std", item["std"], 0)]
    return [(name, value, step) for name, value, step in out if value is not None]


def log_variant(tracker: Tracker, parent_id: str, row: dict[str, Any], *, config: Config,
                summary: Sequence[dict[str, Any]], files: dict[str, str], run_name: str) -> str:
    """One nested run for an image and variant (params: the config it was trained with); returns its run id."""
    tags = {"image_id": row["image_id"], "variant": row["variant"], "epoch_decay": config.epoch_decay,
            "variant_tag": row.get("variant_tag") or None, "source_uri": row.get("source_uri"),
            "config_hash": row.get("config_hash"), "status": row.get("status"), "error": row.get("error"),
            "note": row.get("note"), "device": row.get("device"), "host": row.get("host"),
            "pack_id": row.get("pack_id"), "pack_size": row.get("pack_size")}
    run_id = tracker.start_run(run_name, config.to_dict(), tags, parent_id=parent_id,
                               start_time=row.get("start_time"))
    tracker.log_metrics(run_id, variant_metrics(row, summary))
    tracker.log_files(run_id, files)
    if row.get("traceback"):
        tracker.log_text(run_id, row["traceback"], "error.txt")
    tracker.end_run(run_id, "FINISHED" if row.get("status") == "ok" else "FAILED", row.get("end_time"))
    return run_id


def model_files(model_uri: str) -> dict[str, str]:
    return {f"{MODEL_ARTIFACT}/{name}": f"{model_uri.rstrip('/')}/{name}" for name in MODEL_FILES}


# ---------------------------------------------------------------------------- reading back
def load_model(run_id: str, tracking_uri: str | None = None, device: str | None = None):
    """The SinGAN logged by run `run_id` (downloaded from its artifacts), ready for `.sample(...)`.

    tracking_uri: the store the job used, e.g. "sqlite:///<out>/mlflow.db" (default: $MLFLOW_TRACKING_URI).
    """
    import mlflow.artifacts

    from singan_core.singan import SinGAN

    tmp = tempfile.mkdtemp(prefix="singan-model-")
    try:
        path = mlflow.artifacts.download_artifacts(run_id=run_id, artifact_path=MODEL_ARTIFACT, dst_path=tmp,
                                                   tracking_uri=tracking_uri)
        return SinGAN.load(path, device=device)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
