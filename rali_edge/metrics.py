"""The one metrics module: PLCC (optionally after the VQEG logistic fit), SRCC, KRCC, MAE, RMSE.

Inputs are 1-D sequences (lists, numpy arrays, CPU tensors) of predictions and ground truth; every
function returns a plain float. Bad input never turns into a silent NaN: mismatched lengths, too few
items, NaN/inf, or constant input to a correlation raise `DataError` with the reason.

Correlations use scipy.stats (pearsonr, spearmanr with average ranks for ties, kendalltau tau-b), so
numbers match what DeQA-Score and most IQA papers report.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from rali_edge.errors import DataError

MIN_ITEMS_CORRELATION = 3
MIN_ITEMS_LOGISTIC = 4  # the curve has 4 parameters; curve_fit needs at least as many points


def _as_vector(values: Any, name: str) -> np.ndarray:
    try:
        arr = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError) as e:
        raise DataError(f"{name}: expected numbers, could not convert ({e})") from e
    if arr.ndim != 1:
        raise DataError(f"{name}: expected a 1-D sequence of scores, got shape {arr.shape}")
    bad = ~np.isfinite(arr)
    if bad.any():
        idx = np.flatnonzero(bad)
        raise DataError(f"{name}: {idx.size} NaN or infinite value(s), first at index {idx[0]} ({arr[idx[0]]})")
    return arr


def _pair(pred: Any, gt: Any, min_items: int, correlation: bool) -> tuple[np.ndarray, np.ndarray]:
    """Validated float64 vectors of equal length; correlations also need non-constant inputs."""
    p, g = _as_vector(pred, "pred"), _as_vector(gt, "gt")
    if p.size != g.size:
        raise DataError(f"pred has {p.size} values but gt has {g.size}: lengths must match")
    if p.size < min_items:
        raise DataError(f"need at least {min_items} (pred, gt) pairs, got {p.size}")
    if correlation:
        for name, arr in (("pred", p), ("gt", g)):
            if np.ptp(arr) == 0:
                raise DataError(f"{name} is constant (every value is {arr[0]:g}): correlation is undefined")
    return p, g


def _finite(value: float, what: str) -> float:
    value = float(value)
    if not np.isfinite(value):
        raise DataError(f"{what} came out as {value} (degenerate input)")
    return value


def _pearson(p: np.ndarray, g: np.ndarray) -> float:
    from scipy import stats

    return _finite(stats.pearsonr(p, g)[0], "PLCC")


def plcc(pred: Any, gt: Any, logistic: bool = False) -> float:
    """Pearson linear correlation; with `logistic=True`, of the VQEG-logistic-fitted pred vs gt."""
    p, g = _pair(pred, gt, MIN_ITEMS_CORRELATION, correlation=True)
    if logistic:
        fitted = logistic_fit(p, g)(p)
        if np.ptp(fitted) == 0:
            raise DataError("logistic fit collapsed to a constant prediction: PLCC is undefined")
        return _pearson(fitted, g)
    return _pearson(p, g)


def srcc(pred: Any, gt: Any) -> float:
    """Spearman rank correlation (ties get average ranks)."""
    from scipy import stats

    p, g = _pair(pred, gt, MIN_ITEMS_CORRELATION, correlation=True)
    return _finite(stats.spearmanr(p, g)[0], "SRCC")


def krcc(pred: Any, gt: Any) -> float:
    """Kendall rank correlation, tau-b (corrects for ties)."""
    from scipy import stats

    p, g = _pair(pred, gt, MIN_ITEMS_CORRELATION, correlation=True)
    return _finite(stats.kendalltau(p, g, variant="b")[0], "KRCC")


def mae(pred: Any, gt: Any) -> float:
    """Mean absolute error (constant input is fine here; at least one pair is needed)."""
    p, g = _pair(pred, gt, 1, correlation=False)
    return float(np.mean(np.abs(p - g)))


def rmse(pred: Any, gt: Any) -> float:
    """Root mean squared error (constant input is fine here; at least one pair is needed)."""
    p, g = _pair(pred, gt, 1, correlation=False)
    return float(np.sqrt(np.mean((p - g) ** 2)))


def _logistic_4(x: np.ndarray, b1: float, b2: float, b3: float, b4: float) -> np.ndarray:
    with np.errstate(over="ignore"):  # exp overflow -> inf -> the curve's lower asymptote, as intended
        return (b1 - b2) / (1.0 + np.exp(-(x - b3) / np.abs(b4))) + b2


@dataclass(frozen=True)
class LogisticFit:
    """The fitted 4-parameter VQEG logistic f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2."""

    b1: float  # upper asymptote
    b2: float  # lower asymptote
    b3: float  # centre (in pred units)
    b4: float  # slope scale (in pred units; its sign is irrelevant)

    def __call__(self, pred: Any) -> np.ndarray:
        return _logistic_4(np.asarray(pred, dtype=np.float64), self.b1, self.b2, self.b3, self.b4)

    def params(self) -> tuple[float, float, float, float]:
        return (self.b1, self.b2, self.b3, self.b4)


def logistic_fit(pred: Any, gt: Any, maxfev: int = 10_000) -> LogisticFit:
    """Fit the VQEG 4-parameter logistic mapping pred -> gt, as DeQA-Score (and pyiqa) do.

    Least squares with scipy.optimize.curve_fit from the usual start
    [max(gt), min(gt), mean(pred), std(pred) / 4]. Needs at least 4 pairs; a fit that does not
    converge raises DataError.
    """
    from scipy.optimize import OptimizeWarning, curve_fit

    p, g = _pair(pred, gt, MIN_ITEMS_LOGISTIC, correlation=True)
    start = [float(np.max(g)), float(np.min(g)), float(np.mean(p)), float(np.std(p)) / 4.0]
    try:
        with warnings.catch_warnings():
            # we use only the parameters, not their covariance, which may be inestimable on tiny sets
            warnings.simplefilter("ignore", OptimizeWarning)
            params, _ = curve_fit(_logistic_4, p, g, p0=start, maxfev=maxfev)
    except RuntimeError as e:
        raise DataError(f"logistic fit did not converge on {p.size} pairs ({e})") from e
    if not np.all(np.isfinite(params)) or params[3] == 0:
        raise DataError(f"logistic fit gave degenerate parameters {params.tolist()}")
    return LogisticFit(*(float(v) for v in params))


def summarize(pred: Any, gt: Any, logistic: bool = False) -> dict[str, float | int]:
    """n, plcc, srcc, krcc, mae, rmse for one set of predictions (plcc after the logistic fit if asked)."""
    p, g = _pair(pred, gt, MIN_ITEMS_CORRELATION, correlation=True)
    return {
        "n": int(p.size),
        "plcc": plcc(p, g, logistic=logistic),
        "srcc": srcc(p, g),
        "krcc": krcc(p, g),
        "mae": mae(p, g),
        "rmse": rmse(p, g),
    }
