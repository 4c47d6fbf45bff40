"""Evaluation of a scorer (bundle or artifact) on meta files: n, PLCC, SRCC, KRCC, MAE per file and their average.

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
    from rali_edge.evaluation.evalset import EvalSet

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


def _dataset_result(s: EvalSet, scores: np.ndarray, logistic: bool) -> DatasetResult:
    from rali_edge.metrics import summarize

    failures = list(s.bad_images)
    if s.gt is None:
        raise DataError(f"{s.dataset}: some records have no gt_score_norm; evaluation needs ground-truth scores")
    if len(s) < 3:
        raise DataError(f"{s.dataset}: only {len(s)} images could be scored; correlations need at least 3 "
                        f"(first failure: {failures[0] if failures else None})")
    pred = np.asarray(scores, np.float64)
    try:
        summary = summarize(pred, s.gt, logistic=logistic)
    except DataError as e:
        raise DataError(f"{s.dataset}: {e}") from e
    predictions = [{"image": img, "pred": float(p), "gt": float(g)} for img, p, g in zip(s.images, pred, s.gt)]
    return DatasetResult(dataset=s.dataset, n=int(summary["n"]), metrics={k: float(summary[k]) for k in METRICS},
                         failures=failures, predictions=predictions)


def evaluate_artifact(artifact: str | os.PathLike[str], meta_paths: Sequence[str | os.PathLike[str]],
                      image_root: str | os.PathLike[str], logistic: bool = False, batch_size: int = 32,
                      device: str = "cpu", progress: bool = False) -> EvalReport:
    """Evaluate a bundle (in PyTorch, on `device`) or any exported artifact (in its own runtime) on
    meta files sharing one image root, through the evaluation core `validate` and `benchmark` use."""
    from rali_edge.errors import NotRunnableHere, UnsupportedOptionError
    from rali_edge.evaluation.evalset import load_eval_sets
    from rali_edge.evaluation.measure import run_batched
    from rali_edge.runtime import is_bundle, open_runner, runner_class

    if batch_size < 1:
        raise DataError(f"batch_size must be >= 1, got {batch_size}")
    if not is_bundle(artifact) and device != "cpu":
        raise UnsupportedOptionError(f"--device {device} applies to bundles (PyTorch); {artifact} runs in its own runtime")
    ok, why = runner_class(artifact).available()
    if not ok:   # checked before any image is read (validate/benchmark can simulate Core ML instead)
        raise NotRunnableHere(f"{artifact}: cannot run here: {why}")
    runner = open_runner(artifact, device=device) if is_bundle(artifact) else open_runner(artifact)
    sets = load_eval_sets(meta_paths, image_root, runner.preprocess_config())
    results = [_dataset_result(s, run_batched(runner, s.pixels, batch_size)["score"], logistic) for s in sets]
    average = {k: float(np.mean([r.metrics[k] for r in results])) for k in METRICS}
    return EvalReport(bundle=str(artifact), bundle_checksum=runner.metadata.bundle_checksum, logistic=logistic,
                      protocol=PROTOCOLS[logistic], datasets=results, average=average)


def evaluate_bundle(bundle_dir: str | os.PathLike[str], meta_paths: Sequence[str | os.PathLike[str]],
                    image_root: str | os.PathLike[str], logistic: bool = False, batch_size: int = 32,
                    device: str = "cpu", progress: bool = False) -> EvalReport:
    """`evaluate_artifact` for a bundle folder (kept for callers that name the bundle)."""
    return evaluate_artifact(bundle_dir, meta_paths, image_root, logistic, batch_size, device, progress)


def write_report(report: EvalReport, path: str | os.PathLike[str]) -> Path:
    """The report as JSON, written atomically."""
    return atomic_write_json(path, report.to_dict())
