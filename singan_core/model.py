"""The networks of one scale: G_n and D_n (SinGAN section 2.1).

Both are five ConvBlocks deep (Conv 3x3 -> BatchNorm -> LeakyReLU(0.2), the last replaced by a
plain conv), unpadded, so their receptive field is 11x11. G_n is residual:

    x~_n = up(x~_{n+1}) + psi_n(z_n + up(x~_{n+1}))

where the input is padded by num_layer * (ker_size - 1) / 2 pixels so the output has the input's
size. D_n is a Markovian (patch) critic: a one-channel map whose mean is the score.

The convolutions are `conv.Conv2d`: nn.Conv2d's parameters and results, computed with Winograd
transforms on CPU for the wide layers.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .conv import Conv2d


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, ker_size: int) -> None:
        super().__init__(
            Conv2d(in_channels, out_channels, ker_size),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )


def _body(channels: int, num_layer: int, ker_size: int, out_channels: int) -> tuple[nn.Module, nn.Module, nn.Module]:
    head = ConvBlock(3, channels, ker_size)
    body = nn.Sequential(*[ConvBlock(channels, channels, ker_size) for _ in range(num_layer - 2)])
    tail = Conv2d(channels, out_channels, ker_size)
    return head, body, tail


def init_weights(module: nn.Module, bias_init: str = "zero") -> None:
    """The reference initialisation: convs N(0, 0.02), BatchNorm scale N(1, 0.02) and shift 0. Conv biases
    are zeroed (`zero`) or keep torch's default U(-1/sqrt(fan_in), 1/sqrt(fan_in)) (`torch`, as the authors'
    code leaves them; only the tail's bias matters, BatchNorm cancels the others)."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.normal_(m.weight, 0.0, 0.02)
            if bias_init == "zero":
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.normal_(m.weight, 1.0, 0.02)
            nn.init.zeros_(m.bias)


class Generator(nn.Module):
    """G_n. `padding` is zero | constant | replicate | circular; `pad_value` is used by constant."""

    def __init__(
        self,
        channels: int,
        num_layer: int = 5,
        ker_size: int = 3,
        padding: str = "zero",
        pad_value: float = 0.0,
        bias_init: str = "zero",
    ) -> None:
        super().__init__()
        self.head, self.body, self.tail = _body(channels, num_layer, ker_size, 3)
        self.pad = num_layer * (ker_size - 1) // 2
        self.padding = padding
        self.register_buffer("pad_value", torch.tensor(float(pad_value)))
        init_weights(self, bias_init)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        p = (self.pad,) * 4
        if self.padding == "zero":
            return F.pad(x, p)
        if self.padding == "constant":
            return F.pad(x, p, mode="constant", value=float(self.pad_value))
        return F.pad(x, p, mode=self.padding)  # replicate | circular

    def forward(self, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """x~_n = prev + psi_n(noise + prev), with noise = noise_amp_n * z_n and prev = up(x~_{n+1})."""
        x = self.pad_input(noise + prev)
        return prev + torch.tanh(self.tail(self.body(self.head(x))))


class Discriminator(nn.Module):
    """D_n: the same body as psi_n with a one-channel patch map; score = map.mean()."""

    def __init__(self, channels: int, num_layer: int = 5, ker_size: int = 3, bias_init: str = "zero") -> None:
        super().__init__()
        self.head, self.body, self.tail = _body(channels, num_layer, ker_size, 1)
        init_weights(self, bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))
