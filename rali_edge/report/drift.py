"""Drift of an artifact against the float model: PLCC/SRCC vs ground truth, their change vs float,
score MAE and max |change| vs float, embedding cosine. One `DriftRow` per (artifact, dataset), and with
device preprocessing (rali_edge.evaluation.device_preprocess) one more per (artifact, dataset, variant):
its `dataset` reads `<dataset>@<variant>`, its `device_preprocess` names the variant, and it is compared
with the float model on the TRAINING preprocessing.

Sign convention: dplcc = plcc(artifact) - plcc(float); a drop is a negative dplcc. The gate fails a
row when -dplcc > max_plcc_drop (or -dsrcc > max_srcc_drop).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import numpy as np

from rali_edge.errors import DataError

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

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def drops_over(self, max_plcc_drop: float | None, max_srcc_drop: float | None) -> list[str]:
        """Budget breaches of this row, as sentences (empty when within budget or not measured)."""
        out = []
        if max_plcc_drop is not None and self.dplcc is not None and -self.dplcc > max_plcc_drop:
            out.append(f"{self.artifact} on {self.dataset}: PLCC dropped {-self.dplcc:.4f} > {max_plcc_drop}")
        if max_srcc_drop is not None and self.dsrcc is not None and -self.dsrcc > max_srcc_drop:
            out.append(f"{self.artifact} on {self.dataset}: SRCC dropped {-self.dsrcc:.4f} > {max_srcc_drop}")
        return out


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


def drift_row(artifact: str, dataset: str, gt: np.ndarray | None, reference: dict[str, np.ndarray],
              outputs: dict[str, np.ndarray], status: str = OK, reason: str | None = None) -> DriftRow:
    """Compare one artifact's outputs with the float reference on the same images."""
    ref, got = np.asarray(reference["score"], np.float64), np.asarray(outputs["score"], np.float64)
    if ref.shape != got.shape:
        raise DataError(f"{artifact}: {got.shape[0]} scores for {ref.shape[0]} reference images")
    p_ref, s_ref = _correlations(ref, gt)
    p, s = _correlations(got, gt)
    cos, why = embedding_cosine(reference.get("embedding"), outputs.get("embedding"))
    change = np.abs(got - ref)
    return DriftRow(
        artifact=artifact, dataset=dataset, n=int(len(got)), plcc=p, srcc=s,
        dplcc=None if p is None or p_ref is None else p - p_ref,
        dsrcc=None if s is None or s_ref is None else s - s_ref,
        score_mae=float(change.mean()), max_abs_change=float(change.max()),
        embedding_cosine=cos, status=status, reason=reason, embedding_reason=why,
    )


def reference_row(artifact: str, dataset: str, gt: np.ndarray | None, reference: dict[str, np.ndarray]) -> DriftRow:
    p, s = _correlations(np.asarray(reference["score"], np.float64), gt)
    return DriftRow(artifact=artifact, dataset=dataset, n=int(len(reference["score"])), plcc=p, srcc=s,
                    dplcc=0.0 if p is not None else None, dsrcc=0.0 if s is not None else None,
                    score_mae=0.0, max_abs_change=0.0, embedding_cosine=None, status=REFERENCE,
                    embedding_reason="the reference itself")


def unmeasured_row(artifact: str, dataset: str, n: int, status: str, reason: str) -> DriftRow:
    return DriftRow(artifact=artifact, dataset=dataset, n=n, status=status, reason=reason,
                    embedding_reason=reason)
