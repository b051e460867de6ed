"""The `singan` command line: train, sample, reconstruct (and the commands of the other modules)."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from pipeline.cli_common import fail, friendly_errors, resolve_config, set_threads
from pipeline.options import Device, Overrides, Preset, Quiet, ScaleH, ScaleV, Threads, TrainSeed
from singan_core.images import save_image

__all__ = ["app", "fail", "friendly_errors", "main", "resolve_config", "set_threads"]

app = typer.Typer(
    help="SinGAN: train a generative model on a single image, sample it, and run its applications.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

@app.command()
@friendly_errors
def train(
    images: Annotated[list[str], typer.Argument(help="Image path or fsspec URL; two or more train one DoubleGAN.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Output folder (local or fsspec URL) for the model.")],
    preset_name: Preset = "paper",
    overrides: Overrides = None,
    device: Device = "auto",
    seed: TrainSeed = None,
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Train a SinGAN pyramid, coarse to fine. Saves after every scale; re-running resumes."""
    import singan_core

    set_threads(threads)
    cfg = resolve_config(preset_name, overrides, seed)
    model = singan_core.train(images if len(images) > 1 else images[0], cfg, out=out, device=device, progress=not quiet)
    rep = model.report
    typer.echo(
        f"trained {rep['num_scales']} scales ({rep['total_iterations']} iterations) in "
        f"{rep['total_seconds']:.1f} s on {rep['device']}: model in {out}"
    )


@app.command("train-pack")
@friendly_errors
def train_pack(
    images: Annotated[list[str], typer.Argument(help="Images of one training shape (one size after max_size).")],
    out_dir: Annotated[str, typer.Option("--out-dir", help="Folder for the models: one folder per image, "
                                         "named after the image's file name without extension.")],
    preset_name: Preset = "paper",
    overrides: Overrides = None,
    device: Device = "auto",
    seed: TrainSeed = None,
    threads: Threads = 0,
    quiet: Quiet = False,
) -> None:
    """Train one pyramid per image, all at once as one pack: each model is the one `singan train` gives
    the image alone. Saves every model after every scale; re-running resumes."""
    from pathlib import PurePosixPath

    from singan_core.train import train_pack as train_images

    names = [PurePosixPath(image.rstrip("/")).stem for image in images]
    if len(set(names)) < len(names):
        raise fail(f"two images share a file name ({', '.join(sorted({n for n in names if names.count(n) > 1}))}): "
                   "their model folders would collide")
    set_threads(threads)
    cfg = resolve_config(preset_name, overrides, seed)
    outs = [f"{out_dir.rstrip('/')}/{name}" for name in names]
    models = train_images(images, cfg, outs=outs, device=device, progress=not quiet)
    for out, model in zip(outs, models, strict=True):
        rep = model.report
        typer.echo(f"trained {rep['num_scales']} scales in a pack of {rep['pack_size']} "
                   f"({rep['total_seconds']:.1f} s per image on {rep['device']}): model in {out}")


@app.command()
@friendly_errors
def sample(
    model_dir: Annotated[str, typer.Argument(help="Folder of a trained model.")],
    out: Annotated[str, typer.Option("--out", "-o", help="Folder for the PNG samples.")],
    n: Annotated[int, typer.Option("--n", help="Number of samples.")] = 50,
    scale_h: ScaleH = 1.0,
    scale_v: ScaleV = 1.0,
    gen_start_scale: Annotated[
        int, typer.Option(help="Stages below this one reuse the reconstruction noise (keep the coarse layout).")
    ] = 0,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
    batch_size: Annotated[int, typer.Option(help="Samples generated per forward pass.")] = 16,
    device: Device = "auto",
    threads: Threads = 0,
) -> None:
    """Write N random samples of any size and aspect as PNG files."""
    from singan_core.singan import SinGAN

    set_threads(threads)
    if n < 1:
        raise ValueError("--n must be at least 1")
    model = SinGAN.load(model_dir, device=None if device == "auto" else device)
    samples = model.sample(n, scale_h=scale_h, scale_v=scale_v, gen_start_scale=gen_start_scale, seed=seed,
                           batch_size=batch_size)
    base = out.rstrip("/")
    for i, x in enumerate(samples):
        save_image(x, f"{base}/sample_{i:04d}.png")
    typer.echo(f"wrote {n} samples of {samples.shape[-1]}x{samples.shape[-2]} to {out}")


@app.command()
@friendly_errors
def reconstruct(
    model_dir: Annotated[str, typer.Argument(help="Folder of a trained model.")],
    out: Annotated[str, typer.Option("--out", "-o", help="PNG file to write.")],
    image_index: Annotated[int, typer.Option(help="Which training image (multi-image models).")] = 0,
    device: Device = "auto",
) -> None:
    """Write the reconstruction x~rec_0 (the pyramid run on {z*, 0, ..., 0})."""
    from singan_core.singan import SinGAN

    model = SinGAN.load(model_dir, device=None if device == "auto" else device)
    if not 0 <= image_index < model.num_images:
        raise ValueError(f"--image-index must be in 0..{model.num_images - 1}")
    save_image(model.reconstruct(image_index), out)
    typer.echo(f"wrote {out}")


@app.command()
@friendly_errors
def examples(
    out: Annotated[str, typer.Argument(help="Folder to write the bundled example photos to.")],
) -> None:
    """Write the bundled example photos (public-domain photos shipped with scikit-image)."""
    from pipeline.examples import write_examples

    paths = write_examples(out)
    typer.echo(f"wrote {len(paths)} example photos to {out}")


def _register_modules() -> None:
    from pipeline import cli_apps, cli_eval

    cli_eval.register(app)
    cli_apps.register(app)


_register_modules()


def main() -> None:
    app(prog_name="singan")


if __name__ == "__main__":
    sys.exit(main())
