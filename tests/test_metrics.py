"""Evaluation metrics: SIFID (with a random-init weights file of the official shapes), patch SWD, patch Fréchet
distance, diversity, the long-format DataFrame and `singan eval`."""

from __future__ import annotations

import importlib
import io

import numpy as np
import pandas as pd
import pytest
import scipy.linalg
import torch
import torch.nn.functional as F
import typer
from typer.testing import CliRunner

from pipeline.cli_eval import register
from singan_core.metrics import (
    COLUMNS,
    WEIGHTS_ENV,
    WEIGHTS_FILE,
    FrechetReference,
    InceptionStem,
    MissingWeightsError,
    default_weights_path,
    diversity,
    evaluate,
    evaluate_frame,
    frechet_distance,
    gaussian_stats,
    load_inception,
    patch_fd,
    patch_stats,
    patch_swd,
    random_inception_state_dict,
    resolve_inception_weights,
    sifid,
)

from .conftest import synthetic_image, write_png

NOISE_LEVELS = (0.02, 0.05, 0.1, 0.2, 0.4)
BLUR_SIGMAS = (0.5, 1.0, 2.0)
REFUSED_URL = f"http://127.0.0.1:9/{WEIGHTS_FILE}"  # connection refused at once: an offline machine, quickly
sifid_module = importlib.import_module("singan_core.metrics.sifid")  # the attribute `metrics.sifid` is the function


# ---------------------------------------------------------------------------- fixtures and helpers
@pytest.fixture(scope="module")
def image() -> torch.Tensor:
    return synthetic_image(48, 64, seed=3)


@pytest.fixture(scope="module")
def noise() -> torch.Tensor:
    return torch.randn(1, 3, 48, 64, generator=torch.Generator().manual_seed(99))


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> str:
    """A weights file with the official file's stem keys and shapes, random values (plus keys to ignore)."""
    path = tmp_path_factory.mktemp("weights") / WEIGHTS_FILE
    torch.save(random_inception_state_dict(seed=0), path)
    return str(path)


@pytest.fixture
def offline(monkeypatch, tmp_path):
    """No weights anywhere: empty torch.hub cache, no environment variable, downloads refused."""
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch_home"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    monkeypatch.setattr(sifid_module, "WEIGHTS_URL", REFUSED_URL)


def blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    radius = int(3 * sigma + 0.5)
    t = torch.arange(-radius, radius + 1, dtype=torch.float32)
    k = torch.exp(-(t**2) / (2 * sigma**2))
    k = k / k.sum()
    x = F.pad(x, (radius, radius, radius, radius), mode="reflect")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(3, 1, 1, -1), groups=3)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(3, 1, -1, 1), groups=3)


def degraded(image, noise):
    """The image with growing noise, and with growing blur."""
    return torch.cat([image + s * noise for s in NOISE_LEVELS]), torch.cat([blur(image, s) for s in BLUR_SIGMAS])


# (torch.testing.assert_close is avoided: its first call imports torch.distributed, seconds on a small machine)
def assert_increasing(values: torch.Tensor) -> None:
    v = values.tolist()
    assert all(a < b for a, b in zip(v, v[1:], strict=False)), v


# ---------------------------------------------------------------------------- Fréchet distance
def _random_gaussian(d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    a = rng.standard_normal((3 * d, d))
    return rng.standard_normal(d), a.T @ a / (3 * d)


def _scipy_frechet(mu1, s1, mu2, s2) -> float:
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean).real)


def test_frechet_matches_scipy_and_is_symmetric():
    (mu1, s1), (mu2, s2) = _random_gaussian(20, 0), _random_gaussian(20, 1)
    d12 = float(frechet_distance(torch.tensor(mu1), torch.tensor(s1), torch.tensor(mu2), torch.tensor(s2)))
    d21 = float(frechet_distance(torch.tensor(mu2), torch.tensor(s2), torch.tensor(mu1), torch.tensor(s1)))
    assert d12 == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-9)
    assert d12 == pytest.approx(d21, rel=1e-10)
    assert float(frechet_distance(torch.tensor(mu1), torch.tensor(s1), torch.tensor(mu1), torch.tensor(s1))) < 1e-10


def test_frechet_reference_batch_and_singular_covariances():
    mu, s = (torch.tensor(v) for v in _random_gaussian(8, 2))
    ref = FrechetReference(mu, s)
    mus = torch.stack([mu, mu + 1, mu * 0])
    low_rank = torch.outer(torch.arange(8.0, dtype=torch.float64), torch.ones(8, dtype=torch.float64))
    sigmas = torch.stack([s, 2 * s, low_rank @ low_rank.T])  # the last one has rank 1: no epsilon needed
    batch = ref.distance(mus, sigmas)
    one_by_one = torch.stack([frechet_distance(mu, s, m, c) for m, c in zip(mus, sigmas, strict=True)])
    assert torch.isfinite(batch).all()
    np.testing.assert_allclose(batch.numpy(), one_by_one.numpy(), rtol=1e-10, atol=1e-10)
    assert batch[0] < 1e-10 and batch[1] > 0


def test_gaussian_stats_is_numpy_mean_and_cov():
    f = torch.randn(50, 6, generator=torch.Generator().manual_seed(0))
    mu, sigma = gaussian_stats(f)
    np.testing.assert_allclose(mu.numpy(), f.double().numpy().mean(0), rtol=1e-12)
    np.testing.assert_allclose(sigma.numpy(), np.cov(f.double().numpy(), rowvar=False), rtol=1e-12)


# ---------------------------------------------------------------------------- SIFID
def test_stem_has_torchvision_keys_and_shapes():
    shapes = {k: tuple(v.shape) for k, v in InceptionStem(192).state_dict().items()}
    assert shapes["Conv2d_1a_3x3.conv.weight"] == (32, 3, 3, 3)
    assert shapes["Conv2d_2a_3x3.conv.weight"] == (32, 32, 3, 3)
    assert shapes["Conv2d_2b_3x3.conv.weight"] == (64, 32, 3, 3)
    assert shapes["Conv2d_3b_1x1.conv.weight"] == (80, 64, 1, 1)
    assert shapes["Conv2d_4a_3x3.conv.weight"] == (192, 80, 3, 3)
    assert shapes["Conv2d_4a_3x3.bn.running_var"] == (192,)
    assert not any(k.endswith(".conv.bias") for k in shapes)  # bias=False, as torchvision
    assert set(InceptionStem(64).state_dict()) < set(shapes)
    with torch.inference_mode():  # torchvision's documented sizes for a 299 x 299 input
        x = torch.zeros(1, 3, 299, 299)
        assert InceptionStem(64)(x).shape == (1, 64, 147, 147)
        assert InceptionStem(192)(x).shape == (1, 192, 71, 71)


def test_weights_load_through_flag_env_and_cache(weights_file, monkeypatch, tmp_path):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "th"))
    monkeypatch.delenv(WEIGHTS_ENV, raising=False)
    state = random_inception_state_dict(seed=0)
    model = load_inception(weights_file, layer=192)
    assert model.source == weights_file and not model.training
    for key, value in model.state_dict().items():
        if not key.endswith("num_batches_tracked"):
            assert torch.equal(value, state[key]), key
    monkeypatch.setenv(WEIGHTS_ENV, weights_file)
    assert resolve_inception_weights() == weights_file
    monkeypatch.delenv(WEIGHTS_ENV)
    cached = default_weights_path()
    assert cached == str(tmp_path / "th" / "hub" / "checkpoints" / WEIGHTS_FILE)
    (tmp_path / "th" / "hub" / "checkpoints").mkdir(parents=True)
    torch.save(state, cached)
    assert resolve_inception_weights(download=False) == cached
    assert load_inception(layer=64).source == cached
    assert resolve_inception_weights("file://" + weights_file) == "file://" + weights_file  # fsspec URLs


def test_missing_weights_is_one_clear_line(offline):
    with pytest.raises(MissingWeightsError) as info:
        resolve_inception_weights()
    message = str(info.value)
    assert "\n" not in message
    for part in (WEIGHTS_FILE, WEIGHTS_ENV, "--inception-weights", default_weights_path(), "failed"):
        assert part in message
    with pytest.raises(MissingWeightsError, match="no such file"):
        resolve_inception_weights("/nonexistent/inception.pth")
    assert isinstance(info.value, RuntimeError)


def test_wrong_weights_file_is_refused(tmp_path):
    state = random_inception_state_dict()
    state["Conv2d_2b_3x3.conv.weight"] = torch.zeros(64, 32, 5, 5)
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(MissingWeightsError, match="Conv2d_2b_3x3.conv.weight has shape"):
        load_inception(str(tmp_path / "bad.pth"))
    (tmp_path / "junk.pth").write_bytes(b"not a torch file")
    with pytest.raises(MissingWeightsError, match="not a readable PyTorch weights file"):
        load_inception(str(tmp_path / "junk.pth"))


@pytest.mark.parametrize("layer", [64, 192])
def test_sifid_zero_for_identical_and_grows_with_noise_and_blur(image, noise, weights_file, layer):
    noisy, blurred = degraded(image, noise)
    assert float(sifid(image, image, weights=weights_file, layer=layer)[0]) < 1e-8
    assert_increasing(sifid(image, noisy, weights=weights_file, layer=layer))
    assert_increasing(sifid(image, blurred, weights=weights_file, layer=layer))


def test_sifid_matches_numpy_scipy_on_the_same_features(image, noise, weights_file):
    model = load_inception(weights_file, layer=64)
    fake = image + 0.1 * noise
    with torch.inference_mode():
        feats = [model(x)[0].flatten(1).T.double().numpy() for x in (image, fake)]  # [positions, 64]
    (mu1, s1), (mu2, s2) = ((f.mean(0), np.cov(f, rowvar=False)) for f in feats)
    ours = float(sifid(image, fake, model=model)[0])
    assert ours == pytest.approx(_scipy_frechet(mu1, s1, mu2, s2), rel=1e-6)
    assert ours == pytest.approx(float(sifid(fake, image, model=model)[0]), rel=1e-9)  # symmetric


def test_sifid_batch_equals_one_at_a_time(image, noise, weights_file):
    noisy, _ = degraded(image, noise)
    batch = sifid(image, noisy, weights=weights_file, batch_size=5)
    single = torch.cat([sifid(image, x, weights=weights_file, batch_size=1) for x in noisy])
    np.testing.assert_allclose(batch.numpy(), single.numpy(), rtol=1e-5, atol=1e-9)


# ---------------------------------------------------------------------------- patch metrics
@pytest.mark.parametrize("metric", [patch_swd, patch_fd])
def test_patch_metrics_zero_for_identical_and_grow(image, noise, metric):
    noisy, blurred = degraded(image, noise)
    assert float(metric(image, image)[0]) < 1e-6
    assert_increasing(metric(image, noisy))
    assert_increasing(metric(image, blurred))


@pytest.mark.parametrize("metric", [patch_swd, patch_fd])
def test_patch_metrics_batch_equals_one_at_a_time(image, noise, metric):
    noisy, _ = degraded(image, noise)
    batch = metric(image, noisy, batch_size=5)
    single = torch.cat([metric(image, x, batch_size=1) for x in noisy])
    np.testing.assert_allclose(batch.numpy(), single.numpy(), rtol=1e-5, atol=1e-9)


def test_swd_is_seeded_and_handles_other_sizes(image, noise):
    fake = image + 0.1 * noise
    a, b, c = (patch_swd(image, fake, seed=s) for s in (0, 0, 1))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert patch_swd(image, fake, per_level=True).shape == (1, 2)  # 48 px: levels of 48 and 24 px
    wider = torch.cat([image, image], dim=-1)  # same patches, twice as many: nearly the same distribution
    assert float(patch_swd(image, wider)[0]) < 0.5 * float(a[0])  # only the patches across the seam are new


@pytest.mark.parametrize("height", [48, 16])  # 48: the row-wise Gram route; 16 (< 2 x 11 - 1): the unfold route
def test_patch_fd_is_seed_002_statistic(image, noise, height):
    image, fake = image[..., :height, :], (image + 0.1 * noise)[..., :height, :]

    def numpy_stats(x, size=11):
        p = F.unfold(x.double(), size)[0].T.numpy()  # [patches, 3 size^2]
        return p.mean(0), np.cov(p, rowvar=False)

    mu, sigma = patch_stats(torch.cat([image, fake]))
    assert mu.shape == (2, 363) and sigma.shape == (2, 363, 363) and sigma.dtype == torch.float64
    for i, x in enumerate((image, fake)):
        np_mu, np_sigma = numpy_stats(x)
        np.testing.assert_allclose(mu[i].numpy(), np_mu, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(sigma[i].numpy(), np_sigma, rtol=1e-9, atol=1e-14)
    if height == 48:  # with fewer patches than dimensions (16 px) scipy's sqrtm of the singular product is inexact
        expected = _scipy_frechet(*numpy_stats(image, 5), *numpy_stats(fake, 5))  # 5x5: a quicker scipy sqrtm
        assert float(patch_fd(image, fake, patch_size=5)[0]) == pytest.approx(expected, rel=1e-6)


# ---------------------------------------------------------------------------- diversity
def test_diversity(image, noise):
    assert diversity(image.expand(4, -1, -1, -1), image) == 0.0
    g = torch.Generator().manual_seed(5)
    values = []
    for s in NOISE_LEVELS:
        samples = image + s * torch.randn(6, 3, 48, 64, generator=g)
        values.append(diversity(samples, image))
    assert_increasing(torch.tensor(values))
    samples = image + 0.1 * torch.randn(6, 3, 48, 64, generator=g)
    expected = samples.double().numpy().std(axis=0).mean() / image.double().numpy().std()
    assert diversity(samples, image) == pytest.approx(expected, rel=1e-9)
    as_uint8_scale = diversity((samples + 1) * 127.5, (image + 1) * 127.5)
    assert as_uint8_scale == pytest.approx(expected, rel=1e-6)
    assert 0 <= diversity(samples, image, gray=True)


# ---------------------------------------------------------------------------- evaluate and the DataFrame
def test_evaluate_frame_long_format(image, noise, weights_file):
    samples = image + 0.05 * noise * torch.arange(1, 5).view(4, 1, 1, 1)
    frame = evaluate_frame(image, samples, inception_weights=weights_file, device="cpu")
    assert list(frame.columns) == list(COLUMNS)
    assert str(frame["sample"].dtype) == "Int64" and str(frame["value"].dtype) == "float64"
    assert list(dict.fromkeys(frame["metric"])) == ["sifid", "swd", "patch_fd", "diversity"]
    assert len(frame) == 3 * (4 + 2) + 1
    sifid_rows = frame[frame["metric"] == "sifid"]
    assert list(sifid_rows["stat"]) == ["value"] * 4 + ["mean", "std"]
    values = sifid_rows[sifid_rows["stat"] == "value"]["value"].to_numpy()
    assert sifid_rows[sifid_rows["stat"] == "mean"]["value"].item() == pytest.approx(values.mean())
    assert sifid_rows[sifid_rows["stat"] == "std"]["value"].item() == pytest.approx(values.std())
    div = frame[frame["metric"] == "diversity"]
    assert div["stat"].tolist() == ["set"] and div["sample"].isna().all()
    one_at_a_time = evaluate_frame(image, samples, inception_weights=weights_file, device="cpu", batch_size=1)
    pd.testing.assert_frame_equal(frame, one_at_a_time, rtol=1e-5)
    buf = io.BytesIO()
    frame.to_parquet(buf, index=False)
    pd.testing.assert_frame_equal(pd.read_parquet(io.BytesIO(buf.getvalue())), frame)


def test_evaluate_without_weights_strict_and_not(image, noise, offline):
    with pytest.raises(MissingWeightsError):
        evaluate(image, image + 0.1 * noise)
    report = evaluate(image, torch.cat([image + 0.1 * noise, image - 0.1 * noise]), strict=False, sifid_layer=192)
    assert set(report.errors) == {"sifid_192"} and WEIGHTS_FILE in report.errors["sifid_192"]
    assert set(report.per_sample) == {"swd", "patch_fd"} and set(report.per_set) == {"diversity"}


def test_evaluate_mixed_sizes_and_bad_input(image, noise):
    samples = [image + 0.1 * noise, image[..., :40], image - 0.1 * noise]
    report = evaluate(image, samples, "swd,patch_fd,diversity")
    assert report.num_samples == 3 and np.isnan(report.per_set["diversity"]) and "diversity" in report.errors
    alone = patch_fd(image, image[..., :40])
    assert report.per_sample["patch_fd"][1] == pytest.approx(float(alone[0]), rel=1e-9)
    with pytest.raises(ValueError, match="unknown metric"):
        evaluate(image, image, "sifid,fid")
    with pytest.raises(ValueError, match=r"\[B, 3, H, W\]"):
        evaluate(image, torch.zeros(2, 1, 32, 32), "swd")
    with pytest.raises(ValueError, match="smaller than the 11x11 patch"):
        patch_fd(image, image[..., :8, :8])


# ---------------------------------------------------------------------------- the CLI
@pytest.fixture(scope="module")
def cli() -> typer.Typer:
    app = typer.Typer()

    @app.callback()
    def main() -> None:
        """The `singan` app, as pipeline/cli.py builds it."""

    register(app)
    return app


@pytest.fixture(scope="module")
def sample_dir(tmp_path_factory, image, noise):
    root = tmp_path_factory.mktemp("eval")
    write_png(root / "real.png", image)
    folder = root / "samples"
    folder.mkdir()
    g = torch.Generator().manual_seed(7)
    for i in (0, 1, 2, 10):  # natural order: 0, 1, 2, 10
        write_png(folder / f"sample_{i}.png", (image + 0.1 * torch.randn(image.shape, generator=g)).clamp(-1, 1))
    (folder / "notes.txt").write_text("not an image")
    return root


def test_cli_eval_folder(cli, sample_dir, weights_file):
    out = sample_dir / "metrics.parquet"
    args = ["eval", "--real", str(sample_dir / "real.png"), str(sample_dir / "samples"), "--n", "3"]
    result = CliRunner().invoke(cli, [*args, "--inception-weights", weights_file, "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "sifid" in result.stdout and "mean" in result.stdout and "diversity:" in result.stdout
    frame = pd.read_parquet(out)
    assert list(frame.columns) == [*COLUMNS, "file"]
    files = frame[(frame["metric"] == "swd") & (frame["stat"] == "value")]["file"].tolist()
    assert [f.rsplit("/", 1)[-1] for f in files] == ["sample_0.png", "sample_1.png", "sample_2.png"]


def test_cli_eval_missing_weights_exit_2_and_the_rest_written(cli, sample_dir, offline):
    out = sample_dir / "no_sifid.csv"
    args = ["eval", "--real", str(sample_dir / "real.png"), str(sample_dir / "samples"), "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 2
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and WEIGHTS_FILE in errors[0] and WEIGHTS_ENV in errors[0]
    frame = pd.read_csv(out)
    assert set(frame["metric"]) == {"swd", "patch_fd", "diversity"}
    assert (frame["sample"].dropna() == [0, 1, 2, 3] * 2).all()


@pytest.mark.parametrize(
    "extra, message",
    [
        (["--metrics", "swd,fid"], "unknown metric"),
        (["--sifid-layer", "128"], "--sifid-layer"),
        (["--out", "x.xlsx"], "--out must end in"),
    ],
)
def test_cli_eval_bad_options(cli, sample_dir, extra, message):
    args = ["eval", "--real", str(sample_dir / "real.png"), str(sample_dir / "samples"), *extra]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 1 and message in result.stderr and result.stderr.startswith("error:")


def test_cli_eval_bad_paths(cli, sample_dir, tmp_path):
    real = str(sample_dir / "real.png")
    for args, message in [
        (["--real", str(tmp_path / "nope.png"), str(sample_dir / "samples")], "no such file"),
        (["--real", real, str(tmp_path / "missing")], "no such folder"),
        (["--real", real, str(tmp_path)], "no image files"),
        (["--real", real, real], "it is a file"),
    ]:
        result = CliRunner().invoke(cli, ["eval", *args, "--metrics", "swd"])
        assert result.exit_code == 1 and message in result.stderr, result.stderr
        assert len(result.stderr.strip().splitlines()) == 1


def test_cli_eval_model_folder(cli, tiny_model, tiny_image, tmp_path):
    _, model_dir = tiny_model
    real = write_png(tmp_path / "real.png", tiny_image)
    out = tmp_path / "m.csv"
    args = ["eval", "--real", real, model_dir, "--n", "4", "--metrics", "swd,patch_fd,diversity", "--out", str(out)]
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    assert (frame[frame["metric"] == "swd"]["stat"] == "value").sum() == 4
    assert frame[frame["metric"] == "diversity"]["value"].item() > 0
