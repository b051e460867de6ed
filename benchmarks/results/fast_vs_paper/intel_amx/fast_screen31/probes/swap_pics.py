"""The thirty-first screening's probe: balloons' samples with the coarser stages of one model and the finer of the
other, 4 per pairing (benchmarks/swap_scales.py's `swapped`, the same draws), as labelled rows at 3x size.

    python swap_pics.py FAST_MODEL BALANCED_MODEL OUT.png CUT
"""

import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, "benchmarks")
from reference_parity import write_grid  # noqa: E402
from swap_scales import swapped  # noqa: E402

from singan_core.singan import SinGAN  # noqa: E402

torch.set_num_threads(1)
fast, balanced = SinGAN.load(sys.argv[1], "cpu"), SinGAN.load(sys.argv[2], "cpu")
cut = int(sys.argv[4])
grid = []
for label, coarse, fine in (("fast", fast, fast), ("fast/balanced", fast, balanced),
                            ("balanced/fast", balanced, fast), ("balanced", balanced, balanced)):
    x = F.interpolate(swapped(coarse, fine, cut, 4, 0), scale_factor=3, mode="nearest")
    grid.append((label, list(x)))
write_grid(Path(sys.argv[3]), grid)
