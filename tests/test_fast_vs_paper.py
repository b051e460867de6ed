"""benchmarks/fast_vs_paper.py at toy settings: trains both presets, writes the figures, reuses them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from singan_core import preset

from .conftest import synthetic_image, write_png

ROOT = Path(__file__).resolve().parent.parent
SCRIPT = ROOT / "benchmarks" / "fast_vs_paper.py"
TOY = ["--max-size", "24", "--set", "min_size=16", "--set", "niter=2", "--set", "nfc=8", "--set", "nfc_max=8",
       "--samples", "4", "--jobs", "1"]


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, env=env)


def test_fast_vs_paper_trains_both_presets_once_and_writes_the_figures(tmp_path):
    image = write_png(tmp_path / "toy.png", synthetic_image(24, 30, seed=1))
    out, cache = tmp_path / "out", tmp_path / "cache"
    res = _run(image, *TOY, "--cache", str(cache), "--out", str(out))
    assert res.returncode == 0, res.stderr
    assert "training 2, 1 at a time" in res.stdout and "| toy (" in res.stdout and "overall (1 images)" in res.stdout
    table = pd.read_csv(out / "fast_vs_paper.csv")
    assert list(table["preset"]) == ["paper", "fast"]
    assert table["config_hash"].nunique() == 2 and (table["wall_s"] > 0).all() and (table["swd"] > 0).all()
    assert (out / "toy.png").is_file()
    runs = sorted((out / "runs").iterdir())
    assert len(runs) == 2 and all((r / "figures.json").is_file() and (r / "sample_3.png").is_file() for r in runs)
    figures = {f["preset"]: f for f in (json.loads((r / "figures.json").read_text()) for r in runs)}
    fast = figures["fast"]
    assert fast["config"]["gp_every"] == preset("fast").gp_every and len(fast["gp_evaluations"]) == fast["scales"]
    # each run records the processor its wall time was taken on; both here: no caution
    assert fast["machine"] and fast["machine"] == figures["paper"]["machine"]
    assert "caution" not in res.stdout
    # the committed figures are enough: no models, no training
    again = _run(image, *TOY, "--cache", str(tmp_path / "empty"), "--out", str(out))
    assert again.returncode == 0, again.stderr
    assert "2 of 2 trainings already done" in again.stdout and "training 0" in again.stdout
    assert not (tmp_path / "empty").exists()
    # paper's cached figures from another machine: the speed ratio compares machines, and the output says so
    paper_run = next(r for r in runs if json.loads((r / "figures.json").read_text())["preset"] == "paper")
    moved = {**json.loads((paper_run / "figures.json").read_text()), "machine": "Another CPU"}
    (paper_run / "figures.json").write_text(json.dumps(moved))
    elsewhere = _run(image, *TOY, "--cache", str(tmp_path / "empty"), "--out", str(out))
    assert elsewhere.returncode == 0, elsewhere.stderr
    caution = f"not all taken on one processor (paper: Another CPU; fast: {fast['machine']})"
    assert caution in elsewhere.stdout
    # a variant of fast (a lever left out) trains once more and is compared with the same paper run
    third = _run(image, *TOY, "--variant", "nogp=gp_every=1", "--cache", str(cache), "--out", str(out))
    assert third.returncode == 0, third.stderr
    assert "2 of 3 trainings already done" in third.stdout and "nogp = fast with gp_every=1" in third.stdout
    assert "nogp overall (1 images)" in third.stdout
    assert list(pd.read_csv(out / "fast_vs_paper.csv")["preset"]) == ["paper", "fast", "nogp"]
    # --no-paper (S = 250, where paper takes a day): fast alone, nothing trained for paper
    alone = _run(image, *TOY, "--no-paper", "--cache", str(cache), "--out", str(tmp_path / "alone"))
    assert alone.returncode == 0, alone.stderr
    assert "1 of 1 trainings already done" in alone.stdout and "fast alone (no paper run)" in alone.stdout
    assert "| toy (" in alone.stdout and "against paper" not in alone.stdout
    assert list(pd.read_csv(tmp_path / "alone" / "fast_vs_paper.csv")["preset"]) == ["fast"]


def test_fast_vs_paper_refuses_bad_input_and_writes_nothing(tmp_path):
    out = tmp_path / "out"
    res = _run(str(tmp_path / "missing.png"), "--max-size", "24", "--out", str(out), "--cache", str(tmp_path / "c"))
    assert res.returncode == 1 and res.stderr.startswith("error: ")
    image = write_png(tmp_path / "toy.png", synthetic_image(24, 30, seed=1))
    res = _run(image, "--max-size", "24", "--set", "nosuch=1", "--out", str(out))
    assert res.returncode == 1 and res.stderr.startswith("error: unknown config field")
    res = _run(image, "--max-size", "32", "--variant", "paper=niter=3", "--out", str(out))
    assert res.returncode == 1 and res.stderr.startswith("error: --variant")
    assert not out.exists()
