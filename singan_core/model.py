"""The networks of one scale: G_n and D_n (SinGAN section 2.1).

Both are five ConvBlocks deep (Conv 3x3 -> BatchNorm -> LeakyReLU(0.2), the last replaced by a
plain conv), unpadded, so their receptive field is 11x11. G_n is residual:

    x~_n = up(x~_{n+1}) + psi_n(z_n + up(x~_{n+1}))

where the input is padded by num_layer * (ker_size - 1) / 2 pixels so the output has the input's
size. D_n is a Markovian (patch) critic: a one-channel map whose mean is the score.

The convolutions are `conv.Conv2d`: nn.Conv2d's parameters and results, computed with Winograd
transforms on CPU for the wide layers.

A pack (packed training) is K networks of one width run as one: `images = K` stacks the K images
along the channels ([B, 3K, h, w]), every convolution is grouped (groups = K) and every BatchNorm
channel belongs to one image, so image i's slice of the packed network computes exactly what its
own network computes. `pack` and `unpack` convert between the two.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .conv import Conv2d


class ConvBlock(nn.Sequential):
    def __init__(self, in_channels: int, out_channels: int, ker_size: int, groups: int = 1, dilation: int = 1) -> None:
        super().__init__(
            Conv2d(in_channels, out_channels, ker_size, groups, dilation),
            nn.BatchNorm2d(out_channels),
            nn.LeakyReLU(0.2, inplace=True),
        )


def _body(
    channels: int, num_layer: int, ker_size: int, out_channels: int, images: int, dilation: int = 1
) -> tuple[nn.Module, nn.Module, nn.Module]:
    c, k = channels * images, images  # a pack of k images: k groups side by side
    head = ConvBlock(3 * k, c, ker_size, k)
    body = nn.Sequential(*[ConvBlock(c, c, ker_size, k, dilation) for _ in range(num_layer - 2)])
    tail = Conv2d(c, out_channels * k, ker_size, k)
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
    """G_n (`images` = K > 1: a pack of K). `padding` is zero | constant | replicate | circular;
    `pad_value` is used by constant (in a pack, one value per image: the `pad_value` buffer is [K])."""

    def __init__(
        self,
        channels: int,
        num_layer: int = 5,
        ker_size: int = 3,
        padding: str = "zero",
        pad_value: float = 0.0,
        bias_init: str = "zero",
        images: int = 1,
    ) -> None:
        super().__init__()
        self.channels, self.num_layer, self.ker_size, self.images = channels, num_layer, ker_size, images
        self.head, self.body, self.tail = _body(channels, num_layer, ker_size, 3, images)
        self.pad = num_layer * (ker_size - 1) // 2
        self.padding = padding
        value = torch.tensor(float(pad_value))
        self.register_buffer("pad_value", value if images == 1 else value.repeat(images))
        init_weights(self, bias_init)

    def pad_input(self, x: torch.Tensor) -> torch.Tensor:
        p = (self.pad,) * 4
        if self.padding == "zero":
            return F.pad(x, p)
        if self.padding == "constant":
            if self.images == 1:
                return F.pad(x, p, mode="constant", value=float(self.pad_value))
            # one value per image: zeros around x, plus each image's value times a border mask (exact)
            border = F.pad(torch.zeros_like(x[:1, :1]), p, value=1.0)
            return F.pad(x, p) + border * self.pad_value.repeat_interleave(3).view(1, -1, 1, 1)
        return F.pad(x, p, mode=self.padding)  # replicate | circular

    def forward(self, noise: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """x~_n = prev + psi_n(noise + prev), with noise = noise_amp_n * z_n and prev = up(x~_{n+1})."""
        x = self.pad_input(noise + prev)
        return prev + torch.tanh(self.tail(self.body(self.head(x))))


class Discriminator(nn.Module):
    """D_n: the same body as psi_n with a one-channel patch map; score = map.mean() (a pack of K:
    K channels, one map per image). `dilation` > 1 dilates the body's convolutions (not the paper's; a lever
    of the fast preset): the receptive field grows from 1 + num_layer (ker_size - 1) to
    1 + (2 + (num_layer - 2) dilation) (ker_size - 1) with the same weights (a smaller map: it costs less)."""

    def __init__(
        self, channels: int, num_layer: int = 5, ker_size: int = 3, bias_init: str = "zero", images: int = 1,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        self.channels, self.num_layer, self.ker_size, self.images = channels, num_layer, ker_size, images
        self.dilation = dilation
        self.head, self.body, self.tail = _body(channels, num_layer, ker_size, 1, images, dilation)
        init_weights(self, bias_init)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.tail(self.body(self.head(x)))


Net = Generator | Discriminator


def _like(net: Net, images: int) -> Net:
    """An empty network of net's kind and width for `images` images. Built without touching the
    global random stream: packing must not change the noise a training draws."""
    with torch.random.fork_rng(devices=[]):
        if isinstance(net, Generator):
            new = Generator(net.channels, net.num_layer, net.ker_size, net.padding, images=images)
        else:
            new = Discriminator(net.channels, net.num_layer, net.ker_size, images=images, dilation=net.dilation)
    return new.to(next(net.parameters()).device)


def pack(nets: Sequence[Net]) -> Net:
    """K networks of one kind and width as one network of K groups (module doc); one is returned as it is."""
    if len(nets) == 1:
        return nets[0]
    states = [net.state_dict() for net in nets]
    packed = _like(nets[0], len(nets))
    stacked = {}
    for name, first in states[0].items():
        values = [s[name] for s in states]
        if name == "pad_value":
            stacked[name] = torch.stack(values)
        elif first.dim() == 0:  # BatchNorm's num_batches_tracked: the same count for every image
            stacked[name] = first
        else:
            stacked[name] = torch.cat(values)
    packed.load_state_dict(stacked)
    return packed.train(nets[0].training)


def unpack(net: Net) -> list[Net]:
    """The K ordinary networks of a pack, in order (a network of one image is returned as it is)."""
    if net.images == 1:
        return [net]
    k = net.images
    state = net.state_dict()
    out = []
    for i in range(k):
        single = _like(net, 1)
        single.load_state_dict({
            name: t[i] if name == "pad_value" else (t if t.dim() == 0 else t.chunk(k)[i]) for name, t in state.items()
        })
        out.append(single.train(net.training).requires_grad_(net.head[0].weight.requires_grad))
    return out
