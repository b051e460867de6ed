"""The 3x3 convolution of G_n and D_n, computed with Winograd transforms on CPU.

Mathematically this is the ordinary unpadded convolution of the paper. Only the arithmetic differs:
on CPU, layers with 64 or more channels use NNPACK's Winograd F(6x6, 3x3) kernels (bundled with
PyTorch's CPU builds), which need about 5x fewer multiplications than a direct 3x3 convolution. On
one core they run 1.6x (64 channels) to 2.8x (128 channels) faster than oneDNN's direct kernels,
with a relative difference of about 5e-6, the size of float32 rounding.

The forward pass and the input gradient (itself a convolution of the output gradient with the
flipped, transposed kernel) use Winograd; the weight gradient uses PyTorch's kernel. The backward
pass is written with differentiable operations, so the double backward of the WGAN-GP penalty also
runs through Winograd. Narrow layers, grouped convolutions (packed training), GPUs, other dtypes and
bfloat16 autocast (`precision=bfloat16`) use torch's own convolution.
NNPACK sizes its thread pool from torch's thread count at its first use: set that count first.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

MIN_CHANNELS = 64  # narrower, Winograd is no faster on one core (32 channels: 0.9-1.2x of oneDNN)

_NNPACK = torch.backends.nnpack.is_available()  # the check also initialises NNPACK, required before use
_will_execute = getattr(torch._C, "_will_engine_execute_node", None)
_enabled = True


@contextmanager
def winograd_disabled() -> Iterator[None]:
    """Compute every convolution with torch's own kernels inside this block (for comparisons), like
    the flags of torch.backends."""
    global _enabled
    previous, _enabled = _enabled, False
    try:
        yield
    finally:
        _enabled = previous


def use_winograd(x: torch.Tensor, weight: torch.Tensor, groups: int = 1) -> bool:
    return (
        _NNPACK
        and groups == 1
        and _enabled
        and x.device.type == "cpu"
        and not torch.is_autocast_enabled("cpu")  # bfloat16 training: oneDNN's bfloat16 kernels are faster
        and x.dtype == weight.dtype == torch.float32
        and weight.shape[-2:] == (3, 3)
        and min(weight.shape[0], weight.shape[1]) >= MIN_CHANNELS
    )


def conv2d(
    x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int = 0, groups: int = 1,
    dilation: int = 1,
) -> torch.Tensor:
    """F.conv2d(x, weight, bias, padding=padding, groups=groups, dilation=dilation), through Winograd where that
    is faster (module doc; undilated only)."""
    if dilation == 1 and use_winograd(x, weight, groups):
        return _WinogradConv.apply(x, weight, bias, padding)
    return F.conv2d(x, weight, bias, padding=padding, groups=groups, dilation=dilation)


def _nnpack_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: int) -> torch.Tensor:
    """NNPACK's convolution, one image at a time: for a batch of one it runs its inference kernels,
    which on one core are 2-3x faster per image than the kernels it runs for larger batches."""
    x, weight = x.contiguous(), weight.contiguous()
    if x.shape[0] == 1:
        return torch._nnpack_spatial_convolution(x, weight, bias, [padding, padding])
    return torch.cat([torch._nnpack_spatial_convolution(xi, weight, bias, [padding, padding]) for xi in x.split(1)])


def _needed(ctx) -> list[bool]:
    """Which of (x, weight, bias) this backward pass must return: the inputs that require grad,
    minus those the running backward will not use (the WGAN-GP penalty's gradient with respect to
    the interpolate needs no weight gradients)."""
    needed = list(ctx.needs_input_grad[:3])
    if _will_execute is not None:
        for i, (node, _) in enumerate(ctx.next_functions[:3]):
            if needed[i] and node is not None:
                try:
                    needed[i] = bool(_will_execute(node))
                except (RuntimeError, TypeError):  # e.g. a leaf that autograd.grad targets: keep it
                    pass
    return needed


class _WinogradConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, padding):
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        return _nnpack_conv(x, weight, bias, padding)

    @staticmethod
    def backward(ctx, grad):
        x, weight = ctx.saved_tensors
        p = ctx.padding
        need_x, need_w, need_b = _needed(ctx)
        grad_x = grad_w = grad_b = None
        if need_x:  # dL/dx: the output gradient correlated with the flipped, transposed kernel
            grad_x = conv2d(grad, weight.transpose(0, 1).flip(2, 3), None, weight.shape[-1] - 1 - p)
        if need_w or need_b:
            _, grad_w, grad_b = torch.ops.aten.convolution_backward(
                grad, x, weight, [weight.shape[0]], [1, 1], [p, p], [1, 1], False, [0, 0], 1,
                [False, need_w, need_b],
            )
        return grad_x, grad_w, grad_b, None


class Conv2d(nn.Conv2d):
    """nn.Conv2d(in, out, ker_size, groups=groups, dilation=dilation), unpadded (same parameters and state dict),
    computed by `conv2d`."""

    def __init__(self, in_channels: int, out_channels: int, ker_size: int, groups: int = 1, dilation: int = 1) -> None:
        super().__init__(in_channels, out_channels, ker_size, groups=groups, dilation=dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return conv2d(x, self.weight, self.bias, groups=self.groups, dilation=self.dilation[0])
