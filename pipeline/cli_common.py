"""What every `singan` command and job script shares besides its options (those are in options.py):
config resolution and one-line errors."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import typer

from singan_core.config import Config, preset
from singan_core.devices import set_threads
from singan_core.images import ImageError

__all__ = ["fail", "friendly_errors", "resolve_config", "set_threads"]


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
    """The preset, then the `--set name=value` overrides in order, then `--seed` when given."""
    cfg = preset(preset_name).override(overrides or [])
    return cfg.replace(seed=seed) if seed is not None else cfg
