"""Throughput of the dataset job on Ray against a plain sequential loop over the same images.

    python benchmarks/pipeline_scale.py [--images 6] [--niter 30] [--samples 8] [--cpus 1 2] [--repeat 1]
                                        [--ray-niceness 0] [--out DIR]

The images are crops of the bundled example photos (distinct content, so none is skipped as a
duplicate). Every mode does the same work per image: train the quick preset (with --niter
iterations per scale), draw --samples samples, write them as PNG and compute the --metrics.

- sequential: one process, torch threads = 1, a for loop over the images;
- ray N:      pipeline.run.run_dataset on a fresh local Ray with N CPUs (1 CPU and 1 thread per
              task), which also writes the Parquet tables, the plots and the MLflow runs.

Per mode: wall seconds and images per hour; CPU seconds of this process and all its descendants
(Ray's raylet, GCS and workers included), which is what the work costs whatever else runs on the
machine; CPU/wall (the parallelism achieved); the mean load average (other work on the machine
slows every mode's wall time, hence --repeat: the modes are interleaved and the best of each
counts; CPU seconds by process). Then the pipeline's overhead (ray 1 against the loop; target under
10 %) and the speed-up of N CPUs over 1. Ray's own start is timed apart. Ray's workers run at
niceness 0 like the loop (--ray-niceness; Ray's default of 15 lets any other process on a shared
machine take their CPU first, which would be charged to Ray here). Everything also goes to
<out>/pipeline_scale.json.
Linux only (CPU seconds are read from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipeline.examples import example_paths
from singan_core import train
from singan_core.config import Config, preset
from singan_core.images import atomic_write, load_image, save_image


# ---------------------------------------------------------------------------- the images
def make_images(folder: Path, count: int, seed: int = 0) -> list[str]:
    """`count` PNG crops (60-90 % of the side, random place) of the example photos, cycling over them."""
    folder.mkdir(parents=True, exist_ok=True)
    photos = [Image.open(p).convert("RGB") for p in example_paths()]
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        photo = photos[i % len(photos)]
        fraction = rng.uniform(0.6, 0.9)
        w, h = round(photo.width * fraction), round(photo.height * fraction)
        left, top = int(rng.integers(0, photo.width - w + 1)), int(rng.integers(0, photo.height - h + 1))
        path = folder / f"img_{i:02d}.png"
        photo.crop((left, top, left + w, top + h)).save(path)
        paths.append(str(path))
    return paths


# ---------------------------------------------------------------------------- measuring
_TICK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _proc_table() -> dict[int, tuple[int, float]]:
    """pid -> (parent pid, user + system CPU seconds) of every process (Linux /proc)."""
    table = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
        except OSError:
            continue  # ended meanwhile
        fields = stat[stat.rfind(")") + 2:].split()
        table[int(entry)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / _TICK)
    return table


def _descendants(table: dict[int, tuple[int, float]], root: int) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in table.items():
        children.setdefault(ppid, []).append(pid)
    found, todo = {root}, [root]
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in found:
                found.add(child)
                todo.append(child)
    return found


_PROGRAMS = {"raylet": "raylet", "gcs_server": "gcs"}  # by the program's file name
_KINDS = (("default_worker.py", "ray workers"), ("ray::", "ray workers"), ("dashboard", "dashboard"),
          ("log_monitor", "log monitor"), ("runtime_env", "runtime env agent"))  # by a word of the command line


def _kind(pid: int) -> str:
    """What a process of the tree is: this driver, a Ray worker, the raylet, the GCS, ..."""
    if pid == os.getpid():
        return "driver (this process)"
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return "other"
    program = os.path.basename(argv[0].split()[0]) if argv[0] else ""
    if program in _PROGRAMS:
        return _PROGRAMS[program]
    cmdline = " ".join(argv)
    return next((kind for key, kind in _KINDS if key in cmdline), "other")


class Monitor:
    """While a mode runs: CPU seconds used by this process and all its descendants (Ray's raylet,
    GCS and workers included; a process's last half second before it ends may be missed) and the
    machine's mean 1-minute load average. CPU seconds are what the work costs whatever else runs on
    the machine; wall seconds depend on that other load."""

    def __init__(self, every: float = 0.5) -> None:
        self.every = every
        self.baseline = self._tree_cpu()
        self.latest = dict(self.baseline)
        self.kinds = {pid: _kind(pid) for pid in self.baseline}
        self.loads = [os.getloadavg()[0]]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _tree_cpu() -> dict[int, float]:
        table = _proc_table()
        return {pid: table[pid][1] for pid in _descendants(table, os.getpid()) if pid in table}

    def _sample(self) -> None:
        current = self._tree_cpu()
        for pid in current.keys() - self.kinds.keys():
            self.kinds[pid] = _kind(pid)
        self.latest.update(current)

    def _run(self) -> None:
        while not self.stop.wait(self.every):
            self._sample()
            self.loads.append(os.getloadavg()[0])

    def __enter__(self) -> Monitor:
        self.t0 = time.perf_counter()
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._sample()
        self.wall = time.perf_counter() - self.t0
        self.stop.set()
        self.thread.join()

    @property
    def cpu(self) -> float:
        return sum(v - self.baseline.get(pid, 0.0) for pid, v in self.latest.items())

    @property
    def cpu_by_kind(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for pid, value in self.latest.items():
            kind = self.kinds.get(pid, "other")
            out[kind] = round(out.get(kind, 0.0) + value - self.baseline.get(pid, 0.0), 2)
        return dict(sorted(out.items(), key=lambda item: -item[1]))

    @property
    def load(self) -> float:
        return sum(self.loads) / len(self.loads)


# ---------------------------------------------------------------------------- the modes
def sequential(images: list[str], cfg: Config, samples: int, metrics: tuple[str, ...], out: Path) -> dict:
    """The plain loop: train, sample, save, evaluate, one image after the other."""
    from singan_core.metrics import evaluate

    torch.set_num_threads(1)
    with Monitor() as m:
        for i, url in enumerate(images):
            model = train(url, cfg, out=str(out / f"model_{i}"), progress=False)
            drawn = model.sample(samples, seed=cfg.seed, batch_size=samples)
            for k, x in enumerate(drawn):
                save_image(x, str(out / f"samples_{i}" / f"sample_{k:04d}.png"))
            if metrics:
                evaluate(model.reals[-1][:1], drawn, metrics, device="cpu", seed=cfg.seed, strict=False)
    return {"wall": m.wall, "cpu": m.cpu, "load": m.load, "cpu_by_process": m.cpu_by_kind}


def on_ray(folder: str, cfg: Config, samples: int, metrics: tuple[str, ...], out: Path, cpus: int) -> dict:
    """run_dataset on a fresh local Ray with `cpus` CPUs; Ray's start is timed apart from the job."""
    import logging

    import ray

    from pipeline.run import run_dataset

    t0 = time.perf_counter()
    ray.init(address="local", num_cpus=cpus, include_dashboard=False, logging_level=logging.WARNING)
    start = time.perf_counter() - t0
    try:
        with Monitor() as m:
            summary = run_dataset(folder, str(out), cfg, samples=samples, metrics=metrics, gpus_per_task=0,
                                  num_cpus_per_task=1, progress=False)
    finally:
        ray.shutdown()
    if summary.failed:
        errors = summary.runs["error"].dropna().tolist()
        raise RuntimeError(f"{summary.failed} image(s) failed on Ray with {cpus} CPUs: {errors}")
    return {"wall": m.wall, "cpu": m.cpu, "load": m.load, "cpu_by_process": m.cpu_by_kind, "ray_start": start,
            "train_seconds_in_tasks": float(summary.runs["total_seconds"].sum())}


# ---------------------------------------------------------------------------- the report
def per_hour(count: int, seconds: float) -> float:
    return 3600.0 * count / seconds


def best(runs: list[dict], key: str) -> float:
    """The least of the repeats: the run least disturbed by other work on the machine."""
    return min(r[key] for r in runs)


def report(results: dict) -> str:
    n, modes = results["images"], results["modes"]
    seq_wall, seq_cpu = best(modes["sequential"], "wall"), best(modes["sequential"], "cpu")
    lines = [f"{n} images, quick preset with niter={results['niter']}, {results['samples']} samples each, metrics: "
             f"{','.join(results['metrics']) or 'none'}; best of {results['repeat']} interleaved repeat(s)", "",
             f"{'mode':<12}{'wall s':>8}{'images/h':>10}{'vs loop':>9}{'CPU s':>8}{'CPU vs loop':>12}"
             f"{'CPU/wall':>9}{'load':>7}"]
    for name, runs in modes.items():
        wall, cpu = best(runs, "wall"), best(runs, "cpu")
        vs = "" if name == "sequential" else f"{100 * (wall - seq_wall) / seq_wall:+.1f}%"
        cpu_vs = "" if name == "sequential" else f"{100 * (cpu - seq_cpu) / seq_cpu:+.1f}%"
        load = sum(r["load"] for r in runs) / len(runs)
        lines.append(f"{name:<12}{wall:8.1f}{per_hour(n, wall):10.1f}{vs:>9}{cpu:8.1f}{cpu_vs:>12}"
                     f"{cpu / wall:9.2f}{load:7.1f}")
    lines.append("")
    if "ray 1" in modes:
        one = modes["ray 1"]
        wall_pct = 100 * (best(one, "wall") - seq_wall) / seq_wall
        cpu_pct = 100 * (best(one, "cpu") - seq_cpu) / seq_cpu
        lines.append(f"pipeline overhead (ray 1 vs loop): wall {wall_pct:+.1f} %, CPU {cpu_pct:+.1f} %; "
                     f"Ray's start {best(one, 'ray_start'):.1f} s more")
        for name, runs in modes.items():
            if name.startswith("ray ") and name != "ray 1":
                lines.append(f"speed-up of {name} over ray 1: x{best(one, 'wall') / best(runs, 'wall'):.2f} (wall)")
    for name, runs in modes.items():
        fastest = min(runs, key=lambda r: r["wall"])
        parts = ", ".join(f"{kind} {sec:.1f}" for kind, sec in fastest["cpu_by_process"].items() if sec >= 0.05)
        lines.append(f"CPU seconds of {name} by process: {parts}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=6, help="Number of images.")
    parser.add_argument("--niter", type=int, default=30, help="Iterations per scale (the quick preset has 150).")
    parser.add_argument("--samples", type=int, default=8, help="Samples per image.")
    parser.add_argument("--metrics", default="swd", help="Comma list of metrics computed in every mode ('' none).")
    parser.add_argument("--cpus", type=int, nargs="+", default=[1, 2], help="CPU counts given to Ray.")
    parser.add_argument("--repeat", type=int, default=1, help="Repeats of every mode, interleaved; the best counts.")
    parser.add_argument("--ray-niceness", type=int, default=0,
                        help="Niceness of Ray's workers (Ray's own default, 15, makes them yield the CPU to any "
                             "other process, which on a shared machine charges other people's work to Ray).")
    parser.add_argument("--out", default=None, help="Work folder (default: a temporary one, removed at the end).")
    args = parser.parse_args()
    if min(args.images, args.niter, args.repeat, *args.cpus) < 1 or args.samples < 2:
        parser.error("--images, --niter, --cpus and --repeat must be at least 1 and --samples at least 2")
    os.environ.setdefault("RAY_AUTH_MODE", "disabled")  # a private local Ray; no token needed
    os.environ["RAY_worker_niceness"] = str(args.ray_niceness)  # read by the raylet that ray.init starts

    work = Path(args.out) if args.out else Path(tempfile.mkdtemp(prefix="pipeline-scale-"))
    metrics = tuple(m for m in args.metrics.split(",") if m.strip())
    cfg = preset("quick").replace(niter=args.niter)
    try:
        images = make_images(work / "images", args.images)
        load_image(images[0])  # fail early on a broken image
        modes: dict[str, list[dict]] = {"sequential": [], **{f"ray {c}": [] for c in args.cpus}}
        for k in range(args.repeat):  # fresh output folders: nothing is skipped as already done
            modes["sequential"].append(sequential(images, cfg, args.samples, metrics, work / f"seq_{k}"))
            print(f"[{k}] sequential: {modes['sequential'][-1]}", flush=True)
            for cpus in args.cpus:
                r = on_ray(str(work / "images"), cfg, args.samples, metrics, work / f"ray{cpus}_{k}", cpus)
                modes[f"ray {cpus}"].append(r)
                print(f"[{k}] ray {cpus}: {r}", flush=True)
        results = {"images": args.images, "niter": args.niter, "samples": args.samples, "metrics": metrics,
                   "repeat": args.repeat, "ray_niceness": args.ray_niceness, "config": cfg.to_dict(),
                   "modes": modes}
        print()
        print(report(results))
        with atomic_write(str(work / "pipeline_scale.json"), "w") as f:
            json.dump(results, f, indent=2)
        print(f"\nresults: {work / 'pipeline_scale.json'}")
    finally:
        if not args.out:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
