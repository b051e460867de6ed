"""Reading images of every kind, clear errors for bad input, and the train/sample/reconstruct CLI."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from pipeline.cli import app
from singan_core.images import ImageError, load_image

from .conftest import synthetic_image, write_png

runner = CliRunner()


def _rgb(h=40, w=48):
    return (np.random.default_rng(0).random((h, w, 3)) * 255).astype(np.uint8)


@pytest.mark.parametrize("mode", ["L", "P", "RGBA", "LA", "1", "CMYK"])
def test_any_mode_becomes_rgb_in_range(tmp_path, mode):
    path = tmp_path / f"x_{mode}.png" if mode != "CMYK" else tmp_path / "x.jpg"
    Image.fromarray(_rgb()).convert(mode).save(path)
    x = load_image(str(path))
    assert x.shape == (1, 3, 40, 48)
    assert x.min() >= -1 and x.max() <= 1


def test_rgba_alpha_is_dropped(tmp_path):
    rgba = np.zeros((32, 32, 4), np.uint8)
    rgba[..., 0] = 255  # red, fully transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    x = load_image(str(tmp_path / "a.png"))
    assert torch.allclose(x[0, :, 0, 0], torch.tensor([1.0, -1.0, -1.0]))


def test_16_bit_grayscale(tmp_path):
    arr = np.linspace(0, 65535, 40 * 48).reshape(40, 48).astype(np.uint16)
    Image.fromarray(arr).save(tmp_path / "g16.png")
    x = load_image(str(tmp_path / "g16.png"))
    assert x.shape == (1, 3, 40, 48)
    assert x.min() == pytest.approx(-1, abs=1e-3) and x.max() == pytest.approx(1, abs=1e-3)


def test_huge_image_is_reduced_while_decoding(tmp_path):
    Image.new("RGB", (20000, 20000), (10, 200, 30)).save(tmp_path / "huge.jpg", quality=50)
    x = load_image(str(tmp_path / "huge.jpg"), max_size=250)
    assert max(x.shape[-2:]) == 250
    assert torch.allclose(x.mean((2, 3))[0], torch.tensor([10, 200, 30]) / 127.5 - 1, atol=0.05)


@pytest.mark.parametrize(
    ("content", "message"),
    [(None, "no such file"), (b"", "empty file"), (b"hello, not an image", "not an image"),
     ("truncated", "corrupt")],
)
def test_bad_files_give_one_clear_error(tmp_path, content, message):
    path = tmp_path / "bad.png"
    if content == "truncated":
        Image.fromarray(_rgb()).save(path)
        path.write_bytes(path.read_bytes()[:200])
    elif content is not None:
        path.write_bytes(content)
    with pytest.raises(ImageError, match=message):
        load_image(str(path))


# ---------------------------------------------------------------- CLI


def test_cli_train_sample_reconstruct(tmp_path):
    img = write_png(tmp_path / "img.png", synthetic_image(36, 44))
    model = tmp_path / "model"
    res = runner.invoke(app, ["train", img, "--out", str(model), "--preset", "test", "--set", "niter=5", "-q"])
    assert res.exit_code == 0, res.output
    assert (model / "model.json").exists() and (model / "report.json").exists()
    import json

    saved = json.loads((model / "model.json").read_text())
    assert saved["config"]["niter"] == 5  # the resolved config is saved with the model

    res = runner.invoke(app, ["sample", str(model), "--n", "3", "--scale-h", "1.5", "--out", str(tmp_path / "s")])
    assert res.exit_code == 0, res.output
    files = sorted((tmp_path / "s").glob("*.png"))
    assert len(files) == 3
    w, h = Image.open(files[0]).size
    assert (h, w) == (27, 48)  # training size 27x32 (max_size 32), 1.5x as wide

    res = runner.invoke(app, ["reconstruct", str(model), "--out", str(tmp_path / "rec.png")])
    assert res.exit_code == 0, res.output
    assert Image.open(tmp_path / "rec.png").size == (32, 27)


@pytest.mark.parametrize(
    ("setup", "args", "message"),
    [
        ("missing", [], "no such file"),
        ("corrupt", [], "not an image"),
        ("small", [], "min_size"),
        ("ok", ["--set", "nonsense=1"], "unknown config field"),
        ("ok", ["--set", "niter=abc"], "niter expects int"),
        ("ok", ["--preset", "nope"], "unknown preset"),
    ],
)
def test_cli_bad_input_one_line_nonzero_nothing_written(tmp_path, setup, args, message):
    path = tmp_path / "in.png"
    if setup == "corrupt":
        path.write_bytes(b"garbage")
    elif setup == "small":
        Image.fromarray(_rgb(10, 60)).save(path)
    elif setup == "ok":
        write_png(path, synthetic_image(36, 36))
    out = tmp_path / "out"
    res = runner.invoke(app, ["train", str(path), "--out", str(out), "--preset", "test", *args])
    assert res.exit_code == 1
    lines = [line for line in res.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and message in lines[0]
    assert not out.exists()


def test_sample_of_missing_model_is_an_error(tmp_path):
    res = runner.invoke(app, ["sample", str(tmp_path / "nothing"), "--out", str(tmp_path / "s")])
    assert res.exit_code == 1 and "no SinGAN model" in res.output


def test_console_script_help():
    out = subprocess.run([sys.executable, "-m", "pipeline.cli", "--help"], capture_output=True, text=True)
    assert out.returncode == 0
    for command in ("train", "sample", "reconstruct"):
        assert command in out.stdout


def test_fsspec_memory_urls(tmp_path):
    import fsspec

    with fsspec.open("memory://in/img.png", "wb") as f:
        f.write(Path(write_png(tmp_path / "i.png", synthetic_image(36, 36))).read_bytes())
    res = runner.invoke(app, ["train", "memory://in/img.png", "--out", "memory://models/m", "--preset", "test",
                              "--set", "niter=3", "-q"])
    assert res.exit_code == 0, res.output
    assert fsspec.filesystem("memory").exists("/models/m/model.pt")
