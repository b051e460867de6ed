"""A trained SinGAN: the pyramid of generators and the one routine that runs it.

A model is a list of stages in training order, stage k = N - n (stage 0 is the coarsest scale x_N):
each holds G_n, its noise amplitude noise_amp_n (sigma_n) and the shape of x_n. The coarsest stage
also keeps z*, the fixed noise map of the reconstruction {z*, 0, ..., 0} (one per training image).

`generate` is the one generation routine every use shares: random samples of any size, the
reconstruction, injection of an image at a scale (paint-to-image, harmonization, editing, the
High-Res stitch) and explicit noise maps (animation).
"""

from __future__ import annotations

import io
import json
import pickle
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import torch

from .config import Config
from .devices import resolve_device
from .images import atomic_write, load_image, resize
from .model import Discriminator, Generator

FORMAT_VERSION = 1
# On CPU a batch goes through G_n in chunks whose widest activation is at most this many bytes:
# larger ones fall out of the caches (at 250 px, G_0 of 16 samples at once took 1.8x as long per
# sample as one at a time; benchmarks/train_speed.py measures sampling).
CPU_CHUNK_BYTES = 8 * 2**20
NoiseFn = Callable[[int, tuple[int, int, int, int]], torch.Tensor]


@dataclass
class Stage:
    """One scale of the pyramid: G_n, sigma_n = noise_amp_n and the shape of x_n."""

    generator: Generator
    noise_amp: float
    shape: tuple[int, int]
    discriminator: Discriminator | None = None  # kept for fine-tuning (paint-to-image quantization)


class ModelFileError(ValueError):
    """A model folder whose files cannot be loaded: truncated, corrupt, of another format, or refused by the
    weights-only loader (model.pt holding more than tensors). One line, naming the folder."""


def model_exists(url: str) -> bool:
    """Whether a model (complete, or a checkpoint of the scales so far) was saved in the folder `url`."""
    fs, path = fsspec.core.url_to_fs(f"{url.rstrip('/')}/model.json")  # written last by `save`
    return fs.exists(path)


def coarsest_noise(batch: int, shape: tuple[int, int], device: torch.device, generator=None) -> torch.Tensor:
    """z_N as the reference draws it: one Gaussian channel repeated over the 3 colour channels."""
    z = torch.randn(batch, 1, *shape, device=device, generator=generator)
    return z.expand(batch, 3, *shape).contiguous()


def upsample(x: torch.Tensor, shape: tuple[int, int], mode: str = "float") -> torch.Tensor:
    """up(x~_{n+1}): x~_{n+1} resized to x_n's shape. `uint8` first clamps it to [-1, 1] and truncates it to
    8 bits, then clamps the result, as the authors' code does between scales (its imresize works on uint8)."""
    if mode == "uint8":
        x = torch.floor((x.clamp(-1, 1) + 1) * 127.5) / 127.5 - 1
        return resize(x, shape).clamp(-1, 1)
    return resize(x, shape)


def stage_noise(k: int, batch: int, shape: tuple[int, int], device: torch.device, generator=None) -> torch.Tensor:
    """z_n ~ N(0, 1): single-channel at the coarsest stage, 3 independent channels above it."""
    if k == 0:
        return coarsest_noise(batch, shape, device, generator)
    return torch.randn(batch, 3, *shape, device=device, generator=generator)


class SinGAN:
    """A trained (or partly trained) pyramid. Made by `singan_core.train(image, config)` or `SinGAN.load`."""

    def __init__(
        self,
        config: Config,
        stages: list[Stage],
        z_star: torch.Tensor,
        reals: list[torch.Tensor],
        scale_factor: float,
        report: dict[str, Any] | None = None,
        meta: dict[str, Any] | None = None,
    ) -> None:
        self.config = config
        self.stages = stages
        self.z_star = z_star  # [num_images, 3, h_N, w_N]
        self.reals = reals  # x_N .. x_0 (coarsest first), each [num_images, 3, h, w]
        self.scale_factor = scale_factor  # r
        self.report = report or {}
        self.meta = meta or {}
        for stage in self.stages:
            stage.generator.eval()
            stage.generator.requires_grad_(False)

    # ------------------------------------------------------------------ properties
    @property
    def num_stages(self) -> int:
        return len(self.stages)

    @property
    def device(self) -> torch.device:
        return self.z_star.device

    @property
    def shapes(self) -> list[tuple[int, int]]:
        return [s.shape for s in self.stages]

    @property
    def num_images(self) -> int:
        return self.z_star.shape[0]

    def to(self, device: torch.device | str) -> SinGAN:
        device = torch.device(device)
        for stage in self.stages:
            stage.generator.to(device)
            if stage.discriminator is not None:
                stage.discriminator.to(device)
        self.z_star = self.z_star.to(device)
        self.reals = [x.to(device) for x in self.reals]
        return self

    def coarsest(self, k: int) -> SinGAN:
        """The pyramid's coarsest k scales, G_N .. G_{N-k+1}, as a model of their own (the same stages and z*; the
        report's per-scale entries cut to them; a cut pyramid is not `complete`)."""
        report = {**self.report, "stages": self.report["stages"][:k]} if "stages" in self.report else self.report
        meta = {**self.meta, "complete": False} if "complete" in self.meta and k < self.num_stages else self.meta
        return SinGAN(self.config, self.stages[:k], self.z_star, self.reals[:k], self.scale_factor, report, meta)

    # ------------------------------------------------------------------ generation
    def apply_stage(self, k: int, z: torch.Tensor, prev: torch.Tensor) -> torch.Tensor:
        """x~_n = G_n(noise_amp_n * z_n, up(x~_{n+1})) at stage k = N - n (frozen, eval-mode G_n:
        every image of the batch is independent, so chunking does not change the result)."""
        G, amp = self.stages[k].generator, self.stages[k].noise_amp
        if z.device.type == "cpu":
            h, w = (s + 2 * G.pad for s in z.shape[-2:])
            step = max(1, CPU_CHUNK_BYTES // (G.head[0].out_channels * h * w * z.element_size()))
            if step < z.shape[0]:
                return torch.cat([G(amp * zc, pc) for zc, pc in zip(z.split(step), prev.split(step), strict=True)])
        return G(amp * z, prev)

    @torch.no_grad()
    def generate(
        self,
        batch: int = 1,
        *,
        shapes: Sequence[tuple[int, int]] | None = None,
        fixed_noise_stages: int = 0,
        image_index: int | torch.Tensor = 0,
        injected: torch.Tensor | None = None,
        inject_stage: int = 0,
        noise: NoiseFn | None = None,
        until: int | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        """Run stages `inject_stage` .. `until - 1` and return x~ of the last one run.

        - Stages k < `fixed_noise_stages` use the reconstruction noise {z*, 0, ..., 0} of
          training image `image_index` (the paper's gen_start_scale); the rest draw fresh z_n.
        - `injected`: an image that replaces up(x~_{n+1}) at `inject_stage` (it is resized to that
          stage's shape); earlier stages are skipped. Without it, generation starts at stage 0.
        - `noise(k, shape)`: explicit z_n for every stage (overrides the two rules above).
        - `shapes`: per-stage shapes for samples of another size (defaults: the training shapes).
        """
        shapes = list(shapes or self.shapes)
        until = self.num_stages if until is None else until
        device = self.device
        if injected is None:
            inject_stage = 0
            x = torch.zeros(batch, 3, *shapes[0], device=device)
        else:
            x = resize(injected.to(device), shapes[inject_stage]).expand(batch, -1, -1, -1)
        for k in range(inject_stage, until):
            if k > inject_stage:
                x = upsample(x, shapes[k], self.config.upsample)
            full_shape = (batch, 3, *shapes[k])
            if noise is not None:
                z = noise(k, full_shape).to(device)
            elif k < fixed_noise_stages:
                z = self._reconstruction_noise(k, image_index, batch, shapes[k])
            else:
                z = stage_noise(k, batch, shapes[k], device, generator)
            x = self.apply_stage(k, z, x)
        return x

    def _reconstruction_noise(
        self, k: int, image_index: int | torch.Tensor, batch: int, shape: tuple[int, int]
    ) -> torch.Tensor:
        if tuple(shape) != tuple(self.shapes[k]):
            raise ValueError("reconstruction noise exists only at the training size (scale_h = scale_v = 1)")
        if k > 0:
            return torch.zeros(batch, 3, *shape, device=self.device)
        z = self.z_star[image_index]
        return (z if z.dim() == 4 else z.unsqueeze(0)).expand(batch, -1, -1, -1)

    def scaled_shapes(self, scale_h: float = 1.0, scale_v: float = 1.0) -> list[tuple[int, int]]:
        """Per-stage shapes of a sample scale_v times as tall and scale_h times as wide."""
        if scale_h <= 0 or scale_v <= 0:
            raise ValueError("scale_h and scale_v must be positive")
        return [(max(1, round(h * scale_v)), max(1, round(w * scale_h))) for h, w in self.shapes]

    def sample(
        self,
        n: int = 1,
        *,
        scale_h: float = 1.0,
        scale_v: float = 1.0,
        gen_start_scale: int = 0,
        seed: int | None = None,
        batch_size: int = 16,
    ) -> torch.Tensor:
        """n random samples [n, 3, H, W] in [-1, 1], drawn in batches.

        `gen_start_scale` = K: stages below K reuse the reconstruction noise (z*, 0, ...), so the
        coarse structure is the input's and variation starts at stage K.
        """
        if not 0 <= gen_start_scale < self.num_stages:
            raise ValueError(f"gen_start_scale must be in 0..{self.num_stages - 1}, got {gen_start_scale}")
        shapes = self.scaled_shapes(scale_h, scale_v)
        if gen_start_scale > 0 and shapes != self.shapes:
            raise ValueError("gen_start_scale > 0 needs scale_h = scale_v = 1 (z* exists only at the training size)")
        gen = torch.Generator(device=self.device)
        gen.manual_seed(seed if seed is not None else torch.seed())
        out = []
        for start in range(0, n, batch_size):
            b = min(batch_size, n - start)
            out.append(self.generate(b, shapes=shapes, fixed_noise_stages=gen_start_scale, generator=gen))
        return torch.cat(out).clamp(-1, 1)

    def reconstruct(self, image_index: int = 0) -> torch.Tensor:
        """x~rec_0 = the pyramid run on {z*, 0, ..., 0}; close to x_0 after training."""
        return self.generate(1, fixed_noise_stages=self.num_stages, image_index=image_index).clamp(-1, 1)

    # ------------------------------------------------------------------ persistence
    def state_tensors(self) -> dict[str, torch.Tensor]:
        tensors: dict[str, torch.Tensor] = {"z_star": self.z_star.cpu()}
        for k, stage in enumerate(self.stages):
            for name, t in stage.generator.state_dict().items():
                tensors[f"G.{k}.{name}"] = t.cpu()
            if stage.discriminator is not None:
                for name, t in stage.discriminator.state_dict().items():
                    tensors[f"D.{k}.{name}"] = t.cpu()
        for k, real in enumerate(self.reals):
            tensors[f"real.{k}"] = real.cpu()
        return tensors

    def metadata(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "config": self.config.to_dict(),
            "scale_factor": self.scale_factor,
            "stages": [
                {
                    "shape": list(s.shape),
                    "noise_amp": s.noise_amp,
                    "channels": s.generator.head[0].out_channels,
                    "pad_value": float(s.generator.pad_value),
                    "has_discriminator": s.discriminator is not None,
                }
                for s in self.stages
            ],
            "num_images": self.num_images,
            "meta": self.meta,
            "report": self.report,  # also in report.json for people; this copy is the one loaded
        }

    def save(self, url: str) -> None:
        """Save to the folder `url`: model.pt (tensors only), model.json, report.json. Atomic per file."""
        buf = io.BytesIO()
        torch.save(self.state_tensors(), buf)
        base = url.rstrip("/")
        with atomic_write(f"{base}/model.pt") as f:
            f.write(buf.getvalue())
        with atomic_write(f"{base}/report.json", "w") as f:
            json.dump(self.report, f, indent=2)
        # model.json last: its presence means the other two are complete.
        with atomic_write(f"{base}/model.json", "w") as f:
            json.dump(self.metadata(), f, indent=2)

    @classmethod
    def load(cls, url: str, device: str | torch.device | None = None) -> SinGAN:
        """Load a model saved by `save` (weights only: no code is unpickled)."""
        base = url.rstrip("/")
        try:
            with fsspec.open(f"{base}/model.json", "r") as f:
                meta = json.load(f)
            with fsspec.open(f"{base}/model.pt", "rb") as f:
                tensors = torch.load(io.BytesIO(f.read()), map_location="cpu", weights_only=True)
        except FileNotFoundError:
            raise FileNotFoundError(f"{url}: no SinGAN model here (model.json / model.pt missing)") from None
        except pickle.UnpicklingError:
            raise ModelFileError(f"{url}: model.pt holds more than tensors and was refused by the weights-only "
                                 "loader (nothing in it was run)") from None
        except (json.JSONDecodeError, UnicodeDecodeError, RuntimeError, EOFError) as e:
            raise ModelFileError(f"{url}: model files are corrupt ({' '.join(str(e).split())[:200]})") from None
        version = meta.get("format_version") if isinstance(meta, dict) else None
        if version != FORMAT_VERSION:
            raise ModelFileError(f"{url}: model format version {version} is not supported (expected {FORMAT_VERSION})")
        try:
            model = cls._from_files(meta, tensors)
        except (KeyError, TypeError, RuntimeError) as e:  # a field or tensor missing, or of the wrong shape
            raise ModelFileError(f"{url}: model files are corrupt ({type(e).__name__}: "
                                 f"{' '.join(str(e).split())[:200]})") from None
        return model.to(resolve_device(device))

    @classmethod
    def _from_files(cls, meta: dict[str, Any], tensors: dict[str, torch.Tensor]) -> SinGAN:
        config = Config.from_dict(meta["config"])
        stages = []
        for k, info in enumerate(meta["stages"]):
            g = Generator(info["channels"], config.num_layer, config.ker_size, config.padding, info["pad_value"])
            g.load_state_dict(_sub(tensors, f"G.{k}."))
            d = None
            if info.get("has_discriminator"):
                d = Discriminator(info["channels"], config.num_layer, config.ker_size, dilation=config.d_dilation_at(k))
                d.load_state_dict(_sub(tensors, f"D.{k}."))
            stages.append(Stage(g, float(info["noise_amp"]), tuple(info["shape"]), d))
        reals = [tensors[f"real.{k}"] for k in range(len(stages))]
        report = meta.get("report", {})  # model.json is written last, so this matches the stages loaded
        return cls(config, stages, tensors["z_star"], reals, float(meta["scale_factor"]), report, meta.get("meta"))


def _sub(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}


def as_images(image: torch.Tensor | str | Sequence[torch.Tensor | str]) -> list[torch.Tensor]:
    """Normalise the `image` argument of training to a list of [1, 3, H, W] tensors."""
    items = [image] if isinstance(image, (str, torch.Tensor)) else list(image)
    if not items:
        raise ValueError("no image given")
    out = []
    for item in items:
        x = load_image(item) if isinstance(item, str) else item
        if x.dim() == 3:
            x = x.unsqueeze(0)
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a [1, 3, H, W] image tensor, got shape {tuple(x.shape)}")
        out.extend(x.split(1))
    return out
