"""What every `singan` command and job script shares: option types, config resolution, one-line errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Annotated, Any

import torch
import typer

from singan_core.config import PRESETS, Config, preset
from singan_core.images import ImageError

PresetOpt = Annotated[str, typer.Option("--preset", "-p", help=f"Hyper-parameter preset: {', '.join(PRESETS)}.")]
SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config field, e.g. --set niter=500 (repeatable)."),
]
DeviceOpt = Annotated[str, typer.Option(help="cpu, cuda, mps or auto (CUDA when present).")]
ThreadsOpt = Annotated[int, typer.Option(help="Torch CPU threads (0: torch's default).")]


def fail(message: str, code: int = 1) -> typer.Exit:
    """Print one `error:` line to stderr and return the Exit to raise."""
    typer.echo(f"error: {message}", err=True)
    return typer.Exit(code)


def friendly_errors(fn: Callable[..., Any]) -> Callable[..., Any]:
    """Turn the expected failures (bad input, bad options) into one line and exit code 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except (ImageError, ValueError, FileNotFoundError, IsADirectoryError, PermissionError) as e:
            raise fail(str(e).splitlines()[0] if str(e) else type(e).__name__) from None
        except KeyboardInterrupt:
            raise fail("interrupted", 130) from None

    return wrapper


def resolve_config(preset_name: str, overrides: list[str] | None, seed: int | None = None) -> Config:
    cfg = preset(preset_name).override(overrides or [])
    return cfg.replace(seed=seed) if seed is not None else cfg


def set_threads(threads: int) -> None:
    if threads > 0:
        torch.set_num_threads(threads)
