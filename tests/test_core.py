"""The engine: scale rule, networks, training, sampling, checkpoints and resume."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from singan_core import Config, SinGAN, conv, preset, train
from singan_core import singan as singan_module
from singan_core.images import load_image, resize
from singan_core.model import Discriminator, Generator
from singan_core.pyramid import build_reals, pyramid_for

from .conftest import synthetic_image, write_png

# ---------------------------------------------------------------- the scale rule


@pytest.mark.parametrize(
    ("size", "num_scales", "finest", "coarsest"),
    [
        ((164, 244), 9, (164, 244), (25, 38)),  # birds.png: the paper's 9 scales
        ((1536, 2048), 9, (188, 250), (25, 34)),  # larger than max_size: resized first
        ((250, 250), 11, (250, 250), (25, 25)),  # log(0.1)/log(0.75) = 8.004: N = 10
        ((25, 60), 2, (25, 60), (25, 60)),  # already at min_size: degenerate r = 1
    ],
)
def test_pyramid_follows_the_reference_rule(size, num_scales, finest, coarsest):
    pyr = pyramid_for(*size, Config())
    assert pyr.num_scales == num_scales
    assert pyr.shapes[-1] == finest
    assert pyr.shapes[0] == coarsest
    assert min(pyr.shapes[0]) == 25
    # consecutive scales shrink by r (up to rounding)
    for (h1, _), (h0, _) in zip(pyr.shapes[:-1], pyr.shapes[1:], strict=True):
        assert h1 == math.ceil(h0 * pyr.scale_factor - 1e-6) or h1 <= h0


def test_scale_factor_is_the_reference_one():
    pyr = pyramid_for(164, 244, Config())
    assert pyr.scale_factor == pytest.approx((25 / 164) ** (1 / 8))
    assert 0.75 <= pyr.scale_factor < 0.8


def test_reals_are_antialiased_resizes_in_range():
    img = synthetic_image(40, 48)
    pyr = pyramid_for(40, 48, preset("test"))
    reals = build_reals(img, pyr)
    assert [tuple(r.shape[-2:]) for r in reals] == list(pyr.shapes)
    assert all(r.min() >= -1 and r.max() <= 1 for r in reals)


def test_too_small_image_is_rejected():
    with pytest.raises(ValueError, match="min_size"):
        pyramid_for(20, 100, Config())


# ---------------------------------------------------------------- networks


def test_channel_schedule_doubles_every_four_scales_capped():
    cfg = Config()
    assert [cfg.channels(k) for k in range(13)] == [32] * 4 + [64] * 4 + [128] * 5


def _critic_losses(conv, x: torch.Tensor, weights: list[tuple[torch.Tensor, torch.Tensor]]):
    """A small critic built on `conv`: its mean score plus a WGAN-GP penalty (a double backward)."""

    def critic(h):
        for w, b in weights[:-1]:
            h = F.leaky_relu(conv(h, w, b), 0.2)
        return conv(h, *weights[-1])

    interp = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(critic(interp).sum(), interp, create_graph=True)
    loss = critic(x).mean() + ((grad.norm(2, dim=1) - 1) ** 2).mean()
    loss.backward()
    return [loss.detach()] + [t.grad.clone() for pair in weights for t in pair]


def test_winograd_convolution_equals_torchs_with_gradients():
    gen = torch.Generator().manual_seed(0)
    shapes = [(64, 3), (64, 64), (64, 64), (1, 64)]  # 64 channels: the Winograd path
    weights = [(torch.randn(o, i, 3, 3, generator=gen) * 0.1, torch.randn(o, generator=gen) * 0.1) for o, i in shapes]
    x = torch.randn(2, 3, 30, 41, generator=gen)
    if torch.backends.nnpack.is_available():
        assert conv.use_winograd(torch.zeros(1, 64, 8, 8), weights[1][0])
    with conv.winograd_disabled():
        assert not conv.use_winograd(torch.zeros(1, 64, 8, 8), weights[1][0])
    results = {}
    for name, fn in (("torch", F.conv2d), ("winograd", conv.conv2d), ("float64", F.conv2d)):
        dtype = torch.float64 if name == "float64" else torch.float32
        w = [(a.to(dtype, copy=True).requires_grad_(), b.to(dtype, copy=True).requires_grad_()) for a, b in weights]
        results[name] = _critic_losses(fn, x.to(dtype), w)
    for ours, theirs, exact in zip(results["winograd"], results["torch"], results["float64"], strict=True):
        scale = exact.norm()
        assert (ours.double() - exact).norm() / scale < 1e-4  # float32 rounding, as torch's own
        assert (theirs.double() - exact).norm() / scale < 1e-4


def test_images_and_pyramids_are_contiguous(tmp_path):
    """A channels-last input (an HxWx3 array seen as NCHW) made every convolution much slower."""
    path = write_png(tmp_path / "x.png", synthetic_image(40, 56))
    x = load_image(str(path))
    assert x.is_contiguous()
    assert all(r.is_contiguous() for r in build_reals(x, pyramid_for(40, 56, preset("test"))))


@pytest.mark.parametrize("padding", ["zero", "constant", "replicate", "circular"])
def test_generator_keeps_size_and_is_residual(padding):
    G = Generator(8, padding=padding, pad_value=0.3).eval()
    prev = torch.rand(2, 3, 21, 17) * 2 - 1
    out = G(torch.zeros_like(prev), prev)
    assert out.shape == prev.shape
    # residual: output minus prev is tanh-bounded
    assert (out - prev).abs().max() <= 1.0


def test_discriminator_is_an_11x11_patch_critic():
    D = Discriminator(8)
    assert D(torch.zeros(1, 3, 30, 40)).shape == (1, 1, 20, 30)
    # receptive field: a pixel change influences only the outputs within 11x11 of it
    D.eval()
    x = torch.zeros(1, 3, 31, 31, requires_grad=True)
    D(x)[0, 0, 10, 10].backward()
    rows = torch.nonzero(x.grad.abs().sum((0, 1)).sum(1)).flatten()
    assert rows.min() == 10 and rows.max() == 20


# ---------------------------------------------------------------- training


def test_training_reduces_reconstruction_error(tiny_model, tiny_image):
    model, _ = tiny_model
    untrained = train(tiny_image, model.config.replace(niter=1), progress=False)
    real = model.reals[-1]
    err_trained = F.mse_loss(model.reconstruct(), real).item()
    err_untrained = F.mse_loss(untrained.reconstruct(), real).item()
    assert err_trained < err_untrained / 5


def test_noise_amp_follows_the_rule(tiny_model):
    model, _ = tiny_model
    assert model.stages[0].noise_amp == 1.0
    for k in range(1, model.num_stages):
        rec = model.generate(1, fixed_noise_stages=k, until=k)
        rmse = torch.sqrt(F.mse_loss(resize(rec, model.shapes[k]), model.reals[k])).item()
        assert model.stages[k].noise_amp == pytest.approx(model.config.noise_amp * rmse, rel=1e-4)


def test_samples_differ_from_each_other_and_the_input(tiny_model):
    model, _ = tiny_model
    samples = model.sample(4, seed=0)
    assert samples.shape == (4, 3, *model.shapes[-1])
    assert samples.min() >= -1 and samples.max() <= 1
    real = model.reals[-1]
    for i in range(4):
        assert (samples[i] - real[0]).abs().mean() > 0.01
        for j in range(i):
            assert (samples[i] - samples[j]).abs().mean() > 0.01


def test_sampling_is_seeded_and_batched_equals_one_at_a_time(tiny_model):
    model, _ = tiny_model
    assert torch.equal(model.sample(3, seed=7), model.sample(3, seed=7))
    assert not torch.equal(model.sample(3, seed=7), model.sample(3, seed=8))
    together = model.sample(4, seed=3, batch_size=4)
    # BatchNorm runs in eval mode, so each sample depends only on its own noise
    g = torch.Generator().manual_seed(3)
    one = model.generate(4, generator=g).clamp(-1, 1)
    assert torch.allclose(together, one, atol=1e-5)


def test_generation_does_not_depend_on_the_cpu_chunking(tiny_model, monkeypatch):
    model, _ = tiny_model
    outputs = []
    for budget in (1, 2**40):  # one image per pass through G_n, or the whole batch at once
        monkeypatch.setattr(singan_module, "CPU_CHUNK_BYTES", budget)
        outputs.append(model.generate(5, generator=torch.Generator().manual_seed(4)))
    assert torch.allclose(outputs[0], outputs[1], atol=1e-5)
    assert (outputs[0][0] - outputs[0][1]).abs().mean() > 0.01  # the chunks did not share noise


@pytest.mark.parametrize(("scale_h", "scale_v"), [(1.5, 1.0), (1.0, 2.0), (0.75, 0.75)])
def test_samples_of_any_size(tiny_model, scale_h, scale_v):
    model, _ = tiny_model
    h, w = model.shapes[-1]
    s = model.sample(2, scale_h=scale_h, scale_v=scale_v, seed=1)
    assert s.shape == (2, 3, round(h * scale_v), round(w * scale_h))


def test_gen_start_scale_keeps_the_coarse_layout(tiny_model):
    model, _ = tiny_model
    real = model.reals[-1]
    free = (model.sample(4, seed=2) - real).abs().mean()
    anchored = (model.sample(4, seed=2, gen_start_scale=model.num_stages - 1) - real).abs().mean()
    assert anchored < free
    with pytest.raises(ValueError):
        model.sample(1, gen_start_scale=model.num_stages)


@pytest.mark.parametrize(
    "overrides",
    [
        {"padding": "constant"},
        {"padding": "replicate"},
        {"padding": "circular"},
        {"adv_loss": "frechet-patch"},
        {"gsteps": 2, "dsteps": 2},
        {"epoch_decay": True, "niter": 20},
    ],
)
def test_every_variant_trains(overrides):
    cfg = preset("test").replace(**{"niter": 8, **overrides})
    img = synthetic_image(36, 36, seed=1)
    model = train(img, cfg, progress=False)
    assert model.sample(2, seed=0).isfinite().all()
    rep = model.report
    n = model.num_stages
    assert [s["iterations"] for s in rep["stages"]] == [cfg.iterations(k, n) for k in range(n)]
    assert all(math.isfinite(s["loss_rec"]) for s in rep["stages"])
    if overrides.get("padding") == "constant":
        assert any(float(s.generator.pad_value) != 0 for s in model.stages)


# Where the paper's text and the authors' code differ (issue 11): every value that is not the default trains.
# rec_noise defaults to the authors' redraw (their sample quality); fixed is the paper's text.
AUTHORS_FIELDS = [
    {"rec_noise": "fixed"},
    {"noise_draw": "iteration"},
    {"g_input": "last-d"},
    {"upsample": "uint8"},
    {"bias_init": "torch"},
]


@pytest.mark.parametrize("overrides", AUTHORS_FIELDS)
def test_authors_code_choices_train_and_are_saved(overrides, tmp_path):
    base = preset("test").replace(niter=6)
    cfg = base.replace(**overrides)
    assert cfg.hash() != base.hash()
    img = synthetic_image(36, 36, seed=2)
    trained = train(img, cfg, out=str(tmp_path), progress=False)
    reference = train(img, base, progress=False)
    loaded = SinGAN.load(str(tmp_path))
    assert loaded.config == cfg and loaded.meta["config_hash"] == cfg.hash()
    assert loaded.sample(2, seed=0).isfinite().all()
    # every choice changes what is trained (same seed, same image)
    assert not torch.equal(trained.sample(1, seed=0), reference.sample(1, seed=0))
    if "rec_noise" in overrides:  # the fixed z* is the first draw, the redrawn one the last
        assert not torch.equal(trained.z_star, reference.z_star)


def test_config_hash_changes_only_with_behaviour():
    # The hash keys saved models and caches. A field added later enters it only when it departs from what the
    # trainer did before the field existed: `paper` changed its hash once, when its default became rec_noise=redraw
    # (issue 11), and the configs of models trained before (rec_noise=fixed) keep theirs.
    assert preset("paper").hash() == "b7ecda3debb4"
    assert preset("quick").hash() == "74081c8f043b"
    assert preset("paper").replace(rec_noise="fixed").hash() == "486310a48e35"
    assert preset("quick").replace(rec_noise="fixed").hash() == "f9606c86ffba"
    assert preset("paper").replace(upsample="uint8").hash() != preset("paper").hash()


def test_uint8_upsampling_clamps_and_quantizes_like_the_authors():
    from singan_core.singan import upsample

    x = torch.linspace(-1.3, 1.3, 2 * 3 * 8 * 8).reshape(2, 3, 8, 8)
    same = upsample(x, (8, 8), "uint8")
    levels = (same + 1) * 127.5
    assert same.min() >= -1 and same.max() <= 1
    assert torch.allclose(levels, levels.round(), atol=1e-4)  # on the 8-bit grid
    assert (same <= x.clamp(-1, 1) + 1e-6).all()  # truncation, as numpy's astype(uint8)
    assert torch.equal(upsample(x, (12, 12)), resize(x, (12, 12)))  # float: a plain resize
    assert upsample(x, (12, 12), "uint8").abs().max() <= 1


def test_torch_bias_init_leaves_conv_biases_random():
    assert Generator(8).tail.bias.abs().sum() == 0
    g = Generator(8, bias_init="torch")
    assert g.tail.bias.abs().sum() > 0 and Discriminator(8, bias_init="torch").tail.bias.abs().sum() > 0


def test_epoch_decay_schedule():
    cfg = Config(niter=2000, epoch_decay=True)
    assert [cfg.iterations(k, 9) for k in range(9)] == [2000, 1800, 1600, 1400, 1200, 1000, 800, 600, 600]
    assert Config(niter=2000).iterations(8, 9) == 2000


def test_frechet_patch_loss_is_zero_for_identical_images():
    from singan_core.metrics import pooled_patch_stats, psd_sqrt
    from singan_core.train import frechet_patch_loss

    x = synthetic_image(30, 30)
    mu, cov = pooled_patch_stats(x, 11)
    assert frechet_patch_loss(mu, psd_sqrt(cov), x, 11).item() == pytest.approx(0, abs=1e-3)
    assert frechet_patch_loss(mu, psd_sqrt(cov), x + 0.3 * torch.randn_like(x), 11).item() > 0.1


# ---------------------------------------------------------------- checkpoints and resume


def test_save_and_load_round_trip_weights_only(tiny_model, tmp_path):
    model, out = tiny_model
    # the checkpoint is plain tensors: loadable with weights_only=True
    tensors = torch.load(f"{out}/model.pt", weights_only=True)
    assert all(isinstance(v, torch.Tensor) for v in tensors.values())
    loaded = SinGAN.load(out)
    assert loaded.config == model.config
    assert torch.equal(loaded.sample(2, seed=4), model.sample(2, seed=4))
    assert torch.allclose(loaded.reconstruct(), model.reconstruct())
    assert loaded.report["num_scales"] == model.num_stages


def test_model_of_another_version_is_refused(tiny_model, tmp_path):
    import json
    import shutil

    _, out = tiny_model
    shutil.copytree(out, tmp_path / "m")
    meta = json.loads((tmp_path / "m" / "model.json").read_text())
    meta["format_version"] = 99
    (tmp_path / "m" / "model.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match="version"):
        SinGAN.load(str(tmp_path / "m"))


class CrashError(Exception):
    pass


def test_resume_continues_from_the_last_finished_scale(tmp_path):
    img = synthetic_image(36, 40, seed=2)
    cfg = preset("test").replace(niter=6)
    reference = train(img, cfg, progress=False)

    finished = []

    def crash_after_two(report):
        finished.append(report["stage"])
        if len(finished) == 2:
            raise CrashError

    with pytest.raises(CrashError):
        train(img, cfg, out=str(tmp_path), progress=False, on_stage=crash_after_two)
    resumed_stages = []
    resumed = train(img, cfg, out=str(tmp_path), progress=False,
                           on_stage=lambda r: resumed_stages.append(r["stage"]))
    assert resumed_stages == list(range(2, reference.num_stages))
    assert resumed.meta["complete"]
    # per-scale seeds: the resumed pyramid is the one an uninterrupted run trains
    assert torch.allclose(resumed.sample(2, seed=1), reference.sample(2, seed=1), atol=1e-5)
    # a finished model is not retrained
    again = train(img, cfg, out=str(tmp_path), progress=False, on_stage=lambda r: pytest.fail("retrained"))
    assert again.num_stages == reference.num_stages


def test_training_only_the_coarsest_scales_gives_a_full_runs_first_scales_and_resumes_to_it(tmp_path):
    img = synthetic_image(36, 40, seed=2)
    cfg = preset("test").replace(niter=6)
    reference = train(img, cfg, progress=False)
    assert reference.num_stages >= 3
    trained = []
    partial = train(img, cfg, out=str(tmp_path), progress=False, scales=2,
                    on_stage=lambda r: trained.append(r["stage"]))
    assert trained == [0, 1] and partial.num_stages == 2 and not partial.meta["complete"]
    assert len(partial.reals) == 2 and len(partial.report["stages"]) == 2
    for mine, theirs in zip(partial.stages, reference.stages, strict=False):  # a full run's first two scales
        assert torch.equal(mine.generator.tail.weight, theirs.generator.tail.weight)
    # fewer scales than saved: nothing trains and the saved first scale comes back; without `scales` the run resumes
    # from the saved two and ends as the full run
    again = train(img, cfg, out=str(tmp_path), progress=False, scales=1, on_stage=lambda r: pytest.fail("retrained"))
    assert again.num_stages == 1 and torch.equal(again.stages[0].generator.tail.weight,
                                                 reference.stages[0].generator.tail.weight)
    trained.clear()
    whole = train(img, cfg, out=str(tmp_path), progress=False, on_stage=lambda r: trained.append(r["stage"]))
    assert trained == list(range(2, reference.num_stages)) and whole.meta["complete"]
    assert torch.allclose(whole.sample(2, seed=1), reference.sample(2, seed=1), atol=1e-5)
    # asked for fewer scales than a finished pyramid holds: its first ones, a model that says it is not complete
    cut = train(img, cfg, out=str(tmp_path), progress=False, scales=2, on_stage=lambda r: pytest.fail("retrained"))
    assert cut.num_stages == 2 and len(cut.report["stages"]) == 2 and not cut.meta["complete"]
    assert SinGAN.load(str(tmp_path), "cpu").meta["complete"]  # the saved pyramid is left as it was
    with pytest.raises(ValueError, match="scales must lie in 1 .. "):
        train(img, cfg, progress=False, scales=reference.num_stages + 1)


def test_output_folder_of_another_image_is_refused(tiny_model):
    _, out = tiny_model
    with pytest.raises(ValueError, match="another image or config"):
        train(synthetic_image(40, 48, seed=9), preset("test").replace(niter=60), out=out, progress=False)
