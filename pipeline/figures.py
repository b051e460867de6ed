"""The two pictures a run logs: a grid of samples and the loss curves of every scale (PNG bytes)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import torch

from singan_core.images import to_pil


def sample_grid(samples: torch.Tensor, columns: int = 4, gap: int = 2) -> torch.Tensor:
    """[N, 3, H, W] in [-1, 1] to one [1, 3, H', W'] image, `columns` wide, white gaps between tiles."""
    n, c, h, w = samples.shape
    columns = max(1, min(columns, n))
    rows = math.ceil(n / columns)
    grid = torch.ones(c, rows * h + (rows - 1) * gap, columns * w + (columns - 1) * gap)
    for i, x in enumerate(samples.detach().cpu().clamp(-1, 1)):
        top, left = (i // columns) * (h + gap), (i % columns) * (w + gap)
        grid[:, top : top + h, left : left + w] = x
    return grid.unsqueeze(0)


def png_bytes(x: torch.Tensor) -> bytes:
    buf = io.BytesIO()
    to_pil(x).save(buf, format="PNG")
    return buf.getvalue()


def loss_curves_png(stages: Sequence[dict[str, Any]], title: str = "") -> bytes:
    """One panel per loss (D, adversarial G, reconstruction), one line per scale, iterations on x."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 3.2), dpi=90)
    axes = fig.subplots(1, 3)
    for column, name in enumerate(("loss D", "loss G (adversarial)", "loss reconstruction")):
        ax = axes[column]
        for stage in stages:
            curve = stage.get("curve") or []
            if curve:
                ax.plot([p[0] for p in curve], [p[column + 1] for p in curve], lw=1,
                        label=f"scale {stage['stage']} ({stage['shape'][0]}x{stage['shape'][1]})")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("iteration", fontsize=8)
        ax.tick_params(labelsize=7)
        if column == 2:
            ax.set_yscale("log")
    axes[0].legend(fontsize=6)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return buf.getvalue()
