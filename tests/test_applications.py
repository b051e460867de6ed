"""The applications (SR, paint-to-image, harmonization, editing, animation, High-Res slicing) and
multi-image training, on tiny pyramids trained once per module."""

from __future__ import annotations

import json
import math
import shutil

import imageio.v3 as iio
import pytest
import torch
from PIL import Image
from scipy.ndimage import distance_transform_edt
from typer.testing import CliRunner

from pipeline.cli import app
from singan_core import SinGAN, preset, train
from singan_core.applications import (
    PARTS,
    animate,
    blend_mask,
    edit,
    harmonize,
    highres_config,
    highres_rule,
    map_to_colours,
    mosaic,
    paint_to_image,
    part_image,
    quadrants,
    read_mask,
    seam_strength,
    sr_config,
    sr_steps,
    stitch,
    super_resolve,
    train_part,
    write_gif,
)
from singan_core.config import PRESETS

from .conftest import synthetic_image, write_png

torch.set_num_threads(1)
runner = CliRunner()
H, W = 40, 48


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """A 4-stage pyramid of a 40x48 image, saved to disk: (model, folder)."""
    out = tmp_path_factory.mktemp("apps_model")
    # 30 iterations: enough for G_N to learn one fixed z*, not yet for the redrawn noise of the default
    cfg = preset("test").replace(max_size=48, niter=30, rec_noise="fixed")
    model = train(synthetic_image(H, W), cfg, out=str(out), progress=False)
    assert model.shapes[-1] == (H, W) and model.num_stages == 4
    return model, str(out)


def _square_mask(top=14, left=16, size=10) -> torch.Tensor:
    mask = -torch.ones(1, 3, H, W)
    mask[..., top : top + size, left : left + size] = 1
    return mask


def _error_line(res) -> str:
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert res.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error:"), res.output
    return lines[0]


# ---------------------------------------------------------------------------- super-resolution
def test_sr_steps_follow_the_reference():
    steps, step = sr_steps(4)
    assert steps == 6 and step == pytest.approx(4 ** (1 / 6))
    cfg = sr_config(preset("paper"), 4, (80, 120))
    assert cfg.scale_factor == pytest.approx(0.7937, abs=1e-4) and cfg.alpha == 100 and cfg.max_size == 120
    with pytest.raises(ValueError, match="at least 1"):
        sr_steps(0.5)


@pytest.mark.parametrize("factor", [1.0, 1.5, 2.0, 3.0, 4.0])
def test_sr_output_is_factor_times_the_input(trained, factor):
    model, _ = trained
    out = super_resolve(model, factor)
    assert out.shape == (1, 3, round(H * factor), round(W * factor))
    other = super_resolve(model, factor, synthetic_image(25, 31, seed=3))  # any input, not just x_0
    assert other.shape == (1, 3, round(25 * factor), round(31 * factor))
    assert out.abs().max() <= 1


def test_sr_keeps_the_content(trained):
    model, _ = trained
    x0 = model.reals[-1]
    up = super_resolve(model, 2)
    back = torch.nn.functional.interpolate(up, size=(H, W), mode="area")
    # an upsampled image, not noise: 0.15-0.17 for this 30-iteration model over seeds 0-2, 0.53 for uniform noise
    assert (back - x0).abs().mean() < 0.2


def test_sr_cli_writes_exactly_factor_times_the_input(tmp_path):
    src = write_png(tmp_path / "lr.png", synthetic_image(24, 30, seed=2))
    out = tmp_path / "sr.png"
    res = runner.invoke(app, ["sr", src, "--factor", "2", "--out", str(out), "--preset", "test",
                              "--set", "niter=3", "--model-dir", str(tmp_path / "m"), "-q"])
    assert res.exit_code == 0, res.output
    assert Image.open(out).size == (60, 48)
    bad = runner.invoke(app, ["sr", src, "--factor", "0.5", "--out", str(tmp_path / "bad.png")])
    assert "at least 1" in _error_line(bad) and not (tmp_path / "bad.png").exists()


# ---------------------------------------------------------------------------- harmonization and editing
@pytest.mark.parametrize(("apply", "dilation", "blur"), [(harmonize, 2, 1.0), (edit, 3, 0.0)])
def test_blend_leaves_outside_of_dilated_mask_unchanged(trained, apply, dilation, blur):
    model, _ = trained
    mask = _square_mask()
    composite = model.reals[-1].clone()
    composite[..., 14:24, 16:26] = torch.tensor([0.6, -0.6, -0.6])[:, None, None]  # a pasted red square
    out = apply(model, composite, mask, 2, dilation=dilation, blur=blur, seed=1)
    assert out.shape == (1, 3, H, W)
    distance = torch.from_numpy(distance_transform_edt((mask[0, 0] < 0).numpy()))
    reach = dilation + math.sqrt(2) * int(4 * blur + 0.5) + 1  # disk, then the truncated Gaussian's square
    outside = distance > reach
    assert outside.float().mean() > 0.4
    assert torch.equal(out[..., outside], composite[..., outside])
    inside = (out - composite)[..., 14:24, 16:26].abs()
    assert inside.mean() > 0.03 and (inside.amax(dim=1) > 2 / 255).float().mean() > 0.8  # regenerated


def test_blend_mask_follows_the_authors():
    m = read_mask(_square_mask())
    weight = blend_mask(m, 7, 5.0)
    assert weight.max() == 1 and weight.min() == 0 and weight[0, 0, 19, 21] == 1
    assert weight.sum() > blend_mask(m, 2, 5.0).sum() > m.sum()


def test_composite_of_another_size_is_resized_to_the_training_size(trained):
    model, _ = trained
    big = torch.nn.functional.interpolate(model.reals[-1], size=(2 * H, 2 * W), mode="bilinear")
    mask = torch.nn.functional.interpolate(_square_mask(), size=(2 * H, 2 * W), mode="nearest")
    assert harmonize(model, big, mask, 1, n=2).shape == (2, 3, H, W)
    with pytest.raises(ValueError, match="same size"):
        harmonize(model, big, _square_mask(), 1)


def test_masks_must_be_binary_and_not_empty():
    with pytest.raises(ValueError, match="not binary"):
        read_mask(torch.rand(1, 3, H, W) * 2 - 1)
    with pytest.raises(ValueError, match="empty"):
        read_mask(-torch.ones(1, 3, H, W))


@pytest.mark.parametrize("start_scale", [0, 4, -1])
def test_start_scale_outside_the_pyramid_is_refused(trained, start_scale):
    model, _ = trained
    with pytest.raises(ValueError, match="outside the pyramid"):
        harmonize(model, model.reals[-1], _square_mask(), start_scale)
    with pytest.raises(ValueError, match="outside the pyramid"):
        paint_to_image(model, model.reals[-1], start_scale)


def test_harmonize_and_edit_cli(trained, tmp_path):
    _, model_dir = trained
    composite = write_png(tmp_path / "c.png", synthetic_image(H, W, seed=5))
    mask = write_png(tmp_path / "m.png", _square_mask())
    for command in ("harmonize", "edit"):
        out = tmp_path / f"{command}.png"
        res = runner.invoke(app, [command, model_dir, composite, mask, "--start-scale", "2", "--out", str(out)])
        assert res.exit_code == 0, res.output
        assert Image.open(out).size == (W, H)


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("mask_size", "same size"),
        ("grey_mask", "not binary"),
        ("start_scale", "outside the pyramid"),
        ("version", "format version"),
        ("no_model", "no SinGAN model"),
    ],
)
def test_cli_bad_input_one_line_nothing_written(trained, tmp_path, case, message):
    _, model_dir = trained
    composite = write_png(tmp_path / "c.png", synthetic_image(H, W, seed=5))
    mask = write_png(tmp_path / "m.png", _square_mask())
    start = "2"
    if case == "mask_size":
        mask = write_png(tmp_path / "m.png", _square_mask()[..., :20, :30])
    elif case == "grey_mask":
        mask = write_png(tmp_path / "m.png", torch.rand(1, 3, H, W) * 2 - 1)
    elif case == "start_scale":
        start = "9"
    elif case == "version":
        model_dir = shutil.copytree(model_dir, tmp_path / "old_model")
        meta = json.loads((model_dir / "model.json").read_text())
        (model_dir / "model.json").write_text(json.dumps({**meta, "format_version": 99}))
    elif case == "no_model":
        model_dir = tmp_path / "nothing"
    out = tmp_path / "out.png"
    res = runner.invoke(app, ["edit", str(model_dir), composite, mask, "--start-scale", start, "--out", str(out)])
    assert message in _error_line(res)
    assert not out.exists()


# ---------------------------------------------------------------------------- paint-to-image
def test_paint_to_image_shape_and_range(trained):
    model, _ = trained
    paint = -torch.ones(1, 3, 60, 90)
    paint[:, 0, 10:40, 20:60] = 0.8  # a red blob on black, of another size than the image
    out = paint_to_image(model, paint, 1, n=2, seed=0)
    assert out.shape == (2, 3, H, W) and out.abs().max() <= 1
    assert not torch.equal(out[0], out[1])


def test_quantized_paint_fine_tunes_a_copy(trained):
    model, _ = trained
    before = {k: v.clone() for k, v in model.stages[2].generator.state_dict().items()}
    paint = torch.zeros(1, 3, H, W)
    paint[:, 1, :, : W // 2] = 0.7
    out = paint_to_image(model, paint, 2, quantize=True, finetune_iterations=5)
    assert out.shape == (1, 3, H, W)
    after = model.stages[2].generator.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)  # the caller's model is untouched


def test_map_to_colours_uses_only_the_centres():
    centres = torch.tensor([[-1.0, -1.0, -1.0], [1.0, 0.0, 0.0], [0.0, 1.0, 1.0]])
    x = torch.rand(1, 3, 8, 9) * 2 - 1
    mapped = map_to_colours(x, centres)
    colours = {tuple(c) for c in mapped[0].permute(1, 2, 0).reshape(-1, 3).tolist()}
    assert colours <= {tuple(c) for c in centres.tolist()}


# ---------------------------------------------------------------------------- animation
def test_animation_frames_are_smooth(trained, tmp_path):
    model, _ = trained
    frames = animate(model, 24, alpha=0.1, beta=0.95, start_scale=1, seed=3)
    assert frames.shape == (24, 3, H, W)
    step = (frames[1:] - frames[:-1]).abs().mean()
    far = (frames[12:] - frames[:-12]).abs().mean()
    assert 0 < step < far / 2  # consecutive frames are much closer than frames far apart
    write_gif(frames, str(tmp_path / "a.gif"), fps=10)
    assert iio.imread(tmp_path / "a.gif").shape == (24, H, W, 3)


def test_animation_with_alpha_one_stays_at_the_reconstruction(trained):
    model, _ = trained
    frames = animate(model, 3, alpha=1.0, start_scale=0)
    assert torch.allclose(frames, model.reconstruct().expand(3, -1, -1, -1), atol=1e-5)


def test_animate_cli_writes_a_gif(trained, tmp_path):
    _, model_dir = trained
    out = tmp_path / "anim.gif"
    res = runner.invoke(app, ["animate", model_dir, "--out", str(out), "--frames", "6", "--fps", "5", "--no-mp4"])
    assert res.exit_code == 0, res.output
    assert iio.imread(out).shape[0] == 6
    bad = runner.invoke(app, ["animate", model_dir, "--out", str(tmp_path / "b.gif"), "--beta", "1.5"])
    assert "beta" in _error_line(bad) and not (tmp_path / "b.gif").exists()


# ---------------------------------------------------------------------------- High-Res-SinGAN
def test_highres_preset_follows_the_rule():
    cfg = PRESETS["highres"]
    assert cfg == highres_rule(500)
    assert cfg.receptive_field == 21 and cfg.min_size == 50 and cfg.nfc == cfg.nfc_max == 128 and cfg.epoch_decay
    assert highres_rule(250) == preset("paper")


def test_quadrants_split_an_odd_image_into_four_equal_parts():
    x = synthetic_image(41, 49)
    parts = quadrants(x)
    assert all(p.shape == (1, 3, 20, 24) for p in parts)
    top = torch.cat(parts[:2], dim=3)
    assert torch.equal(torch.cat([top, torch.cat(parts[2:], dim=3)], dim=2), x[..., :40, :48])
    assert torch.equal(part_image(x, "q3"), parts[3]) and part_image(x, "base").shape == (1, 3, 40, 48)


@pytest.fixture(scope="module")
def highres_parts(tmp_path_factory):
    """The five pyramids of a 41x49 PNG: ({part: folder}, config, image path)."""
    root = tmp_path_factory.mktemp("highres")
    src = write_png(root / "img.png", synthetic_image(41, 49, seed=4))
    cfg = preset("test").replace(max_size=24, min_size=12, niter=15)
    urls = {part: train_part(src, part, cfg, str(root / "run" / part), progress=False) for part in PARTS}
    return urls, cfg, src


def test_highres_stitch_has_the_full_size_and_smoother_seams(highres_parts):
    urls, cfg, _ = highres_parts
    assert highres_config(cfg, "base").max_size == 48 and highres_config(cfg, "q0") == cfg
    assert SinGAN.load(urls["q1"]).shapes[-1] == (20, 24) and SinGAN.load(urls["base"]).shapes[-1] == (40, 48)
    quads = [urls[p] for p in PARTS[1:]]
    raw = mosaic(quads, n=3, seed=7)
    stitched = stitch(urls["base"], quads, n=3, seed=7)
    assert stitched.shape == raw.shape == (3, 3, 40, 48)
    assert seam_strength(stitched) < 0.7 * seam_strength(raw)
    far_from_seams = (slice(None), slice(None), slice(0, 12), slice(0, 14))
    assert torch.equal(stitched[far_from_seams], raw[far_from_seams])  # only the seam band is replaced


def test_highres_cli(highres_parts, tmp_path):
    urls, _, src = highres_parts
    out = shutil.copytree(urls["base"].rsplit("/", 1)[0], tmp_path / "run")  # trained: resuming skips training
    res = runner.invoke(app, ["highres", src, "--out", str(out), "--preset", "test", "--set", "max_size=24",
                              "--set", "min_size=12", "--set", "niter=15", "--n", "2", "-q"])
    assert res.exit_code == 0, res.output
    assert Image.open(out / "highres_0001.png").size == (48, 40) and (out / "mosaic_0000.png").exists()
    bad = runner.invoke(app, ["highres", src, "--out", str(tmp_path / "bad"), "--preset", "test",
                              "--inject-stage", "30"])
    assert "outside the base pyramid" in _error_line(bad) and not (tmp_path / "bad").exists()


# ---------------------------------------------------------------------------- multi-image training (DoubleGAN)
def test_multi_image_training_reconstructs_each_input():
    a, b = synthetic_image(H, W, seed=0), -synthetic_image(30, 40, seed=9)  # b is resized to a's shape
    model = train([a, b], preset("test").replace(niter=30), progress=False)
    assert model.num_images == 2 and model.z_star.shape[0] == 2
    assert model.config.rec_noise == "fixed"  # each image's z* names it: never redrawn, whatever the default
    x0 = model.reals[-1]
    for i in range(2):
        rec = model.reconstruct(image_index=i)
        own, other = (rec - x0[i]).abs().mean(), (rec - x0[1 - i]).abs().mean()
        assert own < 0.5 * other
    assert model.sample(3, seed=0).shape == (3, 3, *model.shapes[-1])
