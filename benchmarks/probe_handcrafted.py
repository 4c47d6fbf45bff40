"""How much quality signal does the demo's data hold? Hand-crafted statistics + gradient boosting.

Not a test: run it by hand on a finished demo (or benchmarks/demo_sweep.py) folder,

    PYTHONPATH=. .venv/bin/python benchmarks/probe_handcrafted.py rali-edge-demo

Computes 40 classic no-reference statistics per image (brightness percentiles and clipping,
colourfulness and saturation, Laplacian and gradient energy, structure-tensor anisotropy, impulse
outliers, high-frequency share of the spectrum, unique colours, 8-px block edges), fits scikit-learn's
HistGradientBoostingRegressor on the training split and prints test PLCC/SRCC, overall and the SRCC
of each distortion's five levels. It is a yardstick for the CLIP scorer (what the pictures allow),
not a scorer rali-edge ships.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def features(path: Path) -> list[float]:
    from PIL import Image
    from scipy import ndimage

    a = np.asarray(Image.open(path).convert("RGB")).astype(np.float64)
    g = a.mean(-1)
    f = [g.mean(), g.std(), *np.percentile(g, [1, 5, 50, 95, 99]), (g > 250).mean(), (g < 5).mean()]
    rg, yb = a[..., 0] - a[..., 1], 0.5 * (a[..., 0] + a[..., 1]) - a[..., 2]
    f += [np.hypot(rg.std(), yb.std()), np.hypot(rg.mean(), yb.mean())]  # colourfulness (Hasler-Suesstrunk)
    mx, mn = a.max(-1), a.min(-1)
    f += [*np.percentile((mx - mn) / (mx + 1e-6), [10, 50, 90, 99]), (mx >= 254).mean(), (mn <= 1).mean()]
    lap = ndimage.laplace(g)
    f += [lap.var(), np.median(np.abs(lap)), np.abs(lap).mean()]
    gx, gy = np.diff(g, axis=1), np.diff(g, axis=0)
    f += [np.abs(gx).mean(), np.abs(gy).mean(), (gx == 0).mean(), (gy == 0).mean()]
    sx, sy = ndimage.sobel(g, 1), ndimage.sobel(g, 0)
    ev = np.linalg.eigvalsh(np.array([[(sx * sx).mean(), (sx * sy).mean()], [(sx * sy).mean(), (sy * sy).mean()]]))
    f += [ev[0] / (ev[1] + 1e-9), ev[1]]  # motion blur flattens one direction
    med = ndimage.median_filter(g, 3)
    f += [(np.abs(g - med) > 40).mean(), np.abs(g - med).mean()]
    spec = np.abs(np.fft.fftshift(np.fft.fft2(g - g.mean())))
    h, w = g.shape
    yy, xx = np.mgrid[:h, :w]
    rad, total = np.hypot(yy - h / 2, xx - w / 2), spec.sum() + 1e-9
    f += [spec[rad > k].sum() / total for k in (4, 8, 16, 24)]
    q = (a // 4).astype(np.int64)
    f += [len(np.unique(q[..., 0] * 4096 + q[..., 1] * 64 + q[..., 2]))]
    hist = np.bincount(g.astype(int).ravel(), minlength=256) / g.size
    nz = hist[hist > 0]
    f += [-(nz * np.log(nz)).sum(), len(nz), np.abs(gx[:, 7::8]).mean() / (np.abs(gx).mean() + 1e-9)]
    return f


def main(argv: list[str] | None = None) -> int:
    from scipy.stats import pearsonr, spearmanr
    from sklearn.ensemble import HistGradientBoostingRegressor

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("demo_dir", type=Path)
    args = ap.parse_args(argv)
    data = args.demo_dir / "data"
    train = json.loads((data / "metas" / "train.json").read_text(encoding="utf-8"))
    test = json.loads((data / "metas" / "test.json").read_text(encoding="utf-8"))
    x_train = np.array([features(data / r["image"]) for r in train])
    x_test = np.array([features(data / r["image"]) for r in test])
    y_train = np.array([r["gt_score_norm"] for r in train])
    y_test = np.array([r["gt_score_norm"] for r in test])
    model = HistGradientBoostingRegressor(max_iter=400, learning_rate=0.05, random_state=0).fit(x_train, y_train)
    pred = model.predict(x_test)
    print(f"test PLCC {pearsonr(pred, y_test)[0]:.3f}  SRCC {spearmanr(pred, y_test)[0]:.3f}  (n={len(test)})")
    levels = defaultdict(list)
    for r, p in zip(test, pred):
        if r["distortion"] != "pristine":
            levels[r["distortion"]].append((r["level"], p))
    print(f"{'distortion':20s} {'SRCC(level, score)':>18s}")
    for name, pairs in sorted(levels.items()):
        print(f"{name:20s} {spearmanr(*zip(*pairs))[0]:18.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
