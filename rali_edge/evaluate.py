"""Evaluation of a scorer on meta files: n, PLCC, SRCC, KRCC, MAE per file and their average.

The default is the official RALI protocol: plain Pearson/Spearman correlations of predictions
against `gt_score_norm` (no logistic fit). `logistic=True` reports PLCC after the VQEG 4-parameter
logistic fit instead (as DeQA-Score does). Images that cannot be read are listed per dataset and
left out of the metrics; the report says how many.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._atomic import atomic_write_json
from rali_edge.errors import DataError

if TYPE_CHECKING:
    from rali_edge.data.meta import Record
    from rali_edge.model.scorer import Scorer

METRICS = ("plcc", "srcc", "krcc", "mae", "rmse")
PROTOCOLS = {False: "plain correlations vs gt_score_norm (official RALI protocol)",
             True: "PLCC after a 4-parameter logistic fit vs gt_score_norm"}


@dataclass
class DatasetResult:
    dataset: str
    n: int  # images scored and used in the metrics
    metrics: dict[str, float]  # plcc, srcc, krcc, mae, rmse
    failures: list[dict] = field(default_factory=list)  # {"path", "reason"} of unreadable images
    predictions: list[dict] = field(default_factory=list)  # {"image", "pred", "gt"}


@dataclass
class EvalReport:
    bundle: str
    bundle_checksum: str
    logistic: bool
    protocol: str
    datasets: list[DatasetResult]
    average: dict[str, float]  # unweighted mean over datasets, as in the paper's AVG column

    @property
    def n_failed(self) -> int:
        return sum(len(d.failures) for d in self.datasets)

    def to_dict(self) -> dict:
        return asdict(self)


def evaluate_records(scorer: Scorer, dataset: str, records: Sequence[Record], logistic: bool = False,
                     batch_size: int = 32, progress: bool = False) -> DatasetResult:
    """Score one dataset's records and compute its metrics."""
    from rali_edge.metrics import summarize

    if not records:
        raise DataError(f"{dataset}: no records to evaluate")
    unscored = [r.image for r in records if r.score is None]
    if unscored:
        raise DataError(f"{dataset}: {len(unscored)} records have no gt_score_norm (first: {unscored[0]}); "
                        "evaluation needs ground-truth scores")
    by_path = {str(r.path): r for r in records}
    result = scorer.score_files([r.path for r in records], batch_size=batch_size, progress=progress)
    failures = [{"path": f.path, "reason": f.reason} for f in result.failures]
    if len(result.paths) < 3:
        raise DataError(f"{dataset}: only {len(result.paths)} of {len(records)} images could be scored; "
                        f"correlations need at least 3 (first failure: {failures[0] if failures else None})")
    gt = np.array([by_path[p].score for p in result.paths], dtype=np.float64)
    pred = result.scores.astype(np.float64)
    try:
        summary = summarize(pred, gt, logistic=logistic)
    except DataError as e:
        raise DataError(f"{dataset}: {e}") from e
    metrics = {k: float(summary[k]) for k in METRICS}
    predictions = [{"image": by_path[p].image, "pred": float(s), "gt": float(g)}
                   for p, s, g in zip(result.paths, pred, gt)]
    return DatasetResult(dataset=dataset, n=int(summary["n"]), metrics=metrics, failures=failures,
                         predictions=predictions)


def evaluate_scorer(scorer: Scorer, metas: dict[str, Sequence[Record]], logistic: bool = False,
                    batch_size: int = 32, progress: bool = False) -> EvalReport:
    """Evaluate on several datasets (name -> records, as `read_metas` returns)."""
    if not metas:
        raise DataError("no datasets to evaluate")
    results = [evaluate_records(scorer, name, recs, logistic, batch_size, progress) for name, recs in metas.items()]
    average = {k: float(np.mean([r.metrics[k] for r in results])) for k in METRICS}
    return EvalReport(bundle=str(scorer.bundle.path), bundle_checksum=scorer.bundle.checksum, logistic=logistic,
                      protocol=PROTOCOLS[logistic], datasets=results, average=average)


def evaluate_bundle(bundle_dir: str | os.PathLike[str], meta_paths: Sequence[str | os.PathLike[str]],
                    image_root: str | os.PathLike[str], logistic: bool = False, batch_size: int = 32,
                    device: str = "cpu", progress: bool = False) -> EvalReport:
    """Load a bundle and evaluate it on meta files sharing one image root."""
    from rali_edge.data.meta import read_metas
    from rali_edge.model.scorer import load_scorer

    metas = read_metas(meta_paths, image_root)  # reads (and validates) every file before scoring
    scorer = load_scorer(bundle_dir, device=device)
    return evaluate_scorer(scorer, metas, logistic=logistic, batch_size=batch_size, progress=progress)


def write_report(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """The report as JSON, written atomically."""
    return atomic_write_json(path, report.to_dict())
