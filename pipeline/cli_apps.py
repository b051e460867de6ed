"""The application commands of `singan`: sr, paint2image, harmonize, edit, animate, highres.

    singan sr photo_lr.png --factor 4 --out photo_x4.png
    singan paint2image runs/cows paint.png --start-scale 2 --out cows_paint.png [--quantize]
    singan harmonize runs/starry composite.png mask.png --start-scale 3 --out harmonized.png
    singan edit runs/stone edited.png mask.png --start-scale 2 --out edited.png
    singan animate runs/lightning --out lightning.gif --frames 100 --fps 10 --alpha 0.1 --beta 0.95
    singan highres photo.png --out runs/photo_highres

Every output is validated before anything is written and written atomically. This module is loaded by
`pipeline.cli` (import that, not this, first).
"""

from __future__ import annotations

import tempfile
from typing import Annotated

import typer

from pipeline.cli_common import friendly_errors, resolve_config, set_threads
from pipeline.options import Device, Overrides, Preset, Quiet, Seed, Threads, TrainSeed
from singan_core.config import preset
from singan_core.images import load_image, save_image

ModelArg = Annotated[str, typer.Argument(help="Folder of a trained model.")]
OutPng = Annotated[str, typer.Option("--out", "-o", help="PNG file to write.")]
StartScale = Annotated[
    int, typer.Option("--start-scale", "-k", help="Stage to inject at, 1..N (0 is the coarsest, N the finest).")
]
SeedOpt = Annotated[int, typer.Option(help="Random seed of the noise maps.")]


def register(app: typer.Typer) -> None:
    """Add this module's commands to the `singan` CLI."""
    app.command("sr")(sr_command)
    app.command("paint2image")(paint2image_command)
    app.command("harmonize")(harmonize_command)
    app.command("edit")(edit_command)
    app.command("animate")(animate_command)
    app.command("highres")(highres_command)


def _load_model(model_dir: str, device: str):
    from singan_core.singan import SinGAN

    return SinGAN.load(model_dir, device=None if device == "auto" else device)


def _size(x) -> str:
    return f"{x.shape[-1]}x{x.shape[-2]}"


# ---------------------------------------------------------------------------- super-resolution
@friendly_errors
def sr_command(
    image: Annotated[str, typer.Argument(help="Low-resolution image (path or fsspec URL).")],
    out: OutPng,
    factor: Annotated[float, typer.Option(help="Upsampling factor (at least 1); output = factor x input size.")] = 4.0,
    model_dir: Annotated[
        str | None, typer.Option(help="Folder to keep (and resume) the SR model in (default: a temporary one).")
    ] = None,
    preset_name: Preset = "paper",
    overrides: Overrides = None,
    seed: TrainSeed = None,
    device: Device = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Super-resolve an image: train on it (SR pyramid, steps of ~2^(1/3)), then apply G_0 step by step."""
    from singan_core import train
    from singan_core.applications.sr import sr_config, sr_steps, super_resolve

    set_threads(threads)
    steps, step = sr_steps(factor)
    x = load_image(image)
    cfg = sr_config(preset(preset_name), factor, tuple(x.shape[-2:])).override(overrides or [])  # --set wins
    cfg = cfg.replace(seed=seed) if seed is not None else cfg
    with tempfile.TemporaryDirectory(prefix="singan-sr-") as tmp:
        model = train(x, cfg, out=model_dir or tmp, device=device, progress=not quiet)
        y = super_resolve(model, factor, x)
    save_image(y, out)
    typer.echo(f"wrote {out}: {_size(y)} from {_size(x)} ({steps} steps of x{step:.3f})")


# ---------------------------------------------------------------------------- paint-to-image
@friendly_errors
def paint2image_command(
    model_dir: ModelArg,
    paint: Annotated[str, typer.Argument(help="The clipart / painting (any size; resized to the training size).")],
    start_scale: StartScale,
    out: OutPng,
    quantize: Annotated[
        bool, typer.Option(help="Map the paint to 5 k-means colours of the image at the start scale and fine-tune it.")
    ] = False,
    finetune_iters: Annotated[int, typer.Option(help="Fine-tuning iterations of G_K (with --quantize).")] = 500,
    seed: SeedOpt = 0,
    image_index: Annotated[int, typer.Option(help="Which training image (multi-image models).")] = 0,
    device: Device = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Turn a painting into an image: inject it at the start scale and run the finer generators."""
    from singan_core.applications.paint2image import paint_to_image

    set_threads(threads)
    model = _load_model(model_dir, device)
    y = paint_to_image(model, load_image(paint), start_scale, quantize=quantize, finetune_iterations=finetune_iters,
                       seed=seed, image_index=image_index, progress=not quiet)
    save_image(y[0], out)
    typer.echo(f"wrote {out} ({_size(y)})")


# ---------------------------------------------------------------------------- harmonization and editing
def _inject_and_blend(model_dir, image, mask, start_scale, out, dilation, blur, seed, device, threads) -> None:
    from singan_core.applications.harmonize import inject_and_blend

    set_threads(threads)
    model = _load_model(model_dir, device)
    y = inject_and_blend(model, load_image(image), load_image(mask), start_scale, dilation=dilation, blur=blur,
                         seed=seed)
    save_image(y[0], out)
    typer.echo(f"wrote {out} ({_size(y)})")


MaskArg = Annotated[str, typer.Argument(help="Black-and-white mask, white where the image was changed; same size.")]
BlurOpt = Annotated[float, typer.Option(help="Gaussian sigma of the blend mask, in pixels.")]


@friendly_errors
def harmonize_command(
    model_dir: ModelArg,
    composite: Annotated[str, typer.Argument(help="Naive composite: an object pasted on the training image.")],
    mask: MaskArg,
    start_scale: StartScale,
    out: OutPng,
    dilation: Annotated[int, typer.Option(help="Radius of the disk the mask is dilated with, in pixels.")] = 7,
    blur: BlurOpt = 5.0,
    seed: SeedOpt = 0,
    device: Device = "auto",
    threads: Threads = 0,
) -> None:
    """Harmonize a pasted object with the training image; pixels outside the dilated mask are kept."""
    _inject_and_blend(model_dir, composite, mask, start_scale, out, dilation, blur, seed, device, threads)


@friendly_errors
def edit_command(
    model_dir: ModelArg,
    edited: Annotated[str, typer.Argument(help="The training image with a region copied, moved or painted over.")],
    mask: MaskArg,
    start_scale: StartScale,
    out: OutPng,
    dilation: Annotated[int, typer.Option(help="Radius of the disk the mask is dilated with, in pixels.")] = 20,
    blur: BlurOpt = 5.0,
    seed: SeedOpt = 0,
    device: Device = "auto",
    threads: Threads = 0,
) -> None:
    """Make an edit seamless; pixels outside the dilated mask are kept."""
    _inject_and_blend(model_dir, edited, mask, start_scale, out, dilation, blur, seed, device, threads)


# ---------------------------------------------------------------------------- animation
def _mp4_path(gif: str) -> str:
    stem, dot, ext = gif.rpartition(".")
    return f"{stem}.mp4" if dot and "/" not in ext else f"{gif}.mp4"


@friendly_errors
def animate_command(
    model_dir: ModelArg,
    out: Annotated[str, typer.Option("--out", "-o", help="GIF file to write (an MP4 is written next to it).")],
    frames: Annotated[int, typer.Option(help="Number of frames.")] = 100,
    fps: Annotated[float, typer.Option(help="Frames per second.")] = 10.0,
    alpha: Annotated[float, typer.Option(help="Pull of the walk back to z* (0: free walk, 1: still).")] = 0.1,
    beta: Annotated[float, typer.Option(help="Momentum of the walk (higher: smoother motion).")] = 0.95,
    start_scale: Annotated[
        int | None, typer.Option("--start-scale", "-k", help="First stage whose noise walks (default: 2).")
    ] = None,
    seed: SeedOpt = 0,
    image_index: Annotated[int, typer.Option(help="Which training image (multi-image models).")] = 0,
    mp4: Annotated[bool, typer.Option(help="Also write an MP4 when imageio-ffmpeg or PyAV is installed.")] = True,
    device: Device = "auto",
    threads: Threads = 0,
) -> None:
    """Animate the training image by a random walk in noise space around z*; writes a GIF (and an MP4)."""
    from singan_core.applications.animate import animate, mp4_writer_available, write_gif, write_mp4

    set_threads(threads)
    if fps <= 0:
        raise ValueError(f"--fps must be positive, got {fps}")
    model = _load_model(model_dir, device)
    video = animate(model, frames, alpha=alpha, beta=beta, start_scale=start_scale, seed=seed, image_index=image_index)
    write_gif(video, out, fps)
    typer.echo(f"wrote {out}: {frames} frames of {_size(video)} at {fps:g} fps")
    if mp4:
        if mp4_writer_available() and write_mp4(video, _mp4_path(out), fps):
            typer.echo(f"wrote {_mp4_path(out)}")
        else:
            typer.echo("note: no MP4 writer installed (pip install imageio-ffmpeg); wrote the GIF only", err=True)


# ---------------------------------------------------------------------------- High-Res slicing
@friendly_errors
def highres_command(
    image: Annotated[str, typer.Argument(help="Image (path or fsspec URL); the output is up to 2 x max_size.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for the five models and the stitched PNGs.")],
    n: Annotated[int, typer.Option("--n", help="Number of stitched samples.")] = 1,
    inject_stage: Annotated[
        int | None, typer.Option(help="Stage of the base pyramid the mosaic is injected at (default: the middle).")
    ] = None,
    band: Annotated[int | None, typer.Option(help="Half-width of the seam band, px (default: 4% of the size).")] = None,
    preset_name: Preset = "paper",
    overrides: Overrides = None,
    seed: Seed = None,
    device: Device = "auto",
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """High-Res-SinGAN by slicing: four quadrant pyramids + a base pyramid, stitched. Re-running resumes."""
    from singan_core.applications.highres import (
        PARTS,
        full_image,
        highres_config,
        mosaic,
        part_image,
        remove_seams,
        seam_strength,
        train_part,
    )
    from singan_core.pyramid import pyramid_for

    set_threads(threads)
    if n < 1:
        raise ValueError("--n must be at least 1")
    cfg = resolve_config(preset_name, overrides, seed)
    full = full_image(load_image(image), cfg)
    for part in PARTS:  # fail now, not after hours of training, on an image too small for a part
        pyr = pyramid_for(*part_image(full, part).shape[-2:], highres_config(cfg, part))
        if part == "base" and inject_stage is not None and not 1 <= inject_stage < pyr.num_scales:
            raise ValueError(f"--inject-stage {inject_stage} is outside the base pyramid: choose 1..{pyr.N}")
    if band is not None and band < 1:
        raise ValueError("--band must be at least 1")
    base = out.rstrip("/")
    urls = {}
    for i, part in enumerate(PARTS):
        typer.echo(f"training {part} ({i + 1}/{len(PARTS)})", err=True)
        urls[part] = train_part(full, part, cfg, f"{base}/{part}", device=device, progress=not quiet)
    base_model = _load_model(urls["base"], device)
    raw = mosaic([urls[p] for p in PARTS[1:]], n, cfg.seed, device=base_model.device)
    stitched = remove_seams(base_model, raw, inject_stage, band, cfg.seed)
    for i in range(n):
        save_image(raw[i], f"{base}/mosaic_{i:04d}.png")
        save_image(stitched[i], f"{base}/highres_{i:04d}.png")
    typer.echo(
        f"wrote {n} stitched sample(s) of {_size(stitched)} to {out} (seam strength: mosaic "
        f"{seam_strength(raw):.2f}, stitched {seam_strength(stitched):.2f}; 1 = no visible seam)"
    )
