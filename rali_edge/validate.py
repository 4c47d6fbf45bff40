"""Drift validation: run artifacts in their own runtimes on the same images as the float bundle.

For each meta file: images are loaded once, resized and cropped as the bundle's PreprocessConfig says
(uint8, what every artifact takes), scored by the float PyTorch bundle (the reference) and by every
artifact; each artifact gets a DriftRow per meta file. An artifact whose runtime is absent is marked
"not runnable here" with the reason, except Core ML packages off macOS, whose accuracy is simulated in
PyTorch (status "simulated", see quantize/coreml.py). A row over the drop budget, or an artifact that
fails to run, fails the gate.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._atomic import atomic_write_json
from rali_edge.errors import ConfigError, RaliEdgeError
from rali_edge.report.drift import (
    FAILED,
    NOT_RUNNABLE,
    OK,
    SIMULATED,
    DriftRow,
    drift_row,
    reference_row,
    unmeasured_row,
)

if TYPE_CHECKING:
    from rali_edge.bundle import PreprocessConfig

REPORT_FILE = "report.json"


@dataclass
class EvalSet:
    dataset: str
    pixels: np.ndarray            # uint8 [N, 3, H, W]
    gt: np.ndarray | None         # gt_score_norm when every record has one
    bad_images: list[dict] = field(default_factory=list)


@dataclass
class ValidationReport:
    rows: list[DriftRow]
    failures: list[str]
    budget: dict
    report_path: Path | None = None

    @property
    def passed(self) -> bool:
        return not self.failures

    def to_dict(self) -> dict:
        return {"passed": self.passed, "budget": self.budget, "failures": self.failures,
                "rows": [r.to_dict() for r in self.rows]}


def _check_budget(name: str, value: float | None) -> None:
    if value is not None and not (value >= 0 and np.isfinite(value)):
        raise ConfigError(f"{name}={value}: a drop budget must be a finite number >= 0")


def load_eval_sets(metas, image_root, preprocess: PreprocessConfig) -> list[EvalSet]:
    from rali_edge.data.images import load_images
    from rali_edge.data.meta import read_metas
    from rali_edge.model.preprocess import resize_and_crop, to_uint8_tensor

    sets = []
    for dataset, records in read_metas(metas, image_root).items():
        good, bad = load_images([r.path for r in records])
        if not good:
            raise ConfigError(f"{dataset}: none of its {len(records)} images could be read (e.g. {bad[:1]})")
        pixels = np.stack([to_uint8_tensor(resize_and_crop(img, preprocess)).numpy() for _, img in good])
        scores = [records[i].score for i, _ in good]
        gt = None if any(s is None for s in scores) else np.asarray(scores, np.float64)
        sets.append(EvalSet(dataset, pixels, gt, [{"path": b.path, "reason": b.reason} for b in bad]))
    return sets


def run_batched(runner, pixels: np.ndarray, batch_size: int) -> dict[str, np.ndarray]:
    from tqdm.auto import tqdm

    parts: dict[str, list[np.ndarray]] = {}
    for i in tqdm(range(0, len(pixels), batch_size), desc=f"running {Path(str(runner.path)).name}",
                  unit="batch", leave=False):
        for k, v in runner.run(pixels[i:i + batch_size]).items():
            parts.setdefault(k, []).append(v)
    return {k: np.concatenate(v) for k, v in parts.items()}


def _simulate_coreml(path: Path, bundle_dir: Path, sets: list[EvalSet], batch_size: int) -> tuple[dict, str] | str:
    """(outputs per dataset, what was simulated) for a Core ML artifact, or why it cannot be simulated."""
    from rali_edge.bundle import load_bundle
    from rali_edge.export.fold import fold_scorer
    from rali_edge.export.spec import ExportSpec
    from rali_edge.model.scorer import RaliScorer
    from rali_edge.quantize.api import quant_json_path
    from rali_edge.quantize.config import CoreMLWeightsConfig, config_from_dict
    from rali_edge.quantize.coreml import run_simulated, simulate_weight_quantization
    from rali_edge.runtime.coreml_runner import CoreMLRunner

    precision = CoreMLRunner(path).metadata.precision
    qjson = quant_json_path(path)
    config = config_from_dict(json.loads(qjson.read_text())["config"]) if qjson.is_file() else None
    if precision not in ("fp16", "int8-weights"):
        return f"Core ML {precision} cannot be simulated here (only FP16 and INT8-weight packages)"
    if precision == "int8-weights" and not isinstance(config, CoreMLWeightsConfig):
        return f"INT8-weight package without its {qjson.name} (needed to simulate the same quantization)"
    bundle = load_bundle(bundle_dir)
    spec = ExportSpec(image_size=bundle.config.preprocess.image_size, input_kind="uint8", with_embedding=True)
    folded = fold_scorer(RaliScorer.from_bundle(bundle).eval(), bundle.config.preprocess, spec)
    what = "float16 compute"
    if config is not None and precision == "int8-weights":
        simulate_weight_quantization(folded, config)
        what = f"int8 {config.mode} {config.granularity} weights (dequantized) + float16 compute"
    return {s.dataset: run_simulated(folded, s.pixels, "uint8", batch_size) for s in sets}, what


def _artifact_rows(path: Path, bundle_dir: Path, sets: list[EvalSet], refs: dict, batch_size: int) -> list[DriftRow]:
    from rali_edge.runtime import open_runner, runner_class

    name = path.name
    try:
        cls = runner_class(path)
        ok, why = cls.available()
        if not ok and path.suffix == ".mlpackage":
            sim = _simulate_coreml(path, bundle_dir, sets, batch_size)
            if isinstance(sim, str):
                return [unmeasured_row(name, s.dataset, len(s.pixels), NOT_RUNNABLE, f"{why}; {sim}") for s in sets]
            outputs, what = sim
            note = f"{why}: simulated in PyTorch ({what})"
            return [drift_row(name, s.dataset, s.gt, refs[s.dataset], outputs[s.dataset], SIMULATED, note)
                    for s in sets]
        if not ok:
            return [unmeasured_row(name, s.dataset, len(s.pixels), NOT_RUNNABLE, why) for s in sets]
        runner = open_runner(path)
        size = sets[0].pixels.shape[-1]
        if runner.image_size != size:
            raise ConfigError(f"{path}: takes {runner.image_size} px images but the bundle preprocesses to {size}")
        return [drift_row(name, s.dataset, s.gt, refs[s.dataset], run_batched(runner, s.pixels, batch_size), OK)
                for s in sets]
    except RaliEdgeError as exc:
        return [unmeasured_row(name, s.dataset, len(s.pixels), FAILED, str(exc)) for s in sets]


def validate_artifacts(artifacts, bundle, metas, image_root, max_plcc_drop: float | None = None,
                       max_srcc_drop: float | None = None, out_dir: str | os.PathLike[str] | None = None,
                       batch_size: int = 16) -> ValidationReport:
    """Measure every artifact's drift against the float bundle; write `<out_dir>/report.json`."""
    from rali_edge.bundle import load_bundle
    from rali_edge.runtime import open_runner

    _check_budget("max_plcc_drop", max_plcc_drop)
    _check_budget("max_srcc_drop", max_srcc_drop)
    if batch_size < 1:
        raise ConfigError(f"batch_size={batch_size} must be >= 1")
    artifacts = [Path(a) for a in artifacts]
    if not artifacts:
        raise ConfigError("no artifacts to validate")
    bundle_dir = Path(bundle)
    preprocess = load_bundle(bundle_dir).config.preprocess
    sets = load_eval_sets(metas, image_root, preprocess)
    reference = open_runner(bundle_dir)
    refs = {s.dataset: run_batched(reference, s.pixels, batch_size) for s in sets}
    rows = [reference_row(bundle_dir.name, s.dataset, s.gt, refs[s.dataset]) for s in sets]
    for path in artifacts:
        rows.extend(_artifact_rows(path, bundle_dir, sets, refs, batch_size))
    failures = [f for r in rows for f in r.drops_over(max_plcc_drop, max_srcc_drop)]
    failures += [f"{r.artifact} on {r.dataset}: {r.reason}" for r in rows if r.status == FAILED]
    budget = {"max_plcc_drop": max_plcc_drop, "max_srcc_drop": max_srcc_drop}
    report = ValidationReport(rows, failures, budget)
    if out_dir is not None:
        doc = {**report.to_dict(), "bundle": str(bundle_dir), "metas": [str(m) for m in metas],
               "image_root": str(image_root), "bad_images": {s.dataset: s.bad_images for s in sets},
               "created": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        report.report_path = atomic_write_json(Path(out_dir) / REPORT_FILE, doc)
    return report


__all__ = ["validate_artifacts", "ValidationReport", "DriftRow", "OK", "SIMULATED", "NOT_RUNNABLE", "FAILED"]
