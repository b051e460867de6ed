"""Where the work runs: the torch device ("auto" = CUDA when present) and the number of CPU threads."""

from __future__ import annotations

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
