"""Training, coarse to fine (SinGAN section 2.2, Algorithm in the supplementary material).

Scale n is trained after every coarser scale is frozen, with

    min_{G_n} max_{D_n}  L_adv(G_n, D_n) + alpha * L_rec(G_n)

L_adv is WGAN-GP (or, as a variant from IMA206, a Frechet distance between the 11x11 patch
statistics of x_n and of the fake, with no discriminator). L_rec = ||G_n(0, up(x~rec_{n+1})) - x_n||^2
on the fixed noise {z*, 0, ..., 0}. sigma_n = noise_amp * RMSE(x_n, up(x~rec_{n+1})).

Speed: the coarser generators are frozen (eval-mode BatchNorm), so the up(x~_{n+1}) of many
iterations are drawn in batched forward passes up front; D's weights take no gradients in the G steps
nor in the penalty's inner gradient; wide convolutions use Winograd (conv.py); the reals are contiguous
NCHW tensors (channels-last ones made every convolution on them slower).

Packs (`train_pack`): K images of the same training shapes train as one pack, the K images side by
side along the channels and G_n, D_n K networks side by side (model.pack): each image's model is the
one it gets trained alone, K trainings computed by the same kernels. `train` is a pack of one.
"""

from __future__ import annotations

import contextlib
import copy
import hashlib
import itertools
import math
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import Config
from .devices import device_name, native_bfloat16, resolve_device
from .images import resize
from .levers import EarlyStop, WeightAverage, Window, pack_counted, sigma_per_channel, unpack_counted
from .metrics.frechet import psd_sqrt
from .metrics.patch import pooled_patch_stats
from .model import Discriminator, Generator
from .pyramid import build_reals, pyramid_for
from .singan import SinGAN, Stage, as_images, coarsest_noise, model_exists, stage_noise, upsample

_SUBBATCH = 16  # bounds the memory of batched coarser-scale passes


# ---------------------------------------------------------------------------- losses
def gradient_penalty(D: Discriminator, real: torch.Tensor, fake: torch.Tensor, weight: float) -> torch.Tensor:
    """The WGAN-GP penalty term alone (Gulrajani et al.): per-pixel gradient norm over each image's
    colour channels; one term per image of a pack ([K]). The interpolation weight is one draw, the
    same for every image of a pack, as each would draw it alone."""
    a = torch.rand(1, 1, 1, 1, device=real.device)
    interp = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(interp).sum(), interp, create_graph=True)
    norm = grad.unflatten(1, (-1, 3)).norm(2, dim=2)  # [B, K, h, w]
    return weight * ((norm - 1) ** 2).mean((0, 2, 3))


def patch_grid(x: torch.Tensor, patch: int = 5, stride: int = 1) -> torch.Tensor:
    """The patch x patch patches of one image x [1, 3, h, w] on a stride grid, as columns [3 patch^2, N] (float32)."""
    return F.unfold(x.float(), patch, stride=stride)[0]


def completeness(real_patches: Sequence[torch.Tensor], fake: torch.Tensor) -> torch.Tensor:
    """[K]: for each image of a pack, the completeness term of Simakov et al.'s bidirectional similarity (CVPR 2008):
    the mean over x_n's patches (`real_patches`: each pack image's `patch_grid(x_n, stride=2)`, computed once per
    scale) of the squared distance, per pixel, to the nearest patch of the fake [1, 3K, h, w]. The nearest is found
    without gradients and the distance to it carries them, so G_n is pulled to draw every part of x_n somewhere in
    its sample."""
    out = []
    for r, f_img in zip(real_patches, each_image(fake, len(real_patches)), strict=True):
        q = patch_grid(f_img)  # [d, Nf]: every patch of the fake, of the targets' size (5x5)
        # nearest[i]: argmin over the fake's patches q of ||q||^2 - 2 r_i.q (||r_i||^2 is the same for every q),
        # for blocks of 128 of x_n's patches r_i at a time, whose distances stay in the cache (3.6x faster at 96 px)
        with torch.no_grad():
            q_norm = (q * q).sum(0)
            nearest = torch.cat([(q_norm - 2 * r[:, i : i + 128].T @ q).argmin(dim=1)
                                 for i in range(0, r.shape[1], 128)])
        out.append((q[:, nearest] - r).pow(2).mean())
    return torch.stack(out)


def frechet_patch_loss(real_mu: torch.Tensor, real_sqrt_cov: torch.Tensor, fake: torch.Tensor, patch_size: int):
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)), with Tr((S_r S_f)^(1/2)) computed as
    Tr((S_r^(1/2) S_f S_r^(1/2))^(1/2)) from a symmetric eigen-decomposition (differentiable)."""
    mu, cov = pooled_patch_stats(fake, patch_size)
    m = real_sqrt_cov @ cov @ real_sqrt_cov
    m = (m + m.T) / 2
    tr_sqrt = torch.linalg.eigvalsh(m).clamp_min(1e-12).sqrt().sum()
    tr_real = (real_sqrt_cov @ real_sqrt_cov).trace()
    return ((real_mu - mu) ** 2).sum() + tr_real + cov.trace() - 2 * tr_sqrt


# ---------------------------------------------------------------------------- helpers
def arithmetic(cfg: Config, device: torch.device) -> contextlib.AbstractContextManager:
    """The forward passes of a training step: float32, or bfloat16 autocast (`precision`); backward runs outside."""
    if cfg.precision == "bfloat16":
        return torch.autocast(device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def full(x: torch.Tensor) -> torch.Tensor:
    """x in the training's own precision: a bfloat16 autocast result back to float32, anything else as it is."""
    return x.float() if x.dtype == torch.bfloat16 else x


def border_mean(x: torch.Tensor) -> float:
    """Mean of the border pixels of x (the `constant` padding value of IMA206)."""
    edges = (x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1])
    border = torch.cat([e.flatten() for e in edges])
    return float(border.mean())


def image_hash(x0: torch.Tensor) -> str:
    return hashlib.sha256(x0.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def side_by_side(xs: Sequence[torch.Tensor]) -> torch.Tensor:
    """The tensors of a pack's images stacked along the channels ([B, 3K, h, w]); one is left as it is."""
    return xs[0] if len(xs) == 1 else torch.cat(list(xs), 1)


def each_image(x: torch.Tensor, images: int) -> list[torch.Tensor]:
    """The inverse of `side_by_side`: the K images' [B, 3, h, w] tensors of a pack's [B, 3K, h, w]."""
    return [x] if images == 1 else [c.contiguous() for c in x.chunk(images, 1)]


def per_image_mean(x: torch.Tensor, images: int) -> torch.Tensor:
    """[K] means of a pack's [B, K * c, h, w] tensor, each over one image's channels (and B, h, w)."""
    return x.unflatten(1, (images, -1)).mean((0, 2, 3, 4))


def random_prevs(coarser: Sequence[SinGAN], shape: tuple[int, int], count: int, seed: int) -> Iterator:
    """An endless stream of up(x~_{n+1}) for random z ([1, 3K, h, w], one per image of the pack side by
    side), produced `count` at a time by batched passes through each image's frozen coarser stages.
    Each image draws from its own generator seeded with `seed`: it sees what it would see trained alone."""
    device = coarser[0].device
    generators = [torch.Generator(device=device).manual_seed(seed) for _ in coarser]
    while True:
        chunks = []
        for start in range(0, count, _SUBBATCH):
            b = min(_SUBBATCH, count - start)
            chunks.append(side_by_side([
                upsample(model.generate(b, generator=g), shape, model.config.upsample)
                for model, g in zip(coarser, generators, strict=True)
            ]))
        yield from torch.cat(chunks).unsqueeze(1)


def _new_networks(k: int, real: torch.Tensor, cfg: Config, init: Sequence[Stage], device: torch.device):
    """G_n, D_n of stage k for the K images of `real` ([M, 3K, h, w]), packed into one G and one D
    (model.pack). Image i's start from its G_{n+1}, D_{n+1} (init[i]) when the widths match, else from
    N(0, 0.02): one draw for all, the one each image alone would get."""
    channels = cfg.channels(k)
    fresh_G = Generator(channels, cfg.num_layer, cfg.ker_size, cfg.padding, 0.0, cfg.bias_init)
    fresh_D = Discriminator(channels, cfg.num_layer, cfg.ker_size, cfg.bias_init, dilation=cfg.d_dilation_at(k))
    Gs, Ds = [], []
    for i, x in enumerate(each_image(real, real.shape[1] // 3)):
        G, D = copy.deepcopy(fresh_G), copy.deepcopy(fresh_D)
        if init and init[i].generator.channels == channels:
            G.load_state_dict(init[i].generator.state_dict())
            if init[i].discriminator is not None:
                D.load_state_dict(init[i].discriminator.state_dict())
        G.pad_value.fill_(border_mean(x) if cfg.padding == "constant" else 0.0)
        Gs.append(G)
        Ds.append(D)
    (G, g_offsets), (D, d_offsets) = pack_counted(Gs), pack_counted(Ds)
    return (G.to(device).train(), g_offsets), (D.to(device).train(), d_offsets)


# ---------------------------------------------------------------------------- one scale
def train_stage(
    k: int,
    reals: Sequence[torch.Tensor],
    coarser: Sequence[SinGAN],
    cfg: Config,
    init: Sequence[Stage],
    device: torch.device,
    progress: bool = True,
    prev_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[list[Stage], list[torch.Tensor], list[dict[str, Any]], list[list[Stage]]]:
    """Train G_n, D_n at stage k = N - n with the coarser stages frozen, for a pack of K images at once.

    `reals[k]` is x_n of the pack, [M, 3K, h, w]: the K images side by side along the channels (M > 1
    only for a DoubleGAN, which trains alone: K = 1). `coarser` holds each image's frozen pyramid of
    stages 0 .. k-1 (empty at k = 0), `init` each image's stage to start from (empty: none). The pack
    is K trainings computed at once: grouped convolutions, per-channel BatchNorm, per-image losses
    summed (so each image's gradients are its own), Adam elementwise; every random draw is the one
    each image alone would make (the noise z_n and the penalty's weight are drawn once for all, as
    they all draw them from the same seed).
    `prev_transform`, if given, is applied to every random up(x~_{n+1}) fed to G_n (paint-to-image's
    fine-tune on colour-quantized inputs); the reconstruction input is left as it is.
    With concurrent_stages J > 1 (ConSinGAN) the J - 1 coarser generators train too (levers.Window; with
    alpha_window, their own reconstructions x~rec_m are pulled toward x_m as well). At the finest
    cfg.finest_scales scales, cfg.rec_steps_finest more G steps on the reconstruction loss alone follow each
    iteration's G steps. With cfg.completeness_at(k) > 0, the first G step of every iteration adds the patch
    completeness term (each of x_n's patches pulled toward its nearest patch of the step's first fake).
    With ema_half_life > 0 the generators end as the moving average of their weights over
    the iterations (levers.WeightAverage) instead of their last iterate.
    Returns per image: the stage, z* (drawn here when k = 0, else the coarser model's), a report, and
    the retrained coarser stages k-J+1 .. k-1 (empty when J = 1).
    """
    t0 = time.perf_counter()
    real = reals[k]  # x_n for each training image: [M, 3K, h, w]
    M, K, shape = real.shape[0], real.shape[1] // 3, tuple(real.shape[-2:])
    if K > 1 and M > 1:
        raise ValueError("a pack holds one image per pyramid: a DoubleGAN (several images) trains alone")
    (G, g_offsets), (D, d_offsets) = _new_networks(k, real, cfg, init, device)
    nets_offsets = ((G, g_offsets), (D, d_offsets))

    def for_each_image(x: torch.Tensor) -> torch.Tensor:  # one draw [B, 3, h, w], the same for all K
        return x if K == 1 else x.repeat(1, K, 1, 1)

    # The reconstruction: z*_N at the coarsest scale (noise_amp 1), zeros above it.
    if not coarser:
        z_star = for_each_image(coarsest_noise(M, shape, device))
        rec_prev = torch.zeros_like(real)
        rec_noise = z_star
        noise_amp = [1.0] * K
    else:
        z_star = side_by_side([c.z_star for c in coarser])
        rec = side_by_side([c.generate(M, fixed_noise_stages=k, image_index=torch.arange(M)) for c in coarser])
        rec_prev = upsample(rec, shape, cfg.upsample)
        rec_noise = torch.zeros_like(real)
        noise_amp = [cfg.noise_amp_at(k) * math.sqrt(F.mse_loss(p, x).item())
                     for p, x in zip(each_image(rec_prev, K), each_image(real, K), strict=True)]
    amp = sigma_per_channel(noise_amp, device)
    window = Window(k, min(cfg.concurrent_stages, k + 1) - 1, coarser, reals, cfg, device)
    if window.stages:  # ConSinGAN: the reconstruction goes through the window's stages too
        rec_window = window.reconstruction_input(M, z_star)

    iters = cfg.iterations(k, len(reals))
    rec_steps = cfg.rec_steps_at(k, len(reals))
    alpha = cfg.alpha_at(k, len(reals))
    complete = cfg.completeness_at(k)
    lr_g = cfg.lr_g_at(k, len(reals))
    frechet = cfg.adv_loss == "frechet-patch"
    dsteps = cfg.dsteps_at(k)
    gsteps = cfg.gsteps_at(k, len(reals))
    gp_every = cfg.gp_every_at(k)
    batch = cfg.batch_at(k)  # fakes per step: B draws of z_n and up(x~_{n+1}), against the one x_n
    fused = device.type in ("cpu", "cuda")  # one kernel per step instead of one per parameter
    g_params: list[dict[str, Any]] = [{"params": list(G.parameters())}]
    if window.stages:
        g_params.append({"params": window.parameters(), "lr": lr_g * cfg.concurrent_lr_scale})
    opt_g = torch.optim.Adam(g_params, lr=lr_g, betas=(cfg.beta1, cfg.beta2), fused=fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), fused=fused)
    milestones = [max(1, int(cfg.lr_decay_at * iters))]
    sched_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, milestones, gamma=cfg.lr_gamma)
    sched_d = torch.optim.lr_scheduler.MultiStepLR(opt_d, milestones, gamma=cfg.lr_gamma)
    if frechet:  # real_stats[i][j]: (mean, sqrt of covariance) of the patches of training image i of pack image j
        real_stats = [[(mu, psd_sqrt(cov)) for mu, cov in (pooled_patch_stats(x, cfg.patch_size)
                                                            for x in each_image(real[i : i + 1], K))]
                      for i in range(M)]

    if complete:  # the completeness term's targets, per training image and pack image: x_n's 5x5 patches, stride 2
        real_patches = [[patch_grid(x, stride=2) for x in each_image(real[i : i + 1], K)] for i in range(M)]

    reuse_d_input = cfg.g_input == "last-d" and dsteps > 0
    prev_seed = int(torch.randint(2**62, ()))
    frozen, first_shape = (window.frozen(), window.shapes[0]) if window.stages else (coarser, shape)
    if frozen:  # up(x~) of the frozen stages: up(x~_{n+1}), or with a window the input of its first stage
        prevs = random_prevs(frozen, first_shape, cfg.prefetch * cfg.draws_per_iteration(k, len(reals)), prev_seed)
    else:
        prevs = itertools.repeat(torch.zeros(1, 3 * K, *first_shape, device=device))
    if prev_transform is not None and not window.stages:
        prevs = map(prev_transform, prevs)

    def next_prev() -> torch.Tensor:  # a step's B up(x~) of the frozen stages, [B, 3K, h, w]
        return next(prevs) if batch == 1 else torch.cat([next(prevs) for _ in range(batch)])

    def fed(prev: torch.Tensor, noises: list[torch.Tensor]) -> torch.Tensor:  # up(x~_{n+1}) through the window
        x = window(prev, noises)
        return x if prev_transform is None or not window.stages else prev_transform(x)

    pick = (lambda: int(torch.randint(M, ()))) if M > 1 else (lambda: 0)
    curves: list[list[list[float]]] = [[] for _ in range(K)]
    every = max(1, iters // 200)
    loss_d = loss_adv = loss_rec = torch.zeros(K)
    desc = f"scale {k + 1}/{len(reals)} {shape[0]}x{shape[1]}" + (f", pack of {K}" if K > 1 else "")
    bar = tqdm(range(iters), desc=desc, disable=not progress, leave=False, dynamic_ncols=True)
    redraw_z_star = not coarser and cfg.rec_noise == "redraw"
    per_iteration = cfg.noise_draw == "iteration"

    def draw_z() -> torch.Tensor:  # noise_amp_n * z_n for one step's B fakes
        return amp * for_each_image(stage_noise(k, batch, shape, device))

    def mse(x: torch.Tensor, target: torch.Tensor) -> torch.Tensor:  # [K]: each image's ||x - target||^2
        return per_image_mean(F.mse_loss(full(x), target, reduction="none"), K)

    def reconstruction_loss(i: int) -> tuple[torch.Tensor, torch.Tensor]:
        """||G_n(z*, up(x~rec_{n+1})) - x_n||^2 of training image i, and the G loss's whole reconstruction term:
        alpha times it, plus alpha_window times each window stage's own ||x~rec_m - x_m||^2 when set."""
        window_recs: list[torch.Tensor] = []
        if window.stages:
            rec_in, window_recs = window.trace(rec_window[0][i : i + 1], [z[i : i + 1] for z in rec_window[1]])
        else:
            rec_in = rec_prev[i : i + 1]
        loss = mse(G(amp * rec_noise[i : i + 1], rec_in), real[i : i + 1])
        term = alpha * loss
        if cfg.alpha_window:
            for m, rec_m in zip(window.stages, window_recs, strict=True):
                term = term + cfg.alpha_window * mse(rec_m, reals[m][i : i + 1])
        return loss, term

    precision = arithmetic(cfg, device)  # entered around the forward passes of every step
    ema_decay = cfg.ema_decay(iters)
    average = WeightAverage([G, *window.nets], ema_decay)  # none at ema_half_life 0
    d_step = gp_evaluations = 0
    stopper = EarlyStop(cfg.early_stop_patience, cfg.early_stop_tol, K)
    # image -> its G_n, D_n, window generators, iterations, penalty evaluations and z* when it stopped early
    finished: dict[int, tuple[Generator, Discriminator, list, int, int, torch.Tensor]] = {}
    for it in bar:
        if redraw_z_star:  # the authors' code: z* redrawn every iteration, the last draw kept
            z_star = rec_noise = for_each_image(coarsest_noise(M, shape, device))
        z_it = draw_z() if per_iteration else None
        # ---- D steps: maximise D(x_n) - D(x~_n) - GP, for each image
        for _ in range(dsteps):
            i = pick()
            x = real[i : i + 1]
            z, prev, noises = (z_it if per_iteration else draw_z()), next_prev(), window.draw_noise(batch)
            with precision:
                with torch.no_grad():
                    fake = full(G(z, fed(prev, noises)))
                # separate passes: batching x_n, fake and interpolate would triple the GP's double backward
                loss_d = -per_image_mean(full(D(x)), K) + per_image_mean(full(D(fake)), K)
                if d_step % gp_every == 0:  # lazy regularization: every gp_every-th step, weight x gp_every
                    at = fake[: cfg.gp_samples] if cfg.gp_samples else fake
                    loss_d = loss_d + gradient_penalty(D, x, at, cfg.gp_weight * gp_every)
                    gp_evaluations += 1
            d_step += 1
            opt_d.zero_grad(set_to_none=True)
            loss_d.sum().backward()  # the images' losses are independent: each gets its own gradients
            opt_d.step()
        # ---- G steps: each on a freshly generated fake (IMA206's fix to the reference), or (g_input = last-d,
        # the authors' code) on the inputs of the last D step
        D.requires_grad_(False)
        for g_step in range(gsteps):
            i = pick()
            if not reuse_d_input:
                z, prev, noises = (z_it if per_iteration else draw_z()), next_prev(), window.draw_noise(batch)
            with precision:
                fake = G(z, fed(prev, noises))
                if frechet:
                    loss_adv = torch.stack([frechet_patch_loss(*stats, full(f), cfg.patch_size) for stats, f
                                            in zip(real_stats[i], each_image(fake, K), strict=True)]).float()
                else:
                    loss_adv = -per_image_mean(full(D(fake)), K)
                loss_rec, rec_term = reconstruction_loss(i)
                loss_g = loss_adv + rec_term
                if complete and g_step == 0:  # once per iteration, on the first fake of its first G step
                    loss_g = loss_g + complete * completeness(real_patches[i], full(fake[:1]))
            opt_g.zero_grad(set_to_none=True)
            loss_g.sum().backward()
            opt_g.step()
        for _ in range(rec_steps):  # the reconstruction alone: G_n (and the window) toward x_n, no D_n
            with precision:
                loss_rec, rec_term = reconstruction_loss(pick())
            opt_g.zero_grad(set_to_none=True)
            rec_term.sum().backward()
            opt_g.step()
        D.requires_grad_(True)
        average.update()
        if dsteps:
            sched_d.step()
        sched_g.step()
        stopped = stopper.update(loss_adv.detach(), loss_rec.detach()) if stopper.patience else []
        if it % every == 0 or it == iters - 1 or stopped:
            losses = [loss_d.tolist(), loss_adv.tolist(), loss_rec.tolist()]
            for j, curve in enumerate(curves):
                if j not in finished and (it % every == 0 or it == iters - 1 or j in stopped):
                    curve.append([it, *(values[j] for values in losses)])
            bar.set_postfix(D=f"{sum(losses[0]) / K:.3f}", G=f"{sum(losses[1]) / K:.3f}",
                            rec=f"{sum(losses[2]) / K:.4f}")
        for j in stopped:  # in a pack the others go on; image j keeps the networks it had here
            if j not in finished:
                with average.applied():
                    Gj, Dj = (unpack_counted(copy.deepcopy(net), offsets)[j] for net, offsets in nets_offsets)
                    finished[j] = (Gj, Dj, window.snapshot(j), it + 1, gp_evaluations, each_image(z_star, K)[j])
        if len(finished) == K:
            break
    bar.close()

    average.apply()
    Gs, Ds = (unpack_counted(net.eval().requires_grad_(False), offsets) for net, offsets in nets_offsets)
    ran, penalties, z_stars = [iters] * K, [gp_evaluations] * K, each_image(z_star, K)
    for j, (Gj, Dj, _, n, p, z) in finished.items():  # (a redrawn z* is the one of its last iteration)
        Gs[j], Ds[j], ran[j], penalties[j] = Gj.eval().requires_grad_(False), Dj.eval().requires_grad_(False), n, p
        z_stars[j] = z
    retrained = window.finish({j: f[2] for j, f in finished.items()})
    seconds = time.perf_counter() - t0
    stages, reports = [], []
    for j in range(K):
        stages.append(Stage(Gs[j], noise_amp[j], shape, Ds[j]))
        reports.append({
            "stage": k,
            "scale": len(reals) - 1 - k,
            "shape": list(shape),
            "channels": cfg.channels(k),
            "noise_amp": noise_amp[j],
            "alpha": alpha,
            "lr_g": lr_g,  # G_n's learning rate before the decay (the window's: x concurrent_lr_scale)
            "dsteps": dsteps,  # D steps per iteration at this scale
            "gsteps": gsteps,  # G steps per iteration at this scale
            "rec_steps": rec_steps,  # reconstruction-only G steps per iteration at this scale
            "batch": batch,  # fakes per D and G step
            "completeness": complete,  # the weight of the patch completeness term on G_n (0: none)
            "d_dilation": cfg.d_dilation_at(k),  # of D_n's body convolutions (1: the paper's D_n)
            "iterations": ran[j],  # what the scale ran: fewer than planned_iterations when it stopped early
            "planned_iterations": iters,
            "gp_every": gp_every,  # the penalty's interval in D steps at this scale
            "gp_evaluations": penalties[j],  # D steps on which the gradient penalty was evaluated
            "ema_decay": ema_decay,  # of the generators' weight average per iteration (0: the last iterate)
            "trained_stages": [*window.stages, k],  # the generators this scale updated (ConSinGAN: a window)
            "seconds": seconds / K,  # the pack's time, shared equally
            "loss_d": curves[j][-1][1],
            "loss_adv": curves[j][-1][2],
            "loss_rec": curves[j][-1][3],
            "curve": curves[j],  # [iteration, loss_d, loss_adv, loss_rec]
        })
    return stages, z_stars, reports, retrained


# ---------------------------------------------------------------------------- the pyramid
def prepare_reals(images: list[torch.Tensor], cfg: Config) -> tuple[list[torch.Tensor], float]:
    """x_N .. x_0 for one or more images (all resized to the first one's shape), [M, 3, h, w] each."""
    h, w = images[0].shape[-2:]
    pyr = pyramid_for(h, w, cfg)
    per_image = [build_reals(resize(img, (h, w)), pyr) for img in images]
    return [torch.cat([r[k] for r in per_image]) for k in range(pyr.num_scales)], pyr.scale_factor


def _finished(out: str | None, meta: dict[str, Any], device: torch.device) -> SinGAN | None:
    """The model saved in `out` by an earlier run of this image and config (None: nothing there)."""
    if out is None or not model_exists(out):
        return None
    done = SinGAN.load(out, device)
    if (done.meta.get("image_hash"), done.meta.get("config_hash")) != (meta["image_hash"], meta["config_hash"]):
        raise ValueError(f"{out} holds a model of another image or config; choose another output folder")
    return done


def train(
    image: torch.Tensor | str | Sequence[torch.Tensor | str],
    cfg: Config,
    *,
    out: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_stage: Callable[[dict[str, Any]], None] | None = None,
    scales: int | None = None,
) -> SinGAN:
    """Train a SinGAN pyramid on one image (or several: DoubleGAN); returns the trained SinGAN.

    With `out`, the pyramid so far is saved there after every scale, and a run restarted into the
    same folder (same image, same config) resumes from the last finished scale.
    `on_stage(report)` is called after each finished scale. With `scales`, only the coarsest that many scales
    train: the partial pyramid (G_N .. G_{N-scales+1}, exactly those of a full run) is returned, and saved as
    the checkpoint a later call without it resumes.
    Several images train with `rec_noise=fixed` (recorded in the model's config): each image's own z* is what
    tells G_N which image to reconstruct, so it cannot be redrawn.
    """
    reals, r = prepare_reals(as_images(image), cfg)
    if reals[-1].shape[0] > 1 and cfg.rec_noise == "redraw":
        cfg = cfg.replace(rec_noise="fixed")
    callback = None if on_stage is None else (lambda _, report: on_stage(report))
    (model,) = _train_pack([reals], r, cfg, [out], device, progress, callback, scales)
    return model


def train_pack(
    images: Sequence[torch.Tensor | str],
    cfg: Config,
    *,
    outs: Sequence[str | None] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_stage: Callable[[int, dict[str, Any]], None] | None = None,
) -> list[SinGAN]:
    """Train one pyramid per image, K images at once as one pack (`train_stage`): each model is the
    one `train` would give the image alone (the same weights, losses and samples, to float rounding).

    The images must have the same training shapes (the same size after the max_size rule). With
    `outs` (one folder per image), every model is saved after every scale, exactly as `train` saves it,
    and a restarted run resumes the pack from the last scale all its images finished.
    `on_stage(index, report)` is called for each image after each finished scale.
    """
    items = [as_images(image) for image in images]
    if not items:
        raise ValueError("no image given")
    if any(len(x) > 1 for x in items):
        raise ValueError("a pack trains one image per pyramid: pass [1, 3, H, W] images (a DoubleGAN trains alone)")
    outs = list(outs) if outs is not None else [None] * len(items)
    if len(outs) != len(items):
        raise ValueError(f"{len(items)} images but {len(outs)} output folders")
    prepared = [prepare_reals(x, cfg) for x in items]
    shapes = [[tuple(x.shape[-2:]) for x in reals] for reals, _ in prepared]
    for i, s in enumerate(shapes):
        if s != shapes[0]:
            raise ValueError(
                f"image {i} does not fit the pack: its training shapes are {_pyramid_text(s)}, image 0's are "
                f"{_pyramid_text(shapes[0])}; a pack holds images of one size after max_size={cfg.max_size}"
            )
    return _train_pack([reals for reals, _ in prepared], prepared[0][1], cfg, outs, device, progress, on_stage)


def _pyramid_text(shapes: list[tuple[int, int]]) -> str:
    return f"{len(shapes)} scales, {shapes[0][0]}x{shapes[0][1]} .. {shapes[-1][0]}x{shapes[-1][1]}"


def _train_pack(
    image_reals: list[list[torch.Tensor]],
    r: float,
    cfg: Config,
    outs: list[str | None],
    device: str | torch.device | None,
    progress: bool,
    on_stage: Callable[[int, dict[str, Any]], None] | None,
    scales: int | None = None,
) -> list[SinGAN]:
    """The loop over scales for K pyramids of the same shapes (K = 1: one image, or one DoubleGAN), up to the
    coarsest `scales` of them when given."""
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    if cfg.precision == "bfloat16" and not native_bfloat16(device):
        warnings.warn(f"precision=bfloat16 is emulated on this {device.type} (no AMX, AVX512-BF16 or bfloat16 GPU) "
                      "and trains slower than float32: --set precision=float32 is faster here", stacklevel=3)
    K, num_scales = len(image_reals), len(image_reals[0])
    if scales is not None and not 1 <= scales <= num_scales:
        raise ValueError(f"scales must lie in 1 .. {num_scales} (the pyramid's scales), got {scales}")
    stop = num_scales if scales is None else scales
    for k, x in enumerate(image_reals[0]):  # before anything trains: a dilated D_n must fit inside x_n
        if min(x.shape[-2:]) < cfg.d_receptive_field(k):
            raise ValueError(f"d_dilation_coarse={cfg.d_dilation_coarse}: D_n at scale {k} judges "
                             f"{cfg.d_receptive_field(k)} px patches but x_n is {x.shape[-2]}x{x.shape[-1]}; "
                             "lower it or raise min_size")
    metas = [{"image_hash": image_hash(reals[-1]), "config_hash": cfg.hash(), "complete": False}
             for reals in image_reals]
    image_reals = [[x.to(device) for x in reals] for reals in image_reals]
    reals = [side_by_side([x[k] for x in image_reals]) for k in range(num_scales)]

    done = [_finished(out, meta, device) for out, meta in zip(outs, metas, strict=True)]
    start = min(m.num_stages if m is not None else 0 for m in done)  # the last scale all have finished
    if start >= stop:  # every scale asked for was trained before: the models saved, up to the `stop` coarsest
        return [m.coarsest(stop) for m in done]
    stages: list[list[Stage]] = [m.stages[:start] if start else [] for m in done]
    z_stars = [m.z_star if start else torch.zeros(0) for m in done]
    stage_reports = [list(m.report.get("stages", []))[:start] if start else [] for m in done]
    for stage in (s for image_stages in stages for s in image_stages):  # finished discriminators stay frozen
        if stage.discriminator is not None:
            stage.discriminator.eval().requires_grad_(False)

    t_start = time.perf_counter() - K * sum(s["seconds"] for s in stage_reports[0])  # the pack's time so far
    models: list[SinGAN] = []
    for k in range(start, stop):
        torch.manual_seed(cfg.seed * 1009 + k)  # per-scale seeds: a resumed run continues identically
        coarser = [SinGAN(cfg, s, z, x[:k], r) for s, z, x in zip(stages, z_stars, image_reals, strict=True)] \
            if k > 0 else []
        init = [s[-1] for s in stages] if k > 0 else []
        new, z_stars, new_reports, retrained = train_stage(k, reals, coarser, cfg, init, device, progress)
        complete = k == num_scales - 1
        seconds = (time.perf_counter() - t_start) / K  # each image's share of the pack's time
        models = []
        for i in range(K):
            stages[i] = [*stages[i][: k - len(retrained[i])], *retrained[i], new[i]]
            stage_reports[i].append(new_reports[i])
            report = summarize(stage_reports[i], seconds, cfg, device, r, K)
            models.append(SinGAN(cfg, stages[i], z_stars[i], image_reals[i][: k + 1], r, report,
                                 {**metas[i], "complete": complete}))
            if outs[i] is not None:
                models[i].save(outs[i])
            if on_stage is not None:
                on_stage(i, new_reports[i])
    return models


def summarize(
    stage_reports: list[dict[str, Any]], seconds: float, cfg: Config, device: torch.device, r: float, pack: int = 1
):
    return {
        "num_scales": len(stage_reports),
        "scale_factor": r,
        "config_hash": cfg.hash(),
        "epoch_decay": cfg.epoch_decay,
        "device": str(device),
        "machine": device_name(device),  # the GPU or CPU model that took total_seconds
        "total_seconds": seconds,  # in a pack of K, the pack's time / K
        "pack_size": pack,
        "total_iterations": sum(s["iterations"] for s in stage_reports),
        "stages": stage_reports,
    }
