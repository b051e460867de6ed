"""Every command-line option that more than one command takes, defined once (typer `Annotated` types).

The three jobs (jobs/*.py) and the `singan` commands use these, so an option means the same and has the
same help text wherever it appears:

    def main(input_url: Input, preset_name: Preset = "paper", overrides: Overrides = None, seed: Seed = None): ...
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated

import typer

from singan_core.config import PRESETS
from singan_core.metrics import METRICS, WEIGHTS_ENV

PRESET_HELP = f"Hyper-parameter preset: {', '.join(PRESETS)}."
INPUT_HELP = "Folder (searched recursively), glob or file; any fsspec URL."

# ---------------------------------------------------------------------------- the config
Preset = Annotated[str, typer.Option("--preset", "-p", help=PRESET_HELP)]
OptionalPreset = Annotated[  # train_dataset: the default depends on --demo
    str | None, typer.Option("--preset", "-p", help=f"{PRESET_HELP[:-1]} (default: paper; see --demo).")
]
Overrides = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config field, e.g. --set niter=500 (repeatable)."),
]
Seed = Annotated[int | None, typer.Option(help="Random seed of training and sampling (default: the preset's).")]
TrainSeed = Annotated[int | None, typer.Option(help="Random seed of training (default: the preset's).")]

# ---------------------------------------------------------------------------- samples and metrics
ScaleH = Annotated[float, typer.Option(help="Width factor of the samples (1.0 = training size).")]
ScaleV = Annotated[float, typer.Option(help="Height factor of the samples (1.0 = training size).")]
Highres = Annotated[
    bool, typer.Option("--highres", help="High-Res SinGAN: a base and four quadrant pyramids, stitched samples.")
]
Metrics = Annotated[
    list[str] | None,
    typer.Option(help=f"Metrics to compute: {', '.join(METRICS)} (repeatable or comma list; default all; SIFID "
                      "only when the Inception weights are available)."),
]
InceptionWeights = Annotated[
    str | None,
    typer.Option("--inception-weights", help="Inception-v3 weights for SIFID (inception_v3_google-0cc3c7bd.pth): "
                 f"path or URL (default: ${WEIGHTS_ENV}, else torch.hub's cache, else a download)."),
]

# ---------------------------------------------------------------------------- the jobs: input, tracking, Ray
Input = Annotated[str, typer.Argument(metavar="INPUT", help=INPUT_HELP)]
OptionalInput = Annotated[str | None, typer.Argument(metavar="INPUT", help=INPUT_HELP)]  # train_dataset --demo
TrackingUri = Annotated[
    str | None, typer.Option(help="MLflow tracking URI (default: $MLFLOW_TRACKING_URI, else sqlite:///<out>/mlflow.db).")
]
Experiment = Annotated[str, typer.Option(help="MLflow experiment name.")]
Tag = Annotated[
    str | None,
    typer.Option(help="Variant tag stored with every row and run; jobs with another tag keep their own results."),
]
CpusPerTask = Annotated[int, typer.Option(help="CPUs (and torch threads) per training and sampling task.")]
GpusPerTask = Annotated[
    float | None,
    typer.Option(help="GPU fraction per training and sampling task (0.25: four share one; 0: the CPU). Default: 0.25 "
                      "when the cluster has GPU nodes or its autoscaler can add them, else the CPU. A value given "
                      "is asked for even where no GPU is in sight."),
]
Pack = Annotated[
    int | None,
    typer.Option(help="At most this many images of one training shape per training task, trained as one packed "
                      "network (1: each alone). Default: 1 on the CPU; on a GPU as many as fit in the task's share "
                      "of its memory (README: Packing in the pipeline)."),
]
ResourceTimeout = Annotated[
    float, typer.Option(help="Stop with an error when training tasks wait this many seconds for their resources "
                             "with none running (e.g. GPUs the cluster cannot add).")
]
Address = Annotated[
    str | None,
    typer.Option(help="Ray cluster: 'auto', 'ray://host:10001', or 'local' for a private one (default: $RAY_ADDRESS / "
                      "a running local head / a new local one)."),
]
QuietJob = Annotated[bool, typer.Option("--quiet", "-q", help="No live progress and no summary table.")]

# ---------------------------------------------------------------------------- the `singan` commands
Device = Annotated[str, typer.Option(help="cpu, cuda, mps or auto (CUDA when present).")]
Threads = Annotated[int, typer.Option(help="Torch CPU threads (0: torch's default).")]
Quiet = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]


def split_metrics(values: Sequence[str] | None) -> tuple[str, ...] | None:
    """`--metrics swd,patch_fd --metrics diversity` as one tuple of names (None: not given, so all)."""
    return tuple(m for item in values for m in item.split(",") if m.strip()) if values else None
