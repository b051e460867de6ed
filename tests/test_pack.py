"""Packed training: K pyramids trained at once give each image exactly the model it gets alone."""

from __future__ import annotations

import pytest
import torch

from singan_core import SinGAN, preset, train_pack
from singan_core.train import train

from .conftest import synthetic_image

CFG = preset("test").replace(niter=4)
VARIANTS = {
    "paper": {},
    "authors": {"padding": "constant", "rec_noise": "redraw", "noise_draw": "iteration", "g_input": "last-d",
                "bias_init": "torch", "upsample": "uint8"},
    "frechet": {"adv_loss": "frechet-patch", "padding": "replicate"},
    # lazy penalty, and early stops at different iterations per image (the pack goes on without the stopped ones)
    "levers": {"gp_every": 2, "early_stop_patience": 1, "early_stop_tol": 0.06},
    # ConSinGAN's concurrent stages (with early stops: each image keeps its window's generators where it stopped),
    # reconstruction-only steps at the finest 2 scales at their own learning rate, through the window, and the
    # generators' weight average (each image's, G_n's and the window's, the average where it stopped)
    "concurrent": {"concurrent_stages": 3, "concurrent_lr_scale": 0.5, "early_stop_patience": 1,
                   "early_stop_tol": 0.1, "rec_steps_finest": 2, "finest_scales": 2, "lr_g_finest": 1e-3,
                   "ema_half_life": 0.3},
    # several fakes per step (the coarsest scale 3, the others 2), through a ConSinGAN window, the penalty at the
    # first fake's interpolate only, on every D step at the coarsest scale and every 2nd above it
    "batch": {"batch": 2, "batch_coarse": 3, "coarse_scales": 1, "concurrent_stages": 2, "gp_samples": 1,
              "gp_every": 2, "gp_every_coarse": 1},
    # a dilated D_n at the 2nd scale (the finest of the coarsest 2), through a ConSinGAN window whose stages
    # reconstruct their own scale too, a smaller sigma_n factor and the patch completeness term at the coarsest 2
    "dilated": {"d_dilation_coarse": 2, "coarse_scales": 2, "concurrent_stages": 2, "alpha_window": 5.0,
                "noise_amp_coarse": 0.05, "completeness_coarse": 5.0},
}


@pytest.fixture
def float64():
    """Double precision, so that "equal" means equal: in float32 the rounding of grouped and plain
    convolutions differs, and a GAN's steps amplify rounding."""
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    yield
    torch.set_default_dtype(previous)


def images(n: int = 3) -> list[torch.Tensor]:
    return [synthetic_image(40, 48, seed=i) for i in range(n)]


def assert_same_model(packed: SinGAN, alone: SinGAN, tol: float = 1e-6) -> None:
    """Equal to double-precision rounding. Weights are 0.01 to 1 and differ by 1e-10; the largest
    differences (up to 2e-7) are in the conv biases before a BatchNorm (and so its running mean), which
    the BatchNorm cancels: their gradient is rounding noise, which Adam scales up to steps of lr. Mixing
    up two images would show as differences of 0.01 and more."""
    assert packed.num_stages == alone.num_stages
    torch.testing.assert_close(packed.z_star, alone.z_star, rtol=0, atol=0)
    for p, a in zip(packed.stages, alone.stages, strict=True):
        assert p.noise_amp == pytest.approx(a.noise_amp, rel=1e-9)
        for net_p, net_a in ((p.generator, a.generator), (p.discriminator, a.discriminator)):
            sp, sa = net_p.state_dict(), net_a.state_dict()
            assert sp.keys() == sa.keys()
            for name in sp:
                torch.testing.assert_close(sp[name], sa[name], rtol=tol, atol=tol, msg=name)
    for rp, ra in zip(packed.report["stages"], alone.report["stages"], strict=True):
        torch.testing.assert_close(torch.tensor(rp["curve"]), torch.tensor(ra["curve"]), rtol=1e-6, atol=tol)
    torch.testing.assert_close(packed.sample(3, seed=5), alone.sample(3, seed=5), rtol=0, atol=1e-6)
    torch.testing.assert_close(packed.reconstruct(), alone.reconstruct(), rtol=0, atol=1e-6)


@pytest.mark.parametrize("variant", VARIANTS)
def test_a_pack_trains_each_image_as_if_alone(variant, device, float64):
    cfg = CFG.replace(**VARIANTS[variant])
    packed = train_pack(images(), cfg, device=device, progress=False)
    assert len(packed) == 3
    for i, x in enumerate(images()):
        alone = train(x, cfg, device=device, progress=False)
        assert_same_model(packed[i], alone)
        recorded = ("iterations", "gp_evaluations", "trained_stages", "rec_steps")
        assert [[s[key] for key in recorded] for s in packed[i].report["stages"]] == \
            [[s[key] for key in recorded] for s in alone.report["stages"]]
    if variant in ("levers", "concurrent"):  # the images did stop at different iterations
        assert len({tuple(s["iterations"] for s in m.report["stages"]) for m in packed}) > 1
    # different images really gave different models (the pack did not train one image three times)
    assert not torch.allclose(packed[0].stages[-1].generator.tail.weight, packed[1].stages[-1].generator.tail.weight)


def test_a_float32_pack_matches_separate_runs_to_rounding(device):
    """In float32 grouped and plain convolutions round differently (CPU: 2e-4 after 2 iterations;
    CUDA convolutions may use TF32 by default, hence the looser bound there)."""
    packed = train_pack(images(2), CFG.replace(niter=2), device=device, progress=False)
    for i, x in enumerate(images(2)):
        alone = train(x, CFG.replace(niter=2), device=device, progress=False)
        torch.testing.assert_close(packed[i].sample(2, seed=1), alone.sample(2, seed=1), rtol=0,
                                   atol=1e-3 if device == "cpu" else 2e-2)


def test_a_pack_rejects_images_of_another_training_shape():
    with pytest.raises(ValueError, match=r"image 1 does not fit the pack: its training shapes are .*image 0's"):
        train_pack([synthetic_image(40, 48), synthetic_image(40, 60)], CFG, progress=False)
    with pytest.raises(ValueError, match="DoubleGAN"):
        train_pack([torch.cat(images(2))], CFG, progress=False)
    with pytest.raises(ValueError, match="output folders"):
        train_pack(images(2), CFG, outs=["a"], progress=False)


def test_a_pack_is_saved_per_image_and_resumes_from_the_last_scale_all_finished(tmp_path, float64):
    outs = [str(tmp_path / f"img{i}") for i in range(3)]
    uninterrupted = train_pack(images(), CFG, progress=False)

    class KilledError(Exception):
        pass

    def stop_after_image_0_of_stage_1(index, report):
        if report["stage"] == 1 and index == 0:
            raise KilledError

    with pytest.raises(KilledError):
        train_pack(images(), CFG, outs=outs, progress=False, on_stage=stop_after_image_0_of_stage_1)
    assert [SinGAN.load(out, "cpu").num_stages for out in outs] == [2, 1, 1]

    seen = []
    resumed = train_pack(images(), CFG, outs=outs, progress=False, on_stage=lambda i, r: seen.append((i, r["stage"])))
    assert seen[0] == (0, 1)  # scale 0 was not trained again
    assert len(seen) == 3 * (resumed[0].num_stages - 1)
    for out, model, reference in zip(outs, resumed, uninterrupted, strict=True):
        loaded = SinGAN.load(out, "cpu")
        assert loaded.meta["complete"] and loaded.report["pack_size"] == 3
        assert_same_model(loaded, reference)
        assert_same_model(model, reference)
    # a finished pack is not retrained
    again = train_pack(images(), CFG, outs=outs, progress=False, on_stage=lambda i, r: pytest.fail("retrained"))
    assert all(m.meta["complete"] for m in again)


def test_cli_train_pack_writes_one_model_folder_per_image(tmp_path):
    from typer.testing import CliRunner

    from pipeline.cli import app

    from .conftest import write_png

    paths = [write_png(tmp_path / f"img{i}.png", x) for i, x in enumerate(images(2))]
    args = ["train-pack", *paths, "--out-dir", str(tmp_path / "models"), "--preset", "test", "--set", "niter=2", "-q"]
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 0, res.output
    assert res.output.count("in a pack of 2") == 2
    for i in range(2):
        model = SinGAN.load(str(tmp_path / "models" / f"img{i}"), "cpu")
        assert model.meta["complete"] and model.sample(1, seed=0).shape[-2:] == model.reals[-1].shape[-2:]

    other = write_png(tmp_path / "wide.png", synthetic_image(40, 60))
    res = CliRunner().invoke(app, ["train-pack", paths[0], other, "--out-dir", str(tmp_path / "bad"), "-p", "test"])
    assert res.exit_code == 1 and res.output.startswith("error: image 1 does not fit the pack")
    assert not (tmp_path / "bad").exists()
