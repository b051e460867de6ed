"""SIFID, the Single Image Fréchet Inception Distance of the SinGAN paper (Shaham et al., ICCV 2019, section 4).

For the real image x and one generated sample x~, every spatial position of an Inception-v3 feature map is
one feature vector; SIFID(x, x~) is the Fréchet distance between the Gaussians (mean, covariance) fitted to
the two sets of vectors. It is reported per sample and as mean and std over N samples (the paper: 50).

Layers: `layer=64` (default) is what the authors' script `SIFID/sifid_score.py` computes, the 64 channels
output by `Conv2d_2b_3x3`, before the first max-pool; `layer=192` is what the paper's text says ("before the
second pooling layer"), the 192 channels output by `Conv2d_4a_3x3`. Inputs are the [-1, 1] images themselves
(what the script feeds the network after its `2 * x - 1`), no resize, no torchvision `transform_input`.

The few stem layers are written here with torchvision's module names, so the official ImageNet weight file
`inception_v3_google-0cc3c7bd.pth` loads as is (its other keys are ignored); torchvision itself is not
needed. Where the file comes from: `resolve_inception_weights`.
"""

from __future__ import annotations

import io
import os
import re
import urllib.request
from collections import OrderedDict

import fsspec
import torch
import torch.nn.functional as F
from torch import nn

from ._common import as_batch, chunk_size
from .frechet import FrechetReference, gaussian_stats

WEIGHTS_FILE = "inception_v3_google-0cc3c7bd.pth"
WEIGHTS_URL = f"https://download.pytorch.org/models/{WEIGHTS_FILE}"
WEIGHTS_ENV = "SINGAN_INCEPTION_WEIGHTS"
SIFID_LAYERS = (64, 192)
_PROBE_TIMEOUT = 10.0  # seconds to wait for the download server before giving up


class MissingWeightsError(RuntimeError):
    """The Inception-v3 weights cannot be had; `str(error)` is one line saying which file and how to provide it."""


def default_weights_path() -> str:
    """torch.hub's cache: $TORCH_HOME/hub/checkpoints/inception_v3_google-0cc3c7bd.pth (torchvision's location)."""
    return os.path.join(torch.hub.get_dir(), "checkpoints", WEIGHTS_FILE)


def _missing(reason: str) -> MissingWeightsError:
    reason = " ".join(str(reason).split())  # one line
    return MissingWeightsError(
        f"SIFID needs the Inception-v3 weights {WEIGHTS_FILE} ({reason}); provide them with "
        f"--inception-weights PATH_OR_URL, the environment variable {WEIGHTS_ENV}, or by putting the file at "
        f"{default_weights_path()} (downloaded there from {WEIGHTS_URL} where the network allows)"
    )


# ---------------------------------------------------------------------------- the network
class BasicConv2d(nn.Module):
    """torchvision's Inception block: convolution without bias, BatchNorm (eps 0.001), ReLU."""

    def __init__(self, in_channels: int, out_channels: int, **kwargs) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, bias=False, **kwargs)
        self.bn = nn.BatchNorm2d(out_channels, eps=0.001)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn(self.conv(x)))


class InceptionStem(nn.Module):
    """The first layers of torchvision's Inception3, with its state-dict key names, up to the SIFID layer.

    layer 64:  Conv2d_1a_3x3 -> Conv2d_2a_3x3 -> Conv2d_2b_3x3                        (the authors' script)
    layer 192: ... -> max-pool 3x3/2 -> Conv2d_3b_1x1 -> Conv2d_4a_3x3                  (the paper's text)
    Input [B, 3, H, W] in [-1, 1]; output the [B, layer, h, w] feature map. Always in eval mode.
    """

    def __init__(self, layer: int = 64) -> None:
        super().__init__()
        if layer not in SIFID_LAYERS:
            raise ValueError(f"SIFID layer must be one of {SIFID_LAYERS}, got {layer}")
        self.layer = layer
        self.source: str | None = None  # where the weights were loaded from
        self.Conv2d_1a_3x3 = BasicConv2d(3, 32, kernel_size=3, stride=2)
        self.Conv2d_2a_3x3 = BasicConv2d(32, 32, kernel_size=3)
        self.Conv2d_2b_3x3 = BasicConv2d(32, 64, kernel_size=3, padding=1)
        if layer == 192:
            self.maxpool1 = nn.MaxPool2d(kernel_size=3, stride=2)
            self.Conv2d_3b_1x1 = BasicConv2d(64, 80, kernel_size=1)
            self.Conv2d_4a_3x3 = BasicConv2d(80, 192, kernel_size=3)
        self.eval()
        self.requires_grad_(False)

    def train(self, mode: bool = True) -> InceptionStem:  # BatchNorm must keep its ImageNet running statistics
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.Conv2d_2b_3x3(self.Conv2d_2a_3x3(self.Conv2d_1a_3x3(x)))
        if self.layer == 192:
            x = self.Conv2d_4a_3x3(self.Conv2d_3b_1x1(self.maxpool1(x)))
        return x


def random_inception_state_dict(seed: int = 0) -> OrderedDict[str, torch.Tensor]:
    """A state dict with the key names and shapes of the official file's stem, randomly initialised.

    For tests and benchmarks only: these are NOT the ImageNet weights, and their SIFID values mean nothing.
    Two unrelated keys of the real file are included, as the loader must ignore them.
    """
    g = torch.Generator().manual_seed(seed)
    state: OrderedDict[str, torch.Tensor] = OrderedDict()
    for name, module in InceptionStem(192).named_children():
        if not isinstance(module, BasicConv2d):
            continue
        w = module.conv.weight
        fan_in = w.shape[1] * w.shape[2] * w.shape[3]
        c = w.shape[0]
        state[f"{name}.conv.weight"] = torch.randn(w.shape, generator=g) * (2.0 / fan_in) ** 0.5
        state[f"{name}.bn.weight"] = 1 + 0.1 * torch.randn(c, generator=g)
        state[f"{name}.bn.bias"] = 0.2 + 0.1 * torch.randn(c, generator=g)  # few channels dead at ReLU
        state[f"{name}.bn.running_mean"] = 0.1 * torch.randn(c, generator=g)
        state[f"{name}.bn.running_var"] = 1 + 0.1 * torch.rand(c, generator=g)
    state["Mixed_5b.branch1x1.conv.weight"] = torch.randn(64, 192, 1, 1, generator=g) * 0.1
    state["fc.bias"] = torch.zeros(1000)
    return state


# ---------------------------------------------------------------------------- where the weights come from
def _is_http(url: str) -> bool:
    return url.startswith(("http://", "https://"))


def _download(url: str, dst: str) -> None:
    """Download `url` to `dst` (atomically, by torch.hub), failing fast when the server cannot be reached."""
    try:
        urllib.request.urlopen(urllib.request.Request(url, method="HEAD"), timeout=_PROBE_TIMEOUT).close()
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        match = re.search(r"-([0-9a-f]{8,})\.", os.path.basename(dst))
        torch.hub.download_url_to_file(url, dst, hash_prefix=match.group(1) if match else None, progress=False)
    except Exception as e:  # noqa: BLE001 - offline, DNS, HTTP, hash mismatch: all mean "not available"
        raise _missing(f"downloading {url} failed: {e}") from None


def _locate(value: str, origin: str, download: bool) -> str:
    if _is_http(value):
        cached = os.path.join(torch.hub.get_dir(), "checkpoints", os.path.basename(value.split("?")[0]))
        if not os.path.isfile(cached):
            if not download:
                raise _missing(f"{origin} {value} is a URL and downloading is off")
            _download(value, cached)
        return cached
    if "://" in value:
        try:
            exists = fsspec.core.url_to_fs(value)[0].exists(value)
        except Exception as e:  # noqa: BLE001 - unknown protocol, missing filesystem package, auth
            raise _missing(f"{origin} {value} cannot be read: {e}") from None
        if not exists:
            raise _missing(f"{origin} {value}: no such file")
        return value
    path = os.path.expanduser(value)
    if not os.path.isfile(path):
        raise _missing(f"{origin} {value}: no such file")
    return path


def resolve_inception_weights(source: str | None = None, *, download: bool = True) -> str:
    """Where the Inception-v3 weights are: a local path, or an fsspec URL to read.

    Order: `source` (the CLI's --inception-weights: a path, an fsspec URL, or http(s) downloaded into the
    cache), else $SINGAN_INCEPTION_WEIGHTS (the same forms), else torch.hub's cache `default_weights_path()`,
    else a download of torchvision's file into that cache when `download` and the network allow.
    Raises MissingWeightsError (one line) when none of these gives the file.
    """
    if source:
        return _locate(source, "--inception-weights", download)
    env = os.environ.get(WEIGHTS_ENV, "").strip()
    if env:
        return _locate(env, WEIGHTS_ENV, download)
    cached = default_weights_path()
    if os.path.isfile(cached):
        return cached
    if not download:
        raise _missing(f"not found at {cached} and downloading is off")
    _download(WEIGHTS_URL, cached)
    return cached


def _read_state_dict(location: str) -> dict[str, torch.Tensor]:
    try:
        if "://" in location:
            with fsspec.open(location, "rb") as f:
                state = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
        else:
            state = torch.load(location, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise _missing(f"{location}: no such file") from None
    except Exception as e:  # noqa: BLE001 - truncated zip, not a torch file, unpickling refused
        raise _missing(f"{location} is not a readable PyTorch weights file: {e}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict):
        raise _missing(f"{location} does not hold a state dict")
    return state


def _load_stem_state(model: InceptionStem, state: dict[str, torch.Tensor], location: str) -> None:
    """Load the keys the stem has, strictly (present, right shape); ignore every other key of the file."""
    wanted = model.state_dict()
    picked: dict[str, torch.Tensor] = {}
    for key, ref in wanted.items():
        if key not in state:
            if key.endswith("num_batches_tracked"):  # absent from files older than torch 0.4; unused in eval mode
                continue
            raise _missing(f"{location} is not torchvision's Inception-v3 state dict (no key {key})")
        value = state[key]
        if not isinstance(value, torch.Tensor) or tuple(value.shape) != tuple(ref.shape):
            shape = tuple(value.shape) if isinstance(value, torch.Tensor) else type(value).__name__
            raise _missing(f"{location}: {key} has shape {shape}, expected {tuple(ref.shape)}")
        picked[key] = value.to(ref.dtype)
    model.load_state_dict(picked, strict=False)


_MODELS: dict[tuple, InceptionStem] = {}


def load_inception(
    weights: str | None = None,
    layer: int = 64,
    device: str | torch.device = "cpu",
    *,
    download: bool = True,
) -> InceptionStem:
    """The SIFID feature extractor with the official weights (see `resolve_inception_weights`), cached per file."""
    location = resolve_inception_weights(weights, download=download)
    stamp = os.stat(location).st_mtime_ns if os.path.isfile(location) else None
    key = (location, stamp, layer, str(torch.device(device)))
    if key not in _MODELS:
        model = InceptionStem(layer)
        _load_stem_state(model, _read_state_dict(location), location)
        model.source = location
        if len(_MODELS) >= 4:
            _MODELS.pop(next(iter(_MODELS)))
        _MODELS[key] = model.to(device)
    return _MODELS[key]


# ---------------------------------------------------------------------------- the metric
@torch.inference_mode()
def inception_stats(
    model: InceptionStem, images: torch.Tensor, batch_size: int | None = None
) -> tuple[torch.Tensor, torch.Tensor]:
    """Mean [B, d] and covariance [B, d, d] (float64) of each image's feature vectors, one per position."""
    images = as_batch(images, "images")
    device = next(model.parameters()).device
    h, w = images.shape[-2:]
    step = chunk_size(batch_size, 4 * 64 * h * w, images.shape[0])  # ~ the largest activation, 64 x h/2 x w/2
    mus, sigmas = [], []
    for start in range(0, images.shape[0], step):
        feats = model(images[start : start + step].to(device, torch.float32))
        if feats.shape[-2] * feats.shape[-1] < 2:
            raise ValueError(f"image {w}x{h} is too small for SIFID layer {model.layer}")
        mu, sigma = gaussian_stats(feats.flatten(2).transpose(1, 2))
        mus.append(mu)
        sigmas.append(sigma)
    return torch.cat(mus), torch.cat(sigmas)


def sifid(
    real: torch.Tensor,
    samples: torch.Tensor,
    *,
    layer: int = 64,
    weights: str | None = None,
    model: InceptionStem | None = None,
    batch_size: int | None = None,
    download: bool = True,
) -> torch.Tensor:
    """SIFID(x, x~_i) for every sample: a float64 [B] tensor on the CPU.

    real [1, 3, H, W] and samples [B, 3, H', W'] in [-1, 1] (sizes may differ). The network runs on the
    samples' device; `model` (from `load_inception`) overrides `weights` / `layer`.
    """
    real, samples = as_batch(real, "real"), as_batch(samples, "samples")
    if real.shape[0] != 1:
        raise ValueError(f"real must be one image, got a batch of {real.shape[0]}")
    if model is None:
        model = load_inception(weights, layer, samples.device, download=download)
    ref = FrechetReference(*(t[0] for t in inception_stats(model, real)))
    mu, sigma = inception_stats(model, samples, batch_size)
    return ref.distance(mu, sigma).cpu()
