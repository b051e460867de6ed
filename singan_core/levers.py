"""Speed levers of `train_stage` beyond the paper (issue 12); each is off at the paper's defaults.

- `EarlyStop` (early_stop_patience, early_stop_tol): a scale stops when its losses stopped moving.
- `Window` (concurrent_stages J, ConSinGAN, Hinz et al. WACV 2021): G_n trains together with the
  J - 1 coarser generators G_{n+1} .. G_{n+J-1}, those at lr x concurrent_lr_scale; their outputs
  carry gradients into them, so only the stages below the window are frozen (and prefetched). Only
  D_n trains; the window's sigma_n and discriminators stay what they were. `Window.trace` also returns each
  window stage's own output, for alpha_window's reconstruction of it.
- `WeightAverage` (ema_half_life): a scale ends with a moving average of its generators' weights.
- The lazy gradient penalty (gp_every, gp_every_coarse) and its cheaper estimate (gp_samples) are a few lines in
  `train_stage`.

In a pack every lever acts on each image as it would alone (BatchNorm step counts included, see
`pack_counted`).
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Iterator, Sequence

import torch
from torch.optim.swa_utils import AveragedModel, get_ema_multi_avg_fn

from .config import Config
from .model import Net, pack, unpack
from .singan import SinGAN, Stage, stage_noise, upsample


def bn_counts(net: torch.nn.Module) -> list[int]:
    """num_batches_tracked of every BatchNorm of net, in order (only counted: the momentum is fixed)."""
    return [int(m.num_batches_tracked) for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d)]


def pack_counted(nets: Sequence[Net]) -> tuple[Net, list[list[int]]]:
    """model.pack, and each network's BatchNorm step counts less the first's: a pack keeps one count (the
    first's), and images that stopped early at a coarser scale come with other counts."""
    first = bn_counts(nets[0])
    return pack(nets), [[a - b for a, b in zip(bn_counts(n), first, strict=True)] for n in nets]


def unpack_counted(net: Net, offsets: Sequence[Sequence[int]]) -> list[Net]:
    """model.unpack with each image's BatchNorm step counts restored (offsets from `pack_counted`)."""
    nets = unpack(net)
    for single, offset in zip(nets[1:], offsets[1:], strict=True):
        bns = [m for m in single.modules() if isinstance(m, torch.nn.BatchNorm2d)]
        for m, o in zip(bns, offset, strict=True):
            m.num_batches_tracked += o
    return nets


class EarlyStop:
    """Stops a scale when its losses stopped moving: after every window of `patience` iterations, the
    window's mean adversarial and reconstruction losses (the last G step of each iteration) are compared
    with the previous window's; image j stops when both moved by at most `tol` x the previous window's
    mean absolute value. Per image: in a pack each image stops where it would alone."""

    def __init__(self, patience: int, tol: float, images: int) -> None:
        self.patience, self.tol, self.count = patience, tol, 0
        self.sums = torch.zeros(2, images)  # this window's sums of loss_adv, loss_rec
        self.abs_sums = torch.zeros(2, images)
        self.previous: tuple[torch.Tensor, torch.Tensor] | None = None  # the last window's means, mean |.|

    def update(self, loss_adv: torch.Tensor, loss_rec: torch.Tensor) -> list[int]:
        """Add one iteration's [K] losses; returns the images whose losses stopped moving (at a window's end)."""
        values = torch.stack([loss_adv, loss_rec]).float().cpu()
        self.sums += values
        self.abs_sums += values.abs()
        self.count += 1
        if self.count < self.patience:
            return []
        means, abs_means = self.sums / self.count, self.abs_sums / self.count
        self.sums, self.abs_sums, self.count = torch.zeros_like(self.sums), torch.zeros_like(self.sums), 0
        previous, self.previous = self.previous, (means, abs_means)
        if previous is None:
            return []
        still = ((means - previous[0]).abs() <= self.tol * previous[1]).all(0)
        return [j for j, s in enumerate(still.tolist()) if s]


class WeightAverage:
    """An exponential moving average of the weights of the generators a scale trains (G_n, and the window's with
    concurrent_stages > 1), BatchNorm running statistics included, updated after every iteration: the scale ends
    with the average instead of the last iterate (torch's AveragedModel). No average when decay is 0. Elementwise,
    so in a pack each image gets the average it would get alone (step counts are left as they are)."""

    def __init__(self, nets: Sequence[torch.nn.Module], decay: float) -> None:
        self.nets = list(nets) if decay else []
        self.averages = [AveragedModel(net, multi_avg_fn=get_ema_multi_avg_fn(decay), use_buffers=True)
                         for net in self.nets]

    def update(self) -> None:
        for average, net in zip(self.averages, self.nets, strict=True):
            average.update_parameters(net)

    def _load(self, states: Sequence[dict[str, torch.Tensor]]) -> None:
        for net, state in zip(self.nets, states, strict=True):
            net.load_state_dict({k: v for k, v in state.items() if v.is_floating_point()}, strict=False)

    def apply(self) -> None:
        """The averaged weights into the trained networks (at the scale's end)."""
        self._load([average.module.state_dict() for average in self.averages])

    @contextlib.contextmanager
    def applied(self) -> Iterator[None]:
        """The averaged weights in the networks for the `with` block, the trained ones back after it."""
        trained = [copy.deepcopy(net.state_dict()) for net in self.nets]
        self.apply()
        try:
            yield
        finally:
            self._load(trained)


def sigma_per_channel(noise_amps: Sequence[float], device: torch.device) -> torch.Tensor:
    """[1, 3K, 1, 1]: each image's sigma over its three colour channels."""
    return torch.tensor(list(noise_amps), device=device).repeat_interleave(3).view(1, -1, 1, 1)


class Window:
    """The coarser stages f .. k-1 (f = k - w) trained with G_n at stage k, for a pack of K images.

    x~_f is computed from up(x~_{f+1}) of the frozen stages below (`frozen`, prefetched as usual), then
    x~_m = G_m(sigma_m z_m, up(x~_{m+1})) for m = f .. k-1 with grad, and `__call__` returns up(x~_{n+1})
    for G_n. z_m is one draw for all K images, as every image draws it alone.
    """

    def __init__(self, k: int, w: int, coarser: Sequence[SinGAN], reals: Sequence[torch.Tensor], cfg: Config,
                 device: torch.device) -> None:
        self.k, self.f, self.K, self.cfg, self.coarser = k, k - w, reals[k].shape[1] // 3, cfg, coarser
        self.shapes = [tuple(reals[m].shape[-2:]) for m in range(self.f, k + 1)]
        packed = [pack_counted([copy.deepcopy(c.stages[m].generator) for c in coarser]) for m in range(self.f, k)]
        self.nets = [net.to(device).train().requires_grad_(True) for net, _ in packed]
        self.offsets = [offsets for _, offsets in packed]
        self.sigmas = [sigma_per_channel([c.stages[m].noise_amp for c in coarser], device) for m in range(self.f, k)]
        self.device = device

    @property
    def stages(self) -> list[int]:
        return list(range(self.f, self.k))

    def frozen(self) -> list[SinGAN]:
        """Each image's frozen stages 0 .. f-1 (empty when the window reaches the coarsest scale)."""
        if self.f == 0:
            return []
        return [c.coarsest(self.f) for c in self.coarser]

    def parameters(self) -> list[torch.nn.Parameter]:
        return [p for net in self.nets for p in net.parameters()]

    def _each(self, x: torch.Tensor) -> torch.Tensor:
        return x if self.K == 1 else x.repeat(1, self.K, 1, 1)

    def draw_noise(self, batch: int = 1) -> list[torch.Tensor]:
        """z_f .. z_{k-1} for one step of `batch` fakes (empty for no window: nothing is drawn)."""
        return [self._each(stage_noise(m, batch, s, self.device))
                for m, s in zip(self.stages, self.shapes, strict=False)]

    def __call__(self, x: torch.Tensor, noises: Sequence[torch.Tensor]) -> torch.Tensor:
        """up(x~_{n+1}) from x = up(x~_{f+1}) (zeros when f = 0) through the window stages."""
        return self.trace(x, noises)[0]

    def trace(self, x: torch.Tensor, noises: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """up(x~_{n+1}), and x~_f .. x~_{k-1}: each window stage's own output."""
        outputs = []
        for net, sigma, z, shape in zip(self.nets, self.sigmas, noises, self.shapes[1:], strict=True):
            outputs.append(net(sigma * z, x))
            x = upsample(outputs[-1], shape, self.cfg.upsample)
        return x, outputs

    def reconstruction_input(self, M: int, z_star: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """x (up(x~rec_{f+1}) of the frozen stages, [M, 3K, h_f, w_f]) and the window's reconstruction noise
        {z* at the coarsest scale, zeros above} for the M training images."""
        frozen = self.frozen()
        if frozen:
            rec = torch.cat([c.generate(M, fixed_noise_stages=self.f, image_index=torch.arange(M)) for c in frozen], 1)
            x = upsample(rec, self.shapes[0], self.cfg.upsample)
        else:
            x = torch.zeros(M, 3 * self.K, *self.shapes[0], device=self.device)
        noises = [z_star if m == 0 else torch.zeros(M, 3 * self.K, *s, device=self.device)
                  for m, s in zip(self.stages, self.shapes, strict=False)]
        return x, noises

    def snapshot(self, j: int) -> list[Net]:
        """Image j's window generators as they are now (it stopped early)."""
        return [unpack_counted(copy.deepcopy(net), offsets)[j] for net, offsets in zip(self.nets, self.offsets,
                                                                                          strict=True)]

    def finish(self, snapshots: dict[int, list[Net]]) -> list[list[Stage]]:
        """Each image's retrained stages f .. k-1 (its snapshot when it stopped early), frozen."""
        if not self.stages:
            return [[] for _ in range(self.K)]
        per_stage = [unpack_counted(net, offsets) for net, offsets in zip(self.nets, self.offsets, strict=True)]
        out = []
        for j, c in enumerate(self.coarser):
            nets = snapshots.get(j, [nets[j] for nets in per_stage])
            out.append([Stage(net.eval().requires_grad_(False), c.stages[m].noise_amp, c.stages[m].shape,
                              c.stages[m].discriminator) for m, net in zip(self.stages, nets, strict=True)])
        return out
