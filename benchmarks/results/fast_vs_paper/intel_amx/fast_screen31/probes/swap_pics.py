"""Balloons: coarser stages of one model, finer of the other, 4 samples per pairing (rows: ff, fb, bf, bb)."""
import sys

import torch
from PIL import Image

sys.path.insert(0, "benchmarks")
from swap_scales import swapped  # noqa: E402

from singan_core.images import to_pil  # noqa: E402
from singan_core.singan import SinGAN  # noqa: E402

torch.set_num_threads(1)
f = SinGAN.load(sys.argv[1], "cpu")
b = SinGAN.load(sys.argv[2], "cpu")
cut = int(sys.argv[4])
rows = []
for coarse, fine in ((f, f), (f, b), (b, f), (b, b)):
    x = swapped(coarse, fine, cut, 4, 0)
    rows.append([to_pil(x[i:i + 1]) for i in range(4)])
w, h = rows[0][0].size
s = 3
sheet = Image.new("RGB", (4 * w * s, 4 * h * s), "white")
for r, row in enumerate(rows):
    for c, im in enumerate(row):
        sheet.paste(im.resize((w * s, h * s), Image.NEAREST), (c * w * s, r * h * s))
sheet.save(sys.argv[3])
