"""The speed levers of issue 12: each a config field whose default is the paper's, recorded in the report."""

from __future__ import annotations

import importlib
import warnings

import pytest
import torch

from singan_core import Config, SinGAN, preset, train
from singan_core.singan import upsample

from .conftest import synthetic_image

CFG = preset("test").replace(niter=8)
PAPER_HASH = "b7ecda3debb4"  # preset("paper") since issue 11 (rec_noise=redraw)


def _trained(cfg: Config, **kw) -> SinGAN:
    return train(synthetic_image(36, 40, seed=3), cfg, progress=False, **kw)


def _rec_rmse(model: SinGAN) -> float:
    return float((model.reconstruct() - model.reals[-1]).pow(2).mean().sqrt())


def test_paper_is_unchanged_by_the_lever_fields_at_their_defaults():
    assert preset("paper").hash() == PAPER_HASH
    defaults = {"gp_every": 1, "early_stop_patience": 0, "concurrent_stages": 1}
    assert preset("paper").replace(**defaults).hash() == PAPER_HASH
    for change in ({"gp_every": 4}, {"early_stop_patience": 50}, {"concurrent_stages": 2}):
        assert preset("paper").replace(**change).hash() != PAPER_HASH
    # the same losses for a fixed seed: the defaults spelled out train exactly what the config without them trains
    a = _trained(CFG)
    b = _trained(CFG.replace(**defaults, early_stop_tol=0.01, concurrent_lr_scale=0.1, precision="float32",
                             alpha_fine=0.0, alpha_fine_scales=2, dsteps_coarse=0, niter_coarse=0, coarse_scales=2,
                             alpha_coarse=0.0, batch=1, batch_coarse=0, gsteps_coarse=0, niter_finest=0,
                             rec_steps_finest=0, finest_scales=1, d_dilation_coarse=1, lr_g_finest=0.0,
                             gp_every_coarse=0, gp_samples=0, alpha_window=0.0,
                             noise_amp_coarse=0.0, ema_half_life=0.0, lr_g_finest_channels=0, niter_layout=0,
                             completeness_coarse=0.0, completeness=0.0))
    assert [s["curve"] for s in a.report["stages"]] == [s["curve"] for s in b.report["stages"]]
    assert all(s["gp_evaluations"] == 8 * CFG.dsteps for s in a.report["stages"])


def test_lazy_gradient_penalty_is_evaluated_every_nth_d_step():
    cfg = CFG.replace(dsteps=3, gp_every=4)
    model = _trained(cfg)
    for stage in model.report["stages"]:
        assert stage["gp_evaluations"] == -(-8 * 3 // 4)  # D steps 0, 4, 8, ... of 24
    assert not torch.equal(model.sample(1, seed=0), _trained(CFG.replace(dsteps=3)).sample(1, seed=0))


def test_gp_every_coarse_sets_the_penalty_interval_of_the_coarsest_scales_only():
    cfg = CFG.replace(dsteps=3, gp_every=4, gp_every_coarse=1, coarse_scales=1)
    assert [cfg.gp_every_at(k) for k in range(3)] == [1, 4, 4]
    assert [CFG.replace(gp_every=4).gp_every_at(k) for k in range(3)] == [4, 4, 4]  # unset: gp_every everywhere
    assert preset("paper").replace(gp_every_coarse=2).hash() != PAPER_HASH
    model, lazy = _trained(cfg), _trained(CFG.replace(dsteps=3, gp_every=4))
    stages, before = model.report["stages"], lazy.report["stages"]
    n = len(stages)
    assert [s["gp_every"] for s in stages] == [1] + [4] * (n - 1)
    assert [s["gp_evaluations"] for s in stages] == [8 * 3] + [-(-8 * 3 // 4)] * (n - 1)  # all, then 0, 4, 8 ..
    assert stages[0]["curve"] != before[0]["curve"]


def test_gp_samples_evaluates_the_penalty_at_the_first_fakes_of_a_step_only(monkeypatch):
    train_module = importlib.import_module("singan_core.train")  # the module: the package exports train()
    seen: list[int] = []
    penalty = train_module.gradient_penalty

    def spy(D, real, fake, weight):
        seen.append(fake.shape[0])
        return penalty(D, real, fake, weight)

    monkeypatch.setattr(train_module, "gradient_penalty", spy)
    cfg = CFG.replace(batch=3, gp_samples=1)
    assert preset("paper").replace(gp_samples=1).hash() != PAPER_HASH
    model = _trained(cfg)
    assert seen and set(seen) == {1}  # one interpolate per penalty instead of one per fake (3)
    seen.clear()
    every = _trained(CFG.replace(batch=3))
    assert set(seen) == {3}
    assert model.report["stages"][0]["curve"] != every.report["stages"][0]["curve"]
    # as many samples as fakes, or more, is the full penalty: the same training
    full = _trained(CFG.replace(batch=3, gp_samples=5))
    assert [s["curve"] for s in full.report["stages"]] == [s["curve"] for s in every.report["stages"]]


def test_alpha_fine_weights_the_reconstruction_of_the_finest_scales_only():
    cfg = CFG.replace(alpha_fine=50.0, alpha_fine_scales=1)
    assert [cfg.alpha_at(k, 3) for k in range(3)] == [10.0, 10.0, 50.0]
    assert preset("paper").replace(alpha_fine=50.0).hash() != PAPER_HASH
    model, plain = _trained(cfg), _trained(CFG)
    n = len(model.report["stages"])
    assert [s["alpha"] for s in model.report["stages"]] == [10.0] * (n - 1) + [50.0]
    # the coarser scales train exactly as without the lever; the finest one differs
    curves = [s["curve"] for s in model.report["stages"]], [s["curve"] for s in plain.report["stages"]]
    assert curves[0][:-1] == curves[1][:-1] and curves[0][-1] != curves[1][-1]


def test_alpha_coarse_weights_the_reconstruction_of_the_coarsest_scales_only():
    cfg = CFG.replace(alpha_coarse=2.0, coarse_scales=1)
    assert [cfg.alpha_at(k, 3) for k in range(3)] == [2.0, 10.0, 10.0]
    assert [cfg.replace(alpha_fine=50.0, coarse_scales=2).alpha_at(k, 3) for k in range(3)] == [2.0, 50.0, 50.0]
    assert preset("paper").replace(alpha_coarse=2.0).hash() != PAPER_HASH
    model = _trained(cfg)
    stages = model.report["stages"]
    assert [s["alpha"] for s in stages] == [2.0] + [10.0] * (len(stages) - 1)
    assert stages[0]["curve"] != _trained(CFG).report["stages"][0]["curve"]


def test_completeness_is_the_mean_distance_of_each_real_patch_to_its_nearest_fake_patch():
    from singan_core.train import completeness, patch_grid, side_by_side

    def targets(*xs):  # x_n's 5x5 patches on the stride-2 grid the trainer takes them on
        return [patch_grid(x, stride=2) for x in xs]

    x = synthetic_image(20, 24, seed=1)
    assert completeness(targets(x), x).tolist() == [0.0]  # every patch of x_n is in x_n itself
    # a fake holding every patch of x_n, elsewhere: x_n's two halves swapped (only the 5x5 patches straddling the
    # cut are missing), is far closer than a flat fake of x_n's mean colour, which holds none of them
    swapped, flat = torch.cat([x[..., 12:], x[..., :12]], -1), x.mean((2, 3), keepdim=True).expand_as(x)
    near, far = completeness(targets(x), swapped).item(), completeness(targets(x), flat).item()
    assert 0 < near < 0.5 * far
    # by brute force: each stride-2 5x5 patch of x_n against every 5x5 patch of the fake; also for an x_n of more
    # patches (396) than one block of the nearest-patch search (128)
    def brute(x, fake):
        r = x.unfold(2, 5, 2).unfold(3, 5, 2).permute(0, 2, 3, 1, 4, 5).reshape(-1, 75)
        q = fake.unfold(2, 5, 1).unfold(3, 5, 1).permute(0, 2, 3, 1, 4, 5).reshape(-1, 75)
        return (torch.cdist(r, q).pow(2).min(dim=1).values.mean() / 75).reshape(1)

    fake = torch.rand_like(x) * 2 - 1
    torch.testing.assert_close(completeness(targets(x), fake), brute(x, fake), rtol=1e-4, atol=1e-6)
    big = synthetic_image(40, 48, seed=3)
    big_fake = torch.rand_like(big) * 2 - 1
    assert targets(big)[0].shape[1] == 396
    torch.testing.assert_close(completeness(targets(big), big_fake), brute(big, big_fake), rtol=1e-4, atol=1e-6)
    # a pack: each image against its own fake only; the gradient reaches the fake, never x_n
    y = synthetic_image(20, 24, seed=2)
    fakes = side_by_side([fake, swapped]).requires_grad_(True)
    both = completeness(targets(x, y), fakes)
    torch.testing.assert_close(both, torch.cat([completeness(targets(x), fake), completeness(targets(y), swapped)]))
    both.sum().backward()
    assert fakes.grad is not None and fakes.grad.abs().sum() > 0


def test_completeness_coarse_pulls_the_coarsest_generators_only_and_is_recorded():
    cfg = CFG.replace(completeness_coarse=5.0, coarse_scales=1)
    assert [cfg.completeness_at(k) for k in range(3)] == [5.0, 0.0, 0.0]
    assert [cfg.replace(completeness=2.0).completeness_at(k) for k in range(3)] == [5.0, 2.0, 2.0]  # every scale
    assert [CFG.replace(completeness=2.0).completeness_at(k) for k in range(3)] == [2.0, 2.0, 2.0]
    assert preset("paper").replace(completeness_coarse=5.0).hash() != PAPER_HASH
    assert preset("paper").replace(completeness=5.0).hash() != PAPER_HASH
    model, plain = _trained(cfg), _trained(CFG)
    stages = model.report["stages"]
    assert [s["completeness"] for s in stages] == [5.0] + [0.0] * (len(stages) - 1)
    assert stages[0]["curve"] != plain.report["stages"][0]["curve"]  # the term changes G_N's training
    samples = model.sample(2, seed=0)
    assert torch.isfinite(samples).all() and not torch.equal(samples[0], samples[1])


def test_noise_amp_coarse_sets_the_factor_of_sigma_n_at_the_coarsest_scales_only():
    cfg = CFG.replace(noise_amp_coarse=0.05, coarse_scales=2)
    assert [cfg.noise_amp_at(k) for k in range(4)] == [0.05, 0.05, 0.1, 0.1]
    assert preset("paper").replace(noise_amp_coarse=0.07).hash() != PAPER_HASH
    model, plain = _trained(cfg), _trained(CFG)
    sigmas = [s["noise_amp"] for s in model.report["stages"]]
    assert sigmas[0] == 1.0  # sigma_N is 1 whatever the factor
    assert sigmas[1] == pytest.approx(0.5 * plain.report["stages"][1]["noise_amp"], rel=1e-6)  # same x~rec_N
    for k in range(1, model.num_stages):  # sigma_n = factor x RMSE(x_n, up(x~rec_{n+1})) at every scale
        rec = model.generate(1, fixed_noise_stages=k, until=k)
        rmse = (upsample(rec, model.shapes[k]) - model.reals[k]).pow(2).mean().sqrt().item()
        assert sigmas[k] == pytest.approx(cfg.noise_amp_at(k) * rmse, rel=1e-4)
    assert not torch.equal(model.sample(1, seed=0), plain.sample(1, seed=0))


def test_dsteps_coarse_gives_the_coarsest_scales_more_discriminator_steps_only():
    cfg = CFG.replace(dsteps_coarse=3, coarse_scales=1)
    assert [cfg.dsteps_at(k) for k in range(3)] == [3, 1, 1]
    assert preset("paper").replace(dsteps_coarse=3).hash() != PAPER_HASH
    model = _trained(cfg)
    stages = model.report["stages"]
    assert [s["dsteps"] for s in stages] == [3] + [1] * (len(stages) - 1)
    assert [s["gp_evaluations"] for s in stages] == [8 * 3] + [8] * (len(stages) - 1)
    # the coarsest scale trains otherwise than without the lever
    plain = _trained(CFG)
    assert stages[0]["curve"] != plain.report["stages"][0]["curve"]


def test_gsteps_coarse_sets_the_generator_steps_of_the_coarsest_scales_only():
    cfg = CFG.replace(gsteps=3, gsteps_coarse=2, coarse_scales=1)
    assert [cfg.gsteps_at(k, 3) for k in range(3)] == [2, 3, 3]
    assert preset("paper").replace(gsteps_coarse=2).hash() != PAPER_HASH
    model, plain = _trained(cfg), _trained(CFG.replace(gsteps=3))
    stages, plain_stages = model.report["stages"], plain.report["stages"]
    assert [s["gsteps"] for s in stages] == [2] + [3] * (len(stages) - 1)
    assert [s["gsteps"] for s in plain_stages] == [3] * len(stages)
    assert stages[0]["curve"] != plain_stages[0]["curve"]


def test_gsteps_finest_sets_the_generator_steps_of_the_finest_scales_only():
    cfg = CFG.replace(gsteps=3, gsteps_coarse=2, coarse_scales=1, gsteps_finest=1, finest_scales=2)
    assert [cfg.gsteps_at(k, 4) for k in range(4)] == [2, 3, 1, 1]
    assert cfg.replace(finest_scales=4).gsteps_at(0, 4) == 1  # where they overlap, the finest value wins
    assert [cfg.draws_per_iteration(k, 4) for k in range(4)] == [CFG.dsteps + 2, CFG.dsteps + 3] + [CFG.dsteps + 1] * 2
    assert preset("paper").replace(gsteps_finest=1).hash() != PAPER_HASH
    with pytest.raises(ValueError, match="gsteps_finest"):
        CFG.replace(gsteps_finest=-1)
    model, plain = _trained(cfg.replace(finest_scales=1)), _trained(CFG.replace(gsteps=3))
    stages, plain_stages = model.report["stages"], plain.report["stages"]
    n = len(stages)
    assert [s["gsteps"] for s in stages] == [2] + [3] * (n - 2) + [1]
    assert stages[-1]["curve"] != plain_stages[-1]["curve"]


def test_batch_coarse_draws_several_fakes_per_step_at_the_coarsest_scales_only():
    cfg = CFG.replace(batch_coarse=3, coarse_scales=1)
    assert [cfg.batch_at(k) for k in range(3)] == [3, 1, 1]
    assert [CFG.replace(batch=2).batch_at(k) for k in range(3)] == [2, 2, 2]
    steps = CFG.dsteps + CFG.gsteps  # up(x~) draws per iteration: one per fake of every D and G step
    assert [cfg.draws_per_iteration(k, 3) for k in range(2)] == [3 * steps, steps]
    assert cfg.replace(g_input="last-d").draws_per_iteration(0, 3) == 3 * CFG.dsteps  # G reuses D's inputs
    assert cfg.replace(adv_loss="frechet-patch").draws_per_iteration(0, 3) == 3 * CFG.gsteps  # no D steps
    assert preset("paper").replace(batch_coarse=3).hash() != PAPER_HASH
    model, plain = _trained(cfg), _trained(CFG)
    stages = model.report["stages"]
    assert [s["batch"] for s in stages] == [3] + [1] * (len(stages) - 1)
    assert [s["iterations"] for s in stages] == [s["iterations"] for s in plain.report["stages"]]
    assert stages[0]["curve"] != plain.report["stages"][0]["curve"]
    # several fakes per step everywhere, with a ConSinGAN window (its noise drawn per fake) and a lazy penalty
    batched = _trained(CFG.replace(batch=2, concurrent_stages=2, gp_every=2))
    assert all(s["batch"] == 2 for s in batched.report["stages"])
    samples = batched.sample(2, seed=0)
    assert samples.shape[0] == 2 and torch.isfinite(samples).all() and not torch.equal(samples[0], samples[1])


def test_d_dilation_coarse_widens_the_discriminator_of_the_finest_coarse_scale_only(tmp_path):
    from singan_core.model import Discriminator

    cfg = CFG.replace(d_dilation_coarse=2, coarse_scales=3)
    assert [cfg.d_dilation_at(k) for k in range(5)] == [1, 1, 2, 1, 1]
    assert preset("paper").replace(d_dilation_coarse=2).hash() != PAPER_HASH
    # receptive field 17 instead of 11: a 25x33 input gives a 9x17 patch map (15x23 undilated), same parameters
    x = torch.randn(1, 3, 25, 33)
    plain, dilated = Discriminator(8), Discriminator(8, dilation=2)
    assert plain(x).shape[-2:] == (15, 23) and dilated(x).shape[-2:] == (9, 17)
    assert [p.shape for p in plain.parameters()] == [p.shape for p in dilated.parameters()]
    model, unchanged = _trained(cfg), _trained(CFG.replace(coarse_scales=3))
    stages = model.report["stages"]
    assert [s["d_dilation"] for s in stages] == [cfg.d_dilation_at(k) for k in range(len(stages))]
    curves = [s["curve"] for s in stages], [s["curve"] for s in unchanged.report["stages"]]
    assert curves[0][:2] == curves[1][:2] and curves[0][2] != curves[1][2]  # the two coarsest train as before
    # a saved model's discriminators come back dilated as they were trained
    model.save(str(tmp_path / "m"))
    loaded = SinGAN.load(str(tmp_path / "m"), "cpu")
    assert [s.discriminator.dilation for s in loaded.stages] == [cfg.d_dilation_at(k) for k in range(len(stages))]
    with torch.no_grad():
        torch.testing.assert_close(loaded.stages[2].discriminator.eval()(x), model.stages[2].discriminator.eval()(x))
    # a dilated D_n larger than x_n is refused before anything trains
    assert cfg.d_receptive_field(2) == 17 and cfg.d_receptive_field(0) == 11
    with pytest.raises(ValueError, match="d_dilation_coarse=2: D_n at scale 0 judges 17 px"):
        _trained(CFG.replace(d_dilation_coarse=2, coarse_scales=1), out=str(tmp_path / "refused"))
    assert not (tmp_path / "refused").exists()


def test_niter_coarse_sets_the_iterations_of_the_coarsest_scales():
    cfg = CFG.replace(niter=6, niter_coarse=10, coarse_scales=2, epoch_decay=True, epoch_decay_rate=0.25)
    assert [cfg.iterations(k, 4) for k in range(4)] == [10, 10, 3, 2]  # epoch decay on the finer scales only
    model = _trained(cfg)
    stages = model.report["stages"]
    assert [s["iterations"] for s in stages] == [cfg.iterations(k, len(stages)) for k in range(len(stages))]
    assert stages[0]["curve"][-1][0] == 9


def test_niter_layout_sets_the_iterations_of_the_finest_coarse_scale_alone():
    cfg = CFG.replace(niter=6, niter_layout=10, coarse_scales=2, epoch_decay=True, epoch_decay_rate=0.25)
    assert preset("paper").replace(niter_layout=10).hash() != PAPER_HASH
    assert [cfg.iterations(k, 4) for k in range(4)] == [6, 10, 3, 2]  # the layout scale k = coarse_scales - 1
    assert [cfg.replace(niter_coarse=4).iterations(k, 4) for k in range(4)] == [4, 10, 3, 2]
    assert cfg.replace(niter_finest=5, finest_scales=3).iterations(1, 4) == 5  # the finest scales' value wins
    model = _trained(cfg)
    stages = model.report["stages"]
    assert [s["iterations"] for s in stages] == [cfg.iterations(k, len(stages)) for k in range(len(stages))]
    assert stages[1]["curve"][-1][0] == 9


def test_the_finest_scale_takes_its_own_iterations_and_reconstruction_steps():
    cfg = CFG.replace(niter_finest=5, rec_steps_finest=3)
    assert preset("paper").replace(rec_steps_finest=3).hash() != PAPER_HASH
    assert [cfg.iterations(k, 3) for k in range(3)] == [8, 8, 5]
    assert [cfg.rec_steps_at(k, 3) for k in range(3)] == [0, 0, 3]
    model, plain = _trained(cfg), _trained(CFG)
    stages, before = model.report["stages"], plain.report["stages"]
    n = len(stages)
    assert [s["iterations"] for s in stages] == [8] * (n - 1) + [5]
    assert [s["rec_steps"] for s in stages] == [0] * (n - 1) + [3]
    # the coarser scales train exactly as without the levers; the finest one differs
    assert [s["curve"] for s in stages[:-1]] == [s["curve"] for s in before[:-1]]
    assert stages[-1]["curve"][-1][0] == 4
    # the extra steps fit the reconstruction: the finest scale ends with a smaller reconstruction loss than with as
    # many plain iterations. (Its training loss, not x~rec of the saved model: at this toy size, 8 channels trained
    # mostly on one input, the eval-mode BatchNorm gives another x~rec than the training passes did, better or worse
    # by CPU; at 96 px they agree to 1%, e.g. `fast` on trees3: RMSE 0.0372 eval, 0.0371 in training mode.)
    fewer = _trained(CFG.replace(niter_finest=5))
    assert stages[-1]["loss_rec"] < 0.8 * fewer.report["stages"][-1]["loss_rec"]


def test_finest_scales_widens_the_finest_values_to_the_finest_few_scales():
    cfg = CFG.replace(niter_finest=5, rec_steps_finest=3, finest_scales=2)
    assert cfg.hash() != CFG.replace(niter_finest=5, rec_steps_finest=3).hash()
    assert [cfg.iterations(k, 4) for k in range(4)] == [8, 8, 5, 5]
    assert [cfg.rec_steps_at(k, 4) for k in range(4)] == [0, 0, 3, 3]
    assert [CFG.replace(finest_scales=2).iterations(k, 4) for k in range(4)] == [8] * 4  # nothing set: no change
    model = _trained(cfg)
    stages = model.report["stages"]
    n = len(stages)
    assert [s["iterations"] for s in stages] == [8] * (n - 2) + [5, 5]
    assert [s["rec_steps"] for s in stages] == [0] * (n - 2) + [3, 3]


def test_lr_g_finest_sets_the_generator_learning_rate_of_the_finest_scales_only():
    cfg = CFG.replace(lr_g_finest=2e-3, finest_scales=2)
    assert preset("paper").replace(lr_g_finest=1e-3).hash() != PAPER_HASH
    assert [cfg.lr_g_at(k, 4) for k in range(4)] == [5e-4, 5e-4, 2e-3, 2e-3]
    assert [CFG.lr_g_at(k, 4) for k in range(4)] == [5e-4] * 4  # unset: lr_g everywhere
    model, plain = _trained(cfg), _trained(CFG.replace(finest_scales=2))
    stages, before = model.report["stages"], plain.report["stages"]
    n = len(stages)
    assert [s["lr_g"] for s in stages] == [5e-4] * (n - 2) + [2e-3] * 2
    # the coarser scales train exactly as without the lever; the finest two differ
    assert [s["curve"] for s in stages[:-2]] == [s["curve"] for s in before[:-2]]
    assert all(a["curve"] != b["curve"] for a, b in zip(stages[-2:], before[-2:], strict=True))


def test_lr_g_finest_channels_scales_the_finest_learning_rate_by_one_over_the_width():
    # 3 scales of 8, 16, 16 channels (doubled every scale, capped at 16); lr_g_finest is meant for 8 channels
    cfg = CFG.replace(lr_g_finest=2e-3, finest_scales=2, nfc_double_every=1, lr_g_finest_channels=8)
    assert preset("paper").replace(lr_g_finest=1e-3, lr_g_finest_channels=32).hash() != PAPER_HASH
    assert [cfg.channels(k) for k in range(3)] == [8, 16, 16]
    assert [cfg.lr_g_at(k, 3) for k in range(3)] == [5e-4, 1e-3, 1e-3]
    assert [cfg.replace(lr_g_finest_channels=16).lr_g_at(k, 3) for k in range(3)] == [5e-4, 2e-3, 2e-3]
    assert [cfg.replace(finest_scales=3).lr_g_at(k, 3) for k in range(3)] == [2e-3, 1e-3, 1e-3]
    assert cfg.replace(lr_g_finest=0.0).lr_g_at(2, 3) == 5e-4  # without lr_g_finest: lr_g, whatever the width
    # the fast preset: 1e-3 at its 32-channel finest scales (96 px), 5e-4 where they are 64 wide (250 px)
    fast = preset("fast")
    assert [fast.replace(max_size=96).lr_g_at(k, 5) for k in range(5)] == [5e-4] * 3 + [1e-3] * 2
    assert [fast.lr_g_at(k, 9) for k in (7, 8)] == [5e-4, 5e-4] and fast.channels(8) == 64
    model = _trained(cfg)
    assert model.num_stages == 3 and [s["lr_g"] for s in model.report["stages"]] == [5e-4, 1e-3, 1e-3]
    plain = _trained(cfg.replace(lr_g_finest_channels=0))  # 2e-3 there: the finest scales train otherwise
    assert [s["curve"] for s in model.report["stages"]][:1] == [s["curve"] for s in plain.report["stages"]][:1]
    assert all(a["curve"] != b["curve"] for a, b in zip(model.report["stages"][1:], plain.report["stages"][1:],
                                                         strict=True))


def test_ema_half_life_ends_each_scale_with_the_moving_average_of_its_generator_weights(monkeypatch):
    from singan_core import levers

    cfg = CFG.replace(ema_half_life=0.25)  # 8 iterations: a half-life of 2, decay 0.5 ** (1 / 2) per iteration
    assert preset("paper").replace(ema_half_life=0.1).hash() != PAPER_HASH
    assert cfg.ema_decay(8) == pytest.approx(0.5**0.5) and CFG.ema_decay(8) == 0.0
    assert cfg.ema_decay(2) == 0.5  # a half-life of at least one iteration
    recorded: dict = {}  # each scale's average -> G_n's weights after each iteration
    update = levers.WeightAverage.update

    def recording(self):
        if self.nets:  # not the run without the average
            recorded.setdefault(self, []).append({k: v.clone() for k, v in self.nets[0].state_dict().items()})
        update(self)

    monkeypatch.setattr(levers.WeightAverage, "update", recording)
    model, plain = _trained(cfg), _trained(CFG)
    iterates = list(recorded.values())
    assert [len(weights) for weights in iterates] == [8] * model.num_stages
    assert [s["ema_decay"] for s in model.report["stages"]] == [pytest.approx(0.5**0.5)] * model.num_stages
    assert [s["ema_decay"] for s in plain.report["stages"]] == [0.0] * plain.num_stages
    # G_n is w~ after the last iteration, w~_1 = w_1, w~_t = d w~_{t-1} + (1 - d) w_t, BatchNorm statistics included
    for stage, weights in zip(model.stages, iterates, strict=True):
        expected = dict(weights[0])
        for w in weights[1:]:
            expected = {k: v.lerp(w[k], 1 - 0.5**0.5) if v.is_floating_point() else w[k] for k, v in expected.items()}
        for name, value in stage.generator.state_dict().items():
            torch.testing.assert_close(value, expected[name], msg=name)
    # the coarsest scale trains exactly as without the average, and ends elsewhere than its last iterate
    assert model.report["stages"][0]["curve"] == plain.report["stages"][0]["curve"]
    assert not torch.allclose(model.stages[0].generator.tail.weight, plain.stages[0].generator.tail.weight)
    assert _rec_rmse(model) < 1.2 * _rec_rmse(plain)  # it reconstructs as the last iterate does
    assert not torch.allclose(model.sample(1, seed=1), model.sample(1, seed=2))


def test_weight_average_is_applied_only_inside_its_block():
    from singan_core.levers import WeightAverage

    net = torch.nn.Linear(2, 2)
    average = WeightAverage([net], decay=0.5)
    first = net.weight.detach().clone()
    average.update()
    with torch.no_grad():
        net.weight.add_(2.0)
    average.update()
    with average.applied():
        torch.testing.assert_close(net.weight.detach(), first + 1.0)
    torch.testing.assert_close(net.weight.detach(), first + 2.0)
    average.apply()
    torch.testing.assert_close(net.weight.detach(), first + 1.0)
    assert WeightAverage([net], decay=0.0).averages == []  # off: nothing averaged


def test_early_stop_records_the_iterations_each_scale_ran():
    # tolerance so wide that every scale stops at its second window: iteration 2 x patience
    model = _trained(CFG.replace(niter=20, early_stop_patience=3, early_stop_tol=1e9))
    stages = model.report["stages"]
    assert [s["iterations"] for s in stages] == [6] * len(stages)
    assert all(s["planned_iterations"] == 20 for s in stages)
    assert model.report["total_iterations"] == 6 * len(stages)
    assert all(s["curve"][-1][0] == 5 for s in stages)
    # a zero tolerance never stops: the planned iterations
    never = _trained(CFG.replace(niter=10, early_stop_patience=3, early_stop_tol=0.0))
    assert [s["iterations"] for s in never.report["stages"]] == [10] * never.num_stages


@pytest.mark.parametrize("bad", [{"gp_every": 0}, {"early_stop_patience": -1}, {"concurrent_stages": 0},
                                 {"concurrent_lr_scale": 0.0}, {"alpha_fine": -1.0}, {"alpha_fine_scales": 0},
                                 {"dsteps_coarse": -1}, {"niter_coarse": -1}, {"coarse_scales": 0},
                                 {"alpha_coarse": -1.0}, {"batch": 0}, {"batch_coarse": -1},
                                 {"gsteps_coarse": -1}, {"niter_finest": -1}, {"rec_steps_finest": -1},
                                 {"finest_scales": 0}, {"d_dilation_coarse": 0}, {"lr_g_finest": -1e-3},
                                 {"gp_every_coarse": -1}, {"gp_samples": -1},
                                 {"alpha_window": -1.0}, {"noise_amp_coarse": -0.1}, {"ema_half_life": -0.1},
                                 {"ema_half_life": 1.5}, {"lr_g_finest_channels": -1},
                                 {"niter_layout": -1}, {"completeness_coarse": -1.0},
                                 {"completeness": -1.0}])
def test_lever_fields_reject_bad_values(bad):
    with pytest.raises(ValueError):
        CFG.replace(**bad)


def test_concurrent_stages_update_only_their_window_and_resume(tmp_path):
    cfg = CFG.replace(niter=6, concurrent_stages=2, concurrent_lr_scale=0.5)
    out = str(tmp_path / "m")
    checkpoints: list[SinGAN] = []
    model = _trained(cfg, out=out, on_stage=lambda r: checkpoints.append(SinGAN.load(out, "cpu")))
    n = model.num_stages
    assert n >= 3
    assert [s["trained_stages"] for s in model.report["stages"]] == [[0]] + [[k - 1, k] for k in range(1, n)]

    def weights(m: SinGAN, k: int) -> dict:
        return m.stages[k].generator.state_dict()

    for k in range(1, n):  # scale k changed G of stage k-1 and left every coarser one as it was
        before, after = checkpoints[k - 1], checkpoints[k]
        assert any(not torch.equal(a, b) for a, b in zip(weights(before, k - 1).values(),
                                                         weights(after, k - 1).values(), strict=True))
        for j in range(k - 1):
            assert all(torch.equal(a, b) for a, b in zip(weights(before, j).values(),
                                                         weights(after, j).values(), strict=True))
    # only D_n trains: the window's discriminators and sigma_n stay those of their own scale
    for k in range(1, n):
        for j in range(k):
            assert checkpoints[k].stages[j].noise_amp == checkpoints[j].stages[j].noise_amp
            assert all(torch.equal(a, b) for a, b in zip(checkpoints[k].stages[j].discriminator.state_dict().values(),
                                                         checkpoints[j].stages[j].discriminator.state_dict().values(),
                                                         strict=True))

    # resume: killed after scale 1, a restart continues from scale 2 and ends with the same model
    class KilledError(Exception):
        pass

    def kill_after_scale_1(report: dict) -> None:
        if report["stage"] == 1:
            raise KilledError

    resumed_out = str(tmp_path / "r")
    with pytest.raises(KilledError):
        _trained(cfg, out=resumed_out, on_stage=kill_after_scale_1)
    seen: list[int] = []
    resumed = _trained(cfg, out=resumed_out, on_stage=lambda r: seen.append(r["stage"]))
    assert seen == list(range(2, n))
    for k in range(n):
        for a, b in zip(weights(resumed, k).values(), weights(model, k).values(), strict=True):
            torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
    torch.testing.assert_close(resumed.sample(2, seed=0), model.sample(2, seed=0), rtol=0, atol=1e-4)


def test_alpha_window_keeps_the_window_stages_reconstructing_their_own_scale():
    cfg = CFG.replace(niter=12, concurrent_stages=2, concurrent_lr_scale=0.5)
    assert preset("paper").replace(alpha_window=10.0).hash() != PAPER_HASH
    plain, kept = _trained(cfg), _trained(cfg.replace(alpha_window=50.0))
    n = plain.num_stages
    # the coarsest scale has no window and trains as before; every scale with one trains otherwise
    curves = [s["curve"] for s in kept.report["stages"]], [s["curve"] for s in plain.report["stages"]]
    assert curves[0][0] == curves[1][0] and all(a != b for a, b in zip(curves[0][1:], curves[1][1:], strict=True))

    def own_rec_rmse(model: SinGAN, m: int) -> float:  # RMSE(x~rec_m, x_m) of the pyramid cut at stage m
        with torch.no_grad():
            rec = model.generate(1, fixed_noise_stages=model.num_stages, until=m + 1).clamp(-1, 1)
        return float((rec - model.reals[m][:1]).pow(2).mean().sqrt())

    # G_{n+1}, retrained in the finest scale's window, still reconstructs x_{n+1} better than without the term
    assert own_rec_rmse(kept, n - 2) < own_rec_rmse(plain, n - 2)


def test_concurrent_stages_refuse_uint8_upsampling():
    with pytest.raises(ValueError, match="upsample=float"):
        CFG.replace(concurrent_stages=2, upsample="uint8")


def test_the_fast_candidate_trains_from_the_cli_and_records_its_levers(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    from .conftest import write_png

    fast = preset("fast")
    assert fast.hash() != preset("paper").hash() and fast.max_size == preset("paper").max_size
    # the keys of the thirty-second screening's committed 96 px runs at seeds 1, 2 and 3 (seed 0 ran as a variant)
    assert [fast.replace(max_size=96, seed=s).hash() for s in (1, 2, 3)] == ["0877e38bf59a", "85072fa6d263",
                                                                             "8411efec6c7c"]
    image = write_png(tmp_path / "img.png", synthetic_image(36, 40, seed=3))
    args = ["train", image, "--out", str(tmp_path / "m"), "--preset", "fast", "--set", "max_size=32",
            "--set", "min_size=16", "--set", "niter=10", "--set", "nfc=8", "--set", "nfc_max=8", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    model = SinGAN.load(str(tmp_path / "m"), "cpu")
    stages = model.report["stages"]
    assert [s["iterations"] for s in stages] == [model.config.iterations(k, len(stages)) for k in range(len(stages))]
    assert [s["trained_stages"] for s in stages][1:] == [[k - 1, k] for k in range(1, len(stages))]
    assert [s["gp_every"] for s in stages] == [fast.gp_every_at(k) for k in range(len(stages))]
    assert all(s["gp_evaluations"] == -(-s["iterations"] * fast.dsteps // s["gp_every"]) for s in stages)
    assert [s["batch"] for s in stages] == [fast.batch_at(k) for k in range(len(stages))]
    finest = fast.finest_scales
    assert [s["rec_steps"] for s in stages] == [0] * (len(stages) - finest) + [fast.rec_steps_finest] * finest
    assert [s["gsteps"] for s in stages] == [fast.gsteps] * (len(stages) - finest) + [fast.gsteps_finest] * finest
    assert [s["completeness"] for s in stages] == [fast.completeness] * len(stages) and fast.completeness > 0
    assert [s["planned_iterations"] for s in stages[-finest:]] == [fast.niter_finest] * finest
    # 8 channels here (--set nfc=8): the finest scales take lr_g_finest x lr_g_finest_channels / 8
    assert [s["lr_g"] for s in stages] == [model.config.lr_g_at(k, len(stages)) for k in range(len(stages))]
    width_lr = fast.lr_g_finest * fast.lr_g_finest_channels / model.config.channels(len(stages) - 1)
    assert [s["lr_g"] for s in stages][-finest:] == pytest.approx([width_lr] * finest) and width_lr == 4e-3


def test_the_balanced_preset_is_fast_with_longer_finest_scales(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    from .conftest import write_png

    fast, balanced = preset("fast"), preset("balanced")
    changed = {k: v for k, v in balanced.to_dict().items() if v != getattr(fast, k)}
    assert changed == {"niter_finest": 480, "gsteps_finest": 0, "rec_steps_finest": 1}
    assert balanced.replace(max_size=96).hash() == "6b9d7125475e"  # the runs of the thirtieth screening, seed 0
    image = write_png(tmp_path / "img.png", synthetic_image(36, 40, seed=3))
    args = ["train", image, "--out", str(tmp_path / "m"), "--preset", "balanced", "--set", "max_size=32",
            "--set", "min_size=16", "--set", "niter=10", "--set", "niter_finest=12", "--set", "nfc=8",
            "--set", "nfc_max=8", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    stages = SinGAN.load(str(tmp_path / "m"), "cpu").report["stages"]
    finest = balanced.finest_scales
    assert [s["completeness"] for s in stages] == [30.0] * len(stages)
    assert [s["rec_steps"] for s in stages] == [0] * (len(stages) - finest) + [1] * finest
    assert [s["planned_iterations"] for s in stages[-finest:]] == [12] * finest


def test_bfloat16_training_runs_its_passes_in_bfloat16_and_keeps_float32_weights(device, monkeypatch):
    from singan_core import model as model_module

    seen: set[torch.dtype] = set()
    forward = model_module.Discriminator.forward

    def spy(self, x):  # D_n's patch map: the output of its last convolution
        out = forward(self, x)
        seen.add(out.dtype)
        return out

    cfg = CFG.replace(niter=30, precision="bfloat16")
    assert preset("paper").replace(precision="float32").hash() == PAPER_HASH != preset("paper").replace(
        precision="bfloat16").hash()
    monkeypatch.setattr(model_module.Discriminator, "forward", spy)
    model = train(synthetic_image(36, 40, seed=3), cfg, progress=False, device=device)
    assert torch.bfloat16 in seen  # the training passes ran in bfloat16 ...
    assert model.config.precision == "bfloat16"  # ... recorded in the saved config
    weights = [p for s in model.stages for p in s.generator.parameters()]
    assert all(p.dtype == torch.float32 for p in weights)
    sample = model.sample(2, seed=0)
    assert sample.dtype == torch.float32 and torch.isfinite(sample).all()
    for stage in model.report["stages"][1:]:  # each scale still learns to reconstruct its x_n
        assert stage["curve"][-1][3] < stage["curve"][0][3]
    with pytest.raises(ValueError, match="precision"):
        CFG.replace(precision="float16")


def test_bfloat16_on_a_cpu_without_native_support_warns_that_float32_is_faster(monkeypatch):
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"avx2": True})
    with pytest.warns(UserWarning, match="precision=float32 is faster here"):
        _trained(CFG.replace(niter=2, precision="bfloat16"), device="cpu")
    monkeypatch.setattr(torch.cpu, "get_capabilities", lambda: {"amx_bf16": True})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _trained(CFG.replace(niter=2, precision="bfloat16"), device="cpu")
