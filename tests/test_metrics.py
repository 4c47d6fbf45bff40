"""Metrics equal hand-computed values and independent formulas (with ties), the logistic fit behaves,
bad input raises instead of NaN. No test compares a metric with the scipy call it wraps."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
from scipy import stats

from rali_edge import metrics
from rali_edge.errors import DataError


def _inputs(seed: int, n: int = 60, ties: bool = True) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    gt = rng.uniform(1, 5, n)
    pred = gt + rng.normal(0, 0.8, n)
    if ties:  # rounding gives many tied values on both sides
        gt, pred = np.round(gt * 2) / 2, np.round(pred, 1)
    return pred, gt


def _kendall_tau_b_bruteforce(x: np.ndarray, y: np.ndarray) -> float:
    concordant = discordant = ties_x = ties_y = 0
    for i, j in itertools.combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    pairs = concordant + discordant
    return (concordant - discordant) / math.sqrt((pairs + ties_x) * (pairs + ties_y))


def test_correlations_on_values_computed_by_hand():
    # pred 1..5 vs gt [1, 3, 2, 5, 4]: two swapped neighbours, no ties.
    # Pearson (= Spearman here): sum(dx*dy) = 8 over sqrt(10 * 10) -> 0.8;
    # Spearman: 1 - 6 * sum(d^2) / (n (n^2 - 1)) = 1 - 6 * 4 / 120 = 0.8;
    # Kendall: 8 concordant, 2 discordant of 10 pairs -> 0.6.
    pred, gt = [1.0, 2.0, 3.0, 4.0, 5.0], [1.0, 3.0, 2.0, 5.0, 4.0]
    assert metrics.plcc(pred, gt) == pytest.approx(0.8, abs=1e-12)
    assert metrics.srcc(pred, gt) == pytest.approx(0.8, abs=1e-12)
    assert metrics.krcc(pred, gt) == pytest.approx(0.6, abs=1e-12)
    # With ties: pred [1, 2, 2, 3] vs gt 1..4. Average ranks [1, 2.5, 2.5, 4]: Spearman = 4.5 / sqrt(4.5 * 5);
    # Kendall tau-b: 5 concordant, 0 discordant, 1 pair tied in pred only -> 5 / sqrt(5 * 6).
    pred, gt = [1.0, 2.0, 2.0, 3.0], [1.0, 2.0, 3.0, 4.0]
    assert metrics.srcc(pred, gt) == pytest.approx(4.5 / math.sqrt(4.5 * 5), abs=1e-12)
    assert metrics.krcc(pred, gt) == pytest.approx(5 / math.sqrt(5 * 6), abs=1e-12)


@pytest.mark.parametrize("seed", range(3))
@pytest.mark.parametrize("ties", [True, False])
def test_correlations_match_independent_formulas(seed, ties):
    pred, gt = _inputs(seed, n=40, ties=ties)
    if ties:
        assert len(np.unique(gt)) < len(gt) and len(np.unique(pred)) < len(pred)
    # Spearman = Pearson of average ranks; Kendall tau-b by counting pairs
    expected_srcc = np.corrcoef(stats.rankdata(pred), stats.rankdata(gt))[0, 1]
    assert metrics.srcc(pred, gt) == pytest.approx(expected_srcc, abs=1e-12)
    assert metrics.krcc(pred, gt) == pytest.approx(_kendall_tau_b_bruteforce(pred, gt), abs=1e-12)
    assert metrics.plcc(pred, gt) == pytest.approx(np.corrcoef(pred, gt)[0, 1], abs=1e-12)


def test_mae_rmse_and_accepted_input_types():
    pred, gt = [1.0, 2.0, 4.0], [1.5, 2.0, 2.0]
    assert metrics.mae(pred, gt) == pytest.approx((0.5 + 0 + 2) / 3)
    assert metrics.rmse(pred, gt) == pytest.approx(math.sqrt((0.25 + 0 + 4) / 3))
    assert metrics.mae(np.array([3.0, 3.0]), (3.0, 4.0)) == pytest.approx(0.5)  # constant is fine for errors
    assert isinstance(metrics.plcc(np.arange(5), [1, 3, 2, 5, 4]), float)
    torch = pytest.importorskip("torch")
    assert metrics.srcc(torch.arange(5.0), [1, 3, 2, 5, 4]) == pytest.approx(0.8)


def test_perfect_and_inverse_relations():
    x = np.linspace(0, 1, 20)
    assert metrics.plcc(x, 3 * x + 1) == pytest.approx(1.0)
    assert metrics.srcc(x, -(x**3)) == pytest.approx(-1.0)
    assert metrics.krcc(x, np.exp(x)) == pytest.approx(1.0)


@pytest.mark.parametrize("seed", range(4))
def test_logistic_plcc_improves_on_monotone_nonlinear_relation(seed):
    rng = np.random.default_rng(seed)
    pred = rng.uniform(-4, 4, 200)
    gt = 1 + 4 / (1 + np.exp(-1.7 * (pred - 0.5))) + rng.normal(0, 0.05, 200)  # sigmoid-shaped MOS
    plain, fitted = metrics.plcc(pred, gt), metrics.plcc(pred, gt, logistic=True)
    assert fitted >= plain - 1e-12
    assert fitted > plain + 0.01  # the curvature is strong enough that the fit must clearly help
    fit = metrics.logistic_fit(pred, gt)
    b1, b2, b3, b4 = fit.params()
    assert b1 == pytest.approx(5, abs=0.1) and b2 == pytest.approx(1, abs=0.1)
    assert b3 == pytest.approx(0.5, abs=0.1) and abs(b4) == pytest.approx(1 / 1.7, rel=0.1)
    # rank correlations are invariant to the monotone fit
    assert metrics.srcc(fit(pred), gt) == pytest.approx(metrics.srcc(pred, gt))


def test_logistic_plcc_on_linear_relation_is_not_worse():
    pred, gt = _inputs(11, n=80, ties=False)
    assert metrics.plcc(pred, gt, logistic=True) >= metrics.plcc(pred, gt) - 1e-6


def test_summarize_has_every_metric():
    pred, gt = _inputs(2)
    s = metrics.summarize(pred, gt)
    assert set(s) == {"n", "plcc", "srcc", "krcc", "mae", "rmse"}
    assert s["n"] == len(pred) and s["plcc"] == metrics.plcc(pred, gt) and s["rmse"] == metrics.rmse(pred, gt)
    assert metrics.summarize(pred, gt, logistic=True)["plcc"] == metrics.plcc(pred, gt, logistic=True)


CORRELATIONS = [metrics.plcc, metrics.srcc, metrics.krcc, metrics.logistic_fit, metrics.summarize]
ALL = [*CORRELATIONS, metrics.mae, metrics.rmse]


@pytest.mark.parametrize("fn", CORRELATIONS)
@pytest.mark.parametrize("which", ["pred", "gt"])
def test_constant_input_raises(fn, which):
    pred, gt = [1.0, 2.0, 3.0, 4.0], [2.0, 1.0, 4.0, 3.0]
    constant = [3.0] * 4
    args = (constant, gt) if which == "pred" else (pred, constant)
    with pytest.raises(DataError, match=f"{which} is constant"):
        fn(*args)


@pytest.mark.parametrize("fn", ALL)
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), -float("inf")])
def test_non_finite_input_raises(fn, bad):
    with pytest.raises(DataError, match="NaN or infinite value.*index 2"):
        fn([1.0, 2.0, bad, 4.0], [1.0, 2.0, 3.0, 4.0])
    with pytest.raises(DataError, match="gt: 1 NaN or infinite"):
        fn([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0, bad])


@pytest.mark.parametrize("fn", ALL)
def test_length_mismatch_raises(fn):
    with pytest.raises(DataError, match="lengths must match"):
        fn([1.0, 2.0, 3.0, 4.0], [1.0, 2.0, 3.0])


@pytest.mark.parametrize("fn", CORRELATIONS)
def test_too_few_items_raise(fn):
    with pytest.raises(DataError, match="at least [34]"):
        fn([1.0, 2.0], [2.0, 1.0])


@pytest.mark.parametrize("fn", [metrics.logistic_fit, lambda p, g: metrics.plcc(p, g, logistic=True)])
def test_logistic_needs_four_items(fn):
    with pytest.raises(DataError, match="at least 4"):
        fn([1.0, 2.0, 3.0], [2.0, 1.0, 3.0])


@pytest.mark.parametrize("fn", ALL)
def test_bad_shapes_and_types_raise(fn):
    with pytest.raises(DataError, match="1-D"):
        fn(np.ones((3, 2)), np.ones((3, 2)))
    with pytest.raises(DataError, match="expected numbers"):
        fn(["a", "b", "c"], [1.0, 2.0, 3.0])
    with pytest.raises(DataError):
        fn([], [])
