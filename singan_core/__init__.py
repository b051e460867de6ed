"""SinGAN in plain PyTorch: config, images, pyramid, model, training, sampling, applications, metrics.

    from singan_core import SinGAN, preset, train
    model = train("photo.png", preset("quick"))      # a SinGAN: the trained pyramid
    samples = model.sample(8, scale_h=1.5, seed=0)   # [8, 3, H, 1.5 W] in [-1, 1]
    model = SinGAN.load("models/photo")              # one saved by train(..., out="models/photo")
    models = train_pack(["a.png", "b.png"], preset("quick"), outs=["models/a", "models/b"])  # K at once
"""

from .config import PRESETS, Config, preset
from .images import ImageError, load_image, save_image
from .singan import SinGAN
from .train import train, train_pack

__all__ = ["PRESETS", "Config", "ImageError", "SinGAN", "load_image", "preset", "save_image", "train", "train_pack"]
__version__ = "0.1.0"
