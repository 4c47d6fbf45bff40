"""Drift of an artifact against the float model: PLCC/SRCC vs ground truth, their change vs float,
score MAE and max |change| vs float, embedding cosine. One `DriftRow` per (artifact, dataset), and with
device preprocessing (rali_edge.evaluation.device_preprocess) one more per (artifact, dataset, variant):
its `dataset` reads `<dataset>@<variant>`, its `device_preprocess` names the variant, and it is compared
with the float model on the TRAINING preprocessing.

Sign convention: dplcc = plcc(artifact) - plcc(float); a drop is a negative dplcc. The gate
(rali_edge.evaluation.budget) fails a row when -dplcc > max_plcc_drop (or -dsrcc > max_srcc_drop), or,
gating on the interval, when the drop's pessimistic bound -dplcc_ci[0] is over the budget.

Each row with a ground truth also carries 95 % paired-bootstrap intervals (report/bootstrap.py) of PLCC,
SRCC and their changes (`*_ci`, [low, high]; None with `interval_reason`), and each artifact row the
ranking agreement of its scores with the float scores (report/ranking.py; None with `ranking_reason`).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rali_edge.errors import DataError
from rali_edge.report.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap, Interval, PairedBootstrap

# status values
OK = "ok"                      # measured in the artifact's own runtime
REFERENCE = "reference"        # the float PyTorch bundle itself
SIMULATED = "simulated"        # Core ML off macOS: the same quantization simulated in PyTorch
NOT_RUNNABLE = "not runnable here"
FAILED = "failed"
# Rows the drift budget applies to: measured in the artifact's runtime, or simulated where that
# runtime is absent (a simulated drop over budget is evidence enough to stop a release).
GATED = (OK, SIMULATED)


@dataclass
class DriftRow:
    artifact: str
    dataset: str
    n: int
    plcc: float | None = None
    srcc: float | None = None
    dplcc: float | None = None
    dsrcc: float | None = None
    score_mae: float | None = None
    max_abs_change: float | None = None
    embedding_cosine: float | None = None
    status: str = OK
    reason: str | None = None
    embedding_reason: str | None = None   # why embedding_cosine is null, when it is
    device_preprocess: str | None = None  # the device preprocessing the pixels had; None: the training one
    plcc_ci: Interval | None = None       # bootstrap intervals (DEFAULT_BOOTSTRAP: 95 %, paired)
    srcc_ci: Interval | None = None
    dplcc_ci: Interval | None = None
    dsrcc_ci: Interval | None = None
    interval_reason: str | None = None    # why the intervals are null, when they are
    ranking: dict | None = None           # RankingStats.to_dict(): float vs artifact order
    ranking_reason: str | None = None     # why ranking is null, when it is

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def _correlations(scores: np.ndarray, gt: np.ndarray | None) -> tuple[float | None, float | None]:
    from rali_edge.metrics import plcc, srcc

    if gt is None:
        return None, None
    try:
        return plcc(scores, gt), srcc(scores, gt)
    except DataError:  # constant scores (a collapsed artifact): correlation undefined, reported as null
        return None, None


def embedding_cosine(ref: np.ndarray | None, emb: np.ndarray | None) -> tuple[float | None, str | None]:
    """Mean cosine similarity of matching rows, or (None, why not)."""
    if ref is None and emb is None:
        return None, "neither the float model nor the artifact outputs an embedding"
    if emb is None:
        return None, "the artifact has no embedding output (export with --with-embedding)"
    if ref is None:
        return None, "the float model gave no embedding"
    if ref.shape != emb.shape:
        return None, f"embedding shapes differ: float {list(ref.shape)} vs artifact {list(emb.shape)}"
    num = np.sum(ref * emb, axis=1)
    den = np.linalg.norm(ref, axis=1) * np.linalg.norm(emb, axis=1)
    return float(np.mean(num / np.maximum(den, 1e-12))), None


def _intervals(ref: np.ndarray, got: np.ndarray | None, gt: np.ndarray | None,
               config: Bootstrap, boot: PairedBootstrap | None = None) -> tuple[dict, str | None]:
    """The row's interval fields (or none, and why): the artifact vs float, or float alone (got None).
    `boot`: the float model's bootstrap on these images, drawn once for every artifact (None: drawn here)."""
    if gt is None:
        return {}, "no ground truth"
    if gt.size < 3:
        return {}, f"{gt.size} images: too few for an interval"
    if boot is None:
        boot = PairedBootstrap(ref, gt, config)
    found = boot.reference() if got is None else boot.compare(got)
    found.pop("valid")
    if got is None:   # the float model against itself: no change, where its correlation is defined
        found.update({f"d{k}": (0.0, 0.0) if found[k] is not None else None for k in ("plcc_ci", "srcc_ci")})
    missing = [k for k, v in found.items() if v is None]
    why = f"{', '.join(missing)}: undefined in most resamples (constant scores)" if missing else None
    return found, why


def _ranking(ref: np.ndarray, got: np.ndarray) -> tuple[dict | None, str | None]:
    from rali_edge.report.ranking import ranking_stats

    try:
        return ranking_stats(ref, got).to_dict(), None
    except DataError as exc:
        return None, str(exc)


def drift_row(artifact: str, dataset: str, gt: np.ndarray | None, reference: dict[str, np.ndarray],
              outputs: dict[str, np.ndarray], status: str = OK, reason: str | None = None,
              bootstrap: Bootstrap = DEFAULT_BOOTSTRAP, boot: PairedBootstrap | None = None) -> DriftRow:
    """Compare one artifact's outputs with the float reference on the same images. `boot`: the float
    model's PairedBootstrap on them (made with `bootstrap`), shared by every artifact compared with it:
    the float resamples and the ground truth's ranks are then drawn once, not once per artifact."""
    ref, got = np.asarray(reference["score"], np.float64), np.asarray(outputs["score"], np.float64)
    if ref.shape != got.shape:
        raise DataError(f"{artifact}: {got.shape[0]} scores for {ref.shape[0]} reference images")
    p_ref, s_ref = _correlations(ref, gt)
    p, s = _correlations(got, gt)
    cos, why = embedding_cosine(reference.get("embedding"), outputs.get("embedding"))
    change = np.abs(got - ref)
    intervals, interval_reason = _intervals(ref, got, gt, bootstrap, boot)
    ranking, ranking_reason = _ranking(ref, got)
    return DriftRow(
        artifact=artifact, dataset=dataset, n=int(len(got)), plcc=p, srcc=s,
        dplcc=None if p is None or p_ref is None else p - p_ref,
        dsrcc=None if s is None or s_ref is None else s - s_ref,
        score_mae=float(change.mean()), max_abs_change=float(change.max()),
        embedding_cosine=cos, status=status, reason=reason, embedding_reason=why,
        **intervals, interval_reason=interval_reason, ranking=ranking, ranking_reason=ranking_reason,
    )


def reference_row(artifact: str, dataset: str, gt: np.ndarray | None, reference: dict[str, np.ndarray],
                  bootstrap: Bootstrap = DEFAULT_BOOTSTRAP) -> DriftRow:
    ref = np.asarray(reference["score"], np.float64)
    p, s = _correlations(ref, gt)
    intervals, interval_reason = _intervals(ref, None, gt, bootstrap)
    return DriftRow(artifact=artifact, dataset=dataset, n=int(len(reference["score"])), plcc=p, srcc=s,
                    dplcc=0.0 if p is not None else None, dsrcc=0.0 if s is not None else None,
                    score_mae=0.0, max_abs_change=0.0, embedding_cosine=None, status=REFERENCE,
                    embedding_reason="the reference itself", **intervals, interval_reason=interval_reason,
                    ranking_reason="the reference itself")


def unmeasured_row(artifact: str, dataset: str, n: int, status: str, reason: str) -> DriftRow:
    return DriftRow(artifact=artifact, dataset=dataset, n=n, status=status, reason=reason,
                    embedding_reason=reason)
