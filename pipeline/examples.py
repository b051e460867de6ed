"""The bundled example photos: public-domain photographs that scikit-image ships in its wheel."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec

# name in skimage's data folder -> file name written
EXAMPLES = {
    "coffee.png": "coffee.png",  # a cup of coffee (Rachel Michetti, CC0)
    "chelsea.png": "chelsea.png",  # Chelsea the cat (Stefan van der Walt, CC0)
    "rocket.jpg": "rocket.jpg",  # a rocket launch (SpaceX, public domain)
}


def example_paths() -> list[Path]:
    import skimage

    folder = Path(skimage.__file__).parent / "data"
    return [folder / name for name in EXAMPLES]


def write_examples(out: str, names: list[str] | None = None) -> list[str]:
    """Copy the example photos to `out` (local path or fsspec URL); return the written URLs."""
    written = []
    fs, base = fsspec.core.url_to_fs(out)
    fs.makedirs(base, exist_ok=True)
    for src in example_paths():
        if names and src.name not in names:
            continue
        dst = f"{out.rstrip('/')}/{EXAMPLES[src.name]}"
        if not fs.exists(os.path.join(base, EXAMPLES[src.name])):
            with fsspec.open(dst, "wb") as f:
                f.write(src.read_bytes())
        written.append(dst)
    return written
