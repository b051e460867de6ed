"""The SinGAN applications, one module each; every one works on any model the engine trained.

    from singan_core import SinGAN
    from singan_core.applications import harmonize
    model = SinGAN.load("runs/starry_night")
    out = harmonize(model, "composite.png", "mask.png", start_scale=3)   # [1, 3, H, W] in [-1, 1]
"""

from .animate import animate, mp4_writer_available, noise_walk, write_gif, write_mp4
from .harmonize import blend_mask, edit, harmonize, inject_and_blend, read_mask
from .highres import (
    PARTS,
    full_image,
    highres_config,
    highres_rule,
    mosaic,
    part_image,
    quadrants,
    remove_seams,
    seam_strength,
    stitch,
    train_part,
)
from .paint2image import colour_centres, finetune_on_quantized, map_to_colours, paint_to_image
from .sr import sr_config, sr_steps, super_resolve, train_for_sr

__all__ = [
    "PARTS",
    "animate",
    "blend_mask",
    "colour_centres",
    "edit",
    "finetune_on_quantized",
    "full_image",
    "harmonize",
    "highres_config",
    "highres_rule",
    "inject_and_blend",
    "map_to_colours",
    "mosaic",
    "mp4_writer_available",
    "noise_walk",
    "paint_to_image",
    "part_image",
    "quadrants",
    "read_mask",
    "remove_seams",
    "seam_strength",
    "sr_config",
    "sr_steps",
    "stitch",
    "super_resolve",
    "train_for_sr",
    "train_part",
    "write_gif",
    "write_mp4",
]
