"""Where the work runs: the torch device ("auto" = CUDA when present) and the number of CPU threads."""

from __future__ import annotations

import functools
import platform
from pathlib import Path

import torch


def resolve_device(device: str | torch.device | None) -> torch.device:
    """None, "" or "auto": CUDA when present, else the CPU. A named device must be available here."""
    if device is None or device in ("", "auto"):
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda was asked for but CUDA is not available")
    if device.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError("device mps was asked for but MPS is not available")
    return device


def set_threads(threads: int) -> None:
    """Torch CPU threads (0: torch's default). A task sets its CPU count: oversubscribed threads are many
    times slower."""
    if threads > 0:
        torch.set_num_threads(int(threads))


def native_bfloat16(device: torch.device) -> bool:
    """Whether `device` computes bfloat16 convolutions natively (precision=bfloat16 is then faster than float32):
    a GPU that supports bfloat16, or a CPU with AMX or AVX512-BF16. Elsewhere bfloat16 is emulated, and slower."""
    if device.type == "cuda":
        return torch.cuda.is_bf16_supported()
    if device.type == "cpu":
        caps = torch.cpu.get_capabilities() if hasattr(torch.cpu, "get_capabilities") else {}
        return bool(caps.get("amx_bf16") or caps.get("avx512_bf16"))
    return False


@functools.cache  # read once: summarize() names the machine after every scale
def device_name(device: torch.device) -> str:
    """The processor that ran the work, so that a timing says where it was taken: the GPU's name, or the CPU's model
    with its family and model numbers where /proc/cpuinfo gives them (one product name, "AMD EPYC", covers several
    generations whose speeds differ)."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    info: dict[str, str] = {}
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            info.setdefault(key.strip(), value.strip())
    except OSError:
        pass
    name = info.get("model name") or platform.processor() or platform.machine() or "unknown CPU"
    if "cpu family" in info and "model" in info:
        name += f" (family {info['cpu family']}, model {info['model']})"
    return name
