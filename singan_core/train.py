"""Training, coarse to fine (SinGAN section 2.2, Algorithm in the supplementary material).

Scale n is trained after every coarser scale is frozen, with

    min_{G_n} max_{D_n}  L_adv(G_n, D_n) + alpha * L_rec(G_n)

L_adv is WGAN-GP (or, as a variant from seed 002, a Frechet distance between the 11x11 patch
statistics of x_n and of the fake, with no discriminator). L_rec = ||G_n(0, up(x~rec_{n+1})) - x_n||^2
on the fixed noise {z*, 0, ..., 0}. sigma_n = noise_amp * RMSE(x_n, up(x~rec_{n+1})).

Speed: the coarser generators are frozen (eval-mode BatchNorm), so the up(x~_{n+1}) of many
iterations are drawn in batched forward passes up front; D's weights take no gradients in the G steps
nor in the penalty's inner gradient; wide convolutions use Winograd (conv.py); the reals are contiguous
NCHW tensors (channels-last ones made every convolution on them slower).
"""

from __future__ import annotations

import hashlib
import math
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import fsspec
import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from .config import Config
from .images import resize
from .model import Discriminator, Generator
from .pyramid import build_reals, pyramid_for
from .singan import SinGAN, Stage, as_images, coarsest_noise, resolve_device, stage_noise, upsample

_SUBBATCH = 16  # bounds the memory of batched coarser-scale passes


# ---------------------------------------------------------------------------- losses
def gradient_penalty(D: Discriminator, real: torch.Tensor, fake: torch.Tensor, weight: float) -> torch.Tensor:
    """The WGAN-GP penalty term alone (Gulrajani et al.): per-pixel gradient norm over channels."""
    a = torch.rand(1, 1, 1, 1, device=real.device)
    interp = (a * real + (1 - a) * fake).requires_grad_(True)
    (grad,) = torch.autograd.grad(D(interp).sum(), interp, create_graph=True)
    return weight * ((grad.norm(2, dim=1) - 1) ** 2).mean()


def patch_stats(x: torch.Tensor, patch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean and covariance of all patch_size x patch_size patches of x (each patch a 3*p*p vector)."""
    p = F.unfold(x, patch_size).transpose(1, 2).reshape(-1, 3 * patch_size**2).double()
    mu = p.mean(0)
    d = p - mu
    return mu, d.T @ d / max(p.shape[0] - 1, 1)


def _sqrt_psd(m: torch.Tensor) -> torch.Tensor:
    vals, vecs = torch.linalg.eigh(m)
    return (vecs * vals.clamp_min(0).sqrt()) @ vecs.T


def frechet_patch_loss(real_mu: torch.Tensor, real_sqrt_cov: torch.Tensor, fake: torch.Tensor, patch_size: int):
    """||mu_r - mu_f||^2 + Tr(S_r + S_f - 2 (S_r S_f)^(1/2)), with Tr((S_r S_f)^(1/2)) computed as
    Tr((S_r^(1/2) S_f S_r^(1/2))^(1/2)) from a symmetric eigen-decomposition (differentiable)."""
    mu, cov = patch_stats(fake, patch_size)
    m = real_sqrt_cov @ cov @ real_sqrt_cov
    m = (m + m.T) / 2
    tr_sqrt = torch.linalg.eigvalsh(m).clamp_min(1e-12).sqrt().sum()
    tr_real = (real_sqrt_cov @ real_sqrt_cov).trace()
    return ((real_mu - mu) ** 2).sum() + tr_real + cov.trace() - 2 * tr_sqrt


# ---------------------------------------------------------------------------- helpers
def border_mean(x: torch.Tensor) -> float:
    """Mean of the border pixels of x (the `constant` padding value of seed 002)."""
    edges = (x[..., 0, :], x[..., -1, :], x[..., :, 0], x[..., :, -1])
    border = torch.cat([e.flatten() for e in edges])
    return float(border.mean())


def image_hash(x0: torch.Tensor) -> str:
    return hashlib.sha256(x0.detach().cpu().contiguous().numpy().tobytes()).hexdigest()[:16]


def random_prevs(coarser: SinGAN | None, shape: tuple[int, int], count: int, device: torch.device) -> Iterator:
    """An endless stream of up(x~_{n+1}) for random z, produced `count` at a time by batched passes
    through the frozen coarser stages (zeros at the coarsest scale)."""
    while True:
        if coarser is None:
            yield from torch.zeros(count, 1, 3, *shape, device=device)
            continue
        chunks = []
        for start in range(0, count, _SUBBATCH):
            b = min(_SUBBATCH, count - start)
            chunks.append(upsample(coarser.generate(b), shape, coarser.config.upsample))
        yield from torch.cat(chunks).unsqueeze(1)


def _new_networks(k: int, real: torch.Tensor, cfg: Config, init: Stage | None, device: torch.device):
    """G_n, D_n for stage k; copied from G_{n+1}, D_{n+1} when the widths match, else N(0, 0.02)."""
    channels = cfg.channels(k)
    pad_value = border_mean(real) if cfg.padding == "constant" else 0.0
    G = Generator(channels, cfg.num_layer, cfg.ker_size, cfg.padding, pad_value, cfg.bias_init)
    D = Discriminator(channels, cfg.num_layer, cfg.ker_size, cfg.bias_init)
    if init is not None and init.generator.head[0].out_channels == channels:
        state = dict(init.generator.state_dict())
        state["pad_value"] = G.pad_value
        G.load_state_dict(state)
        if init.discriminator is not None:
            D.load_state_dict(init.discriminator.state_dict())
    return G.to(device).train(), D.to(device).train()


# ---------------------------------------------------------------------------- one scale
def train_stage(
    k: int,
    reals: Sequence[torch.Tensor],
    coarser: SinGAN | None,
    cfg: Config,
    init: Stage | None,
    device: torch.device,
    progress: bool = True,
    prev_transform: Callable[[torch.Tensor], torch.Tensor] | None = None,
) -> tuple[Stage, torch.Tensor, dict[str, Any]]:
    """Train G_n, D_n at stage k = N - n with the coarser stages frozen.

    `prev_transform`, if given, is applied to every random up(x~_{n+1}) fed to G_n (paint-to-image's
    fine-tune on colour-quantized inputs); the reconstruction input is left as it is.
    Returns the stage, z* (drawn here when k = 0, else the coarser model's) and a report.
    """
    t0 = time.perf_counter()
    real = reals[k]  # x_n for each training image: [M, 3, h, w]
    M, shape = real.shape[0], tuple(real.shape[-2:])
    G, D = _new_networks(k, real, cfg, init, device)

    # The reconstruction: z*_N at the coarsest scale (noise_amp 1), zeros above it.
    if coarser is None:
        z_star = coarsest_noise(M, shape, device)
        rec_prev = torch.zeros_like(real)
        rec_noise = z_star
        noise_amp = 1.0
    else:
        z_star = coarser.z_star
        rec = coarser.generate(M, fixed_noise_stages=k, image_index=torch.arange(M))
        rec_prev = upsample(rec, shape, cfg.upsample)
        rec_noise = torch.zeros_like(real)
        noise_amp = cfg.noise_amp * math.sqrt(F.mse_loss(rec_prev, real).item())

    iters = cfg.iterations(k)
    frechet = cfg.adv_loss == "frechet-patch"
    dsteps = 0 if frechet else cfg.dsteps
    fused = device.type in ("cpu", "cuda")  # one kernel per step instead of one per parameter
    opt_g = torch.optim.Adam(G.parameters(), lr=cfg.lr_g, betas=(cfg.beta1, cfg.beta2), fused=fused)
    opt_d = torch.optim.Adam(D.parameters(), lr=cfg.lr_d, betas=(cfg.beta1, cfg.beta2), fused=fused)
    milestones = [max(1, int(cfg.lr_decay_at * iters))]
    sched_g = torch.optim.lr_scheduler.MultiStepLR(opt_g, milestones, gamma=cfg.lr_gamma)
    sched_d = torch.optim.lr_scheduler.MultiStepLR(opt_d, milestones, gamma=cfg.lr_gamma)
    if frechet:
        real_stats = []
        for i in range(M):
            mu, cov = patch_stats(real[i : i + 1], cfg.patch_size)
            real_stats.append((mu, _sqrt_psd(cov)))

    reuse_d_input = cfg.g_input == "last-d" and dsteps > 0
    prevs_per_iteration = dsteps + (0 if reuse_d_input else cfg.gsteps)
    prevs = random_prevs(coarser, shape, cfg.prefetch * prevs_per_iteration, device)
    if prev_transform is not None:
        prevs = map(prev_transform, prevs)
    pick = (lambda: int(torch.randint(M, ()))) if M > 1 else (lambda: 0)
    curve: list[list[float]] = []
    every = max(1, iters // 200)
    loss_d = loss_adv = loss_rec = torch.zeros(())
    bar = tqdm(range(iters), desc=f"scale {k + 1}/{len(reals)} {shape[0]}x{shape[1]}", disable=not progress,
               leave=False, dynamic_ncols=True)
    redraw_z_star = coarser is None and cfg.rec_noise == "redraw"
    per_iteration = cfg.noise_draw == "iteration"

    def draw_z() -> torch.Tensor:  # noise_amp_n * z_n for one step
        return noise_amp * stage_noise(k, 1, shape, device)

    for it in bar:
        if redraw_z_star:  # the authors' code: z* redrawn every iteration, the last draw kept
            z_star = rec_noise = coarsest_noise(M, shape, device)
        z_it = draw_z() if per_iteration else None
        # ---- D steps: maximise D(x_n) - D(x~_n) - GP
        for _ in range(dsteps):
            i = pick()
            x = real[i : i + 1]
            z, prev = (z_it if per_iteration else draw_z()), next(prevs)
            with torch.no_grad():
                fake = G(z, prev)
            # separate passes: batching x_n, fake and interpolate would triple the GP's double backward
            loss_d = -D(x).mean() + D(fake).mean() + gradient_penalty(D, x, fake, cfg.gp_weight)
            opt_d.zero_grad(set_to_none=True)
            loss_d.backward()
            opt_d.step()
        # ---- G steps: each on a freshly generated fake (IMA206's fix to the reference), or (g_input = last-d,
        # the authors' code) on the inputs of the last D step
        D.requires_grad_(False)
        for _ in range(cfg.gsteps):
            i = pick()
            if not reuse_d_input:
                z, prev = (z_it if per_iteration else draw_z()), next(prevs)
            fake = G(z, prev)
            if frechet:
                loss_adv = frechet_patch_loss(*real_stats[i], fake, cfg.patch_size).float()
            else:
                loss_adv = -D(fake).mean()
            rec = G(noise_amp * rec_noise[i : i + 1], rec_prev[i : i + 1])
            loss_rec = F.mse_loss(rec, real[i : i + 1])
            opt_g.zero_grad(set_to_none=True)
            (loss_adv + cfg.alpha * loss_rec).backward()
            opt_g.step()
        D.requires_grad_(True)
        if dsteps:
            sched_d.step()
        sched_g.step()
        if it % every == 0 or it == iters - 1:
            curve.append([it, loss_d.item(), loss_adv.item(), loss_rec.item()])
            bar.set_postfix(D=f"{curve[-1][1]:.3f}", G=f"{curve[-1][2]:.3f}", rec=f"{curve[-1][3]:.4f}")
    bar.close()

    G.eval().requires_grad_(False)
    D.eval().requires_grad_(False)
    report = {
        "stage": k,
        "scale": len(reals) - 1 - k,
        "shape": list(shape),
        "channels": cfg.channels(k),
        "noise_amp": noise_amp,
        "iterations": iters,
        "seconds": time.perf_counter() - t0,
        "loss_d": loss_d.item(),
        "loss_adv": loss_adv.item(),
        "loss_rec": loss_rec.item(),
        "curve": curve,  # [iteration, loss_d, loss_adv, loss_rec]
    }
    return Stage(G, noise_amp, shape, D), z_star, report


# ---------------------------------------------------------------------------- the pyramid
def prepare_reals(images: list[torch.Tensor], cfg: Config) -> tuple[list[torch.Tensor], float]:
    """x_N .. x_0 for one or more images (all resized to the first one's shape), [M, 3, h, w] each."""
    h, w = images[0].shape[-2:]
    pyr = pyramid_for(h, w, cfg)
    per_image = [build_reals(resize(img, (h, w)), pyr) for img in images]
    return [torch.cat([r[k] for r in per_image]) for k in range(pyr.num_scales)], pyr.scale_factor


def _model_exists(url: str) -> bool:
    fs, path = fsspec.core.url_to_fs(url.rstrip("/") + "/model.json")
    return fs.exists(path)


def train(
    image: torch.Tensor | str | Sequence[torch.Tensor | str],
    cfg: Config,
    *,
    out: str | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    on_stage: Callable[[dict[str, Any]], None] | None = None,
) -> SinGAN:
    """Train a SinGAN pyramid on one image (or several: seed 000's DoubleGAN).

    With `out`, the pyramid so far is saved there after every scale, and a run restarted into the
    same folder (same image, same config) resumes from the last finished scale.
    `on_stage(report)` is called after each finished scale.
    """
    device = resolve_device(device) if not isinstance(device, torch.device) else device
    if device.type == "cuda":
        torch.backends.cudnn.benchmark = True
    reals_cpu, r = prepare_reals(as_images(image), cfg)
    reals = [x.to(device) for x in reals_cpu]
    meta = {"image_hash": image_hash(reals_cpu[-1]), "config_hash": cfg.hash(), "complete": False}

    stages: list[Stage] = []
    stage_reports: list[dict[str, Any]] = []
    z_star = torch.zeros(0)
    if out is not None and _model_exists(out):
        done = SinGAN.load(out, device)
        if (done.meta.get("image_hash"), done.meta.get("config_hash")) != (meta["image_hash"], meta["config_hash"]):
            raise ValueError(f"{out} holds a model of another image or config; choose another output folder")
        if done.meta.get("complete"):
            return done
        stages, z_star, stage_reports = done.stages, done.z_star, list(done.report.get("stages", []))
        for stage in stages:  # discriminators of finished scales stay frozen
            if stage.discriminator is not None:
                stage.discriminator.eval().requires_grad_(False)

    t_start = time.perf_counter() - sum(s["seconds"] for s in stage_reports)
    model = None
    for k in range(len(stages), len(reals)):
        torch.manual_seed(cfg.seed * 1009 + k)  # per-scale seeds: a resumed run continues identically
        coarser = SinGAN(cfg, stages, z_star, reals[:k], r) if k > 0 else None
        stage, z_star, stage_report = train_stage(k, reals, coarser, cfg, stages[-1] if stages else None, device,
                                                  progress)
        stages = [*stages, stage]
        stage_reports.append(stage_report)
        complete = k == len(reals) - 1
        report = summarize(stage_reports, time.perf_counter() - t_start, cfg, device, r)
        model = SinGAN(cfg, stages, z_star, reals[: k + 1], r, report, {**meta, "complete": complete})
        if out is not None:
            model.save(out)
        if on_stage is not None:
            on_stage(stage_report)
    assert model is not None
    return model


def summarize(stage_reports: list[dict[str, Any]], seconds: float, cfg: Config, device: torch.device, r: float):
    return {
        "num_scales": len(stage_reports),
        "scale_factor": r,
        "config_hash": cfg.hash(),
        "epoch_decay": cfg.epoch_decay,
        "device": str(device),
        "total_seconds": seconds,
        "total_iterations": sum(s["iterations"] for s in stage_reports),
        "stages": stage_reports,
    }
