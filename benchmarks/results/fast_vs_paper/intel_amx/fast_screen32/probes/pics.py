"""The thirty-second screening's probe: 4 samples of each model (the same draws), as labelled rows at 3x size, or
with CROP the bottom CROP fraction of each (balloons' tent) at 5x. Run from the repository root:

    [CROP=0.3] [SEED=0] python PATH/TO/pics.py OUT.png LABEL=MODEL_DIR ...
"""

import os
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from reference_parity import write_grid  # noqa: E402

from singan_core.singan import SinGAN  # noqa: E402

if len(sys.argv) < 3 or not all("=" in a for a in sys.argv[2:]):
    sys.exit("usage: [CROP=0.3] [SEED=0] python pics.py OUT.png LABEL=MODEL_DIR ...")
torch.set_num_threads(1)
CROP = float(os.environ.get("CROP", "0"))
SEED = int(os.environ.get("SEED", "0"))
grid = []
for item in sys.argv[2:]:
    label, _, path = item.partition("=")
    model = SinGAN.load(path, "cpu")
    x = model.generate(4, generator=torch.Generator().manual_seed(SEED)).clamp(-1, 1)
    if CROP:  # the bottom CROP fraction of each sample (balloons' tent), at 5x
        x = x[..., int(x.shape[-2] * (1 - CROP)):, :]
    grid.append((label, list(F.interpolate(x, scale_factor=5 if CROP else 3, mode="nearest"))))
write_grid(Path(sys.argv[1]), grid)
