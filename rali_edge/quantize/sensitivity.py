"""Per-block quantization sensitivity and the automatic drift budget.

Sensitivity: quantize ONE unit at a time (everything else float, head float) and measure
the score drift on evaluation images; blocks are ranked most sensitive first and written as JSON and
Markdown. A unit is a transformer block in towers with LayerNorms (ViTs) and a single quantizable layer
in towers without (CNNs; `patterns.sensitivity_units`). Drift budget (`quantize_to_budget`): start from the default INT8 model (head float), then keep
the most sensitive units in float one at a time until the PLCC (and optionally SRCC) drop vs the float
model is within budget; fail clearly when even all units in float (head float too) cannot meet it.

The model is pre-processed once (`quant_pre_process`, skip_symbolic_shape) and its nodes named, so the
block node names used for exclusion are those of the graph actually quantized.
"""

from __future__ import annotations

import dataclasses
import json
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._atomic import atomic_write_json, atomic_write_text
from rali_edge.errors import ConfigError, RaliEdgeError
from rali_edge.quantize.config import OnnxInt8Config

if TYPE_CHECKING:
    from rali_edge.calibration.sets import CalibrationSet
    from rali_edge.quantize.api import QuantizeResult
    from rali_edge.quantize.patterns import SensitivityUnit


class DriftBudgetNotMet(RaliEdgeError):
    """Even with every unit (transformer block or layer) and the head in float, the drop exceeds the budget."""


@dataclass(frozen=True)
class EvalData:
    pixels: np.ndarray          # uint8 [N,3,H,W]
    gt: np.ndarray | None       # labels, needed for PLCC/SRCC


@dataclass
class BlockSensitivity:
    block: int                  # index into the units of `sensitivity_units`
    label: str                  # "block 3" (ViT) or the layer's node name (CNN)
    nodes: int
    score_mae: float            # mean |score(int8 block only) - score(float)|
    max_abs_change: float
    dplcc: float | None


def prepare(source: Path, workdir: Path, preprocess: bool = True) -> Path:
    """Pre-process once and name every node; returns the model the search quantizes."""
    import onnx

    from rali_edge.quantize.onnx_int8 import preprocess_model
    from rali_edge.quantize.patterns import ensure_node_names

    path = preprocess_model(source, workdir / "pre.onnx") if preprocess else Path(source)
    model = onnx.load(str(path))
    ensure_node_names(model)
    # quant_pre_process may drop the exporter's metadata; runtimes need it on the final artifact.
    have = {p.key for p in model.metadata_props}
    src = onnx.load(str(source), load_external_data=False)
    model.metadata_props.extend(p for p in src.metadata_props if p.key not in have)
    onnx.save(model, str(workdir / "prepared.onnx"))
    return workdir / "prepared.onnx"


def _scores(path: Path, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    import onnxruntime as ort

    from rali_edge.quantize.onnx_feed import model_input

    import onnx

    name, elem_type, _ = model_input(onnx.load(str(path), load_external_data=False))
    if elem_type != 2:  # onnx.TensorProto.UINT8
        raise ConfigError(f"{path}: sensitivity and budget search support uint8-input graphs (the default export)")
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out_names = [o.name for o in sess.get_outputs()]
    idx = out_names.index("score")
    return np.concatenate([sess.run(None, {name: pixels[i:i + batch]})[idx] for i in range(0, len(pixels), batch)])


def _plcc_srcc(scores: np.ndarray, gt: np.ndarray | None) -> tuple[float | None, float | None]:
    from rali_edge.metrics import plcc, srcc

    return (None, None) if gt is None else (plcc(scores, gt), srcc(scores, gt))


def _quantize_to(prepared: Path, out: Path, config: OnnxInt8Config, calibration: CalibrationSet) -> None:
    from rali_edge.quantize.onnx_int8 import quantize_onnx_int8

    quantize_onnx_int8(dataclasses.replace(config, preprocess=False), prepared, out, calibration)


def block_sensitivity(source: str | Path, calibration: CalibrationSet, data: EvalData,
                      config: OnnxInt8Config = OnnxInt8Config()) -> list[BlockSensitivity]:
    """Quantize one unit at a time; ranked most sensitive (largest score MAE) first."""
    import onnx

    from rali_edge.quantize.patterns import sensitivity_units

    with tempfile.TemporaryDirectory(prefix="rali-sens-") as tmp:
        tmpd = Path(tmp)
        prepared = prepare(Path(source), tmpd, config.preprocess)
        _, units = sensitivity_units(onnx.load(str(prepared)), config.op_types, config.keep_stem_float)
        return _rank_units(prepared, units, _scores(prepared, data.pixels), calibration, data, config, tmpd)


def _rank_units(prepared: Path, units: list[SensitivityUnit], ref: np.ndarray, calibration: CalibrationSet, data: EvalData,
                config: OnnxInt8Config, tmpd: Path) -> list[BlockSensitivity]:
    """Score drift with only unit i quantized, for each i; `ref` = the float model's scores on `data`."""
    p_ref, _ = _plcc_srcc(ref, data.gt)
    all_unit_nodes = {n for u in units for n in u.nodes}
    rows = []
    for i, unit in enumerate(units):
        others = tuple(sorted(all_unit_nodes - set(unit.nodes)))
        cfg = dataclasses.replace(config, extra_float_nodes=config.extra_float_nodes + others)
        _quantize_to(prepared, tmpd / f"block{i}.onnx", cfg, calibration)
        got = _scores(tmpd / f"block{i}.onnx", data.pixels)
        p, _ = _plcc_srcc(got, data.gt)
        rows.append(BlockSensitivity(i, unit.label, len(unit.nodes), float(np.abs(got - ref).mean()),
                                     float(np.abs(got - ref).max()), None if p is None else p - p_ref))
    return sorted(rows, key=lambda r: -r.score_mae)


def write_sensitivity_table(rows: list[BlockSensitivity], out_json: str | Path, out_md: str | Path) -> None:
    atomic_write_json(out_json, {"ranked": [dataclasses.asdict(r) for r in rows],
                                 "metric": "score MAE vs float with only this block quantized"})
    lines = ["| rank | unit | nodes | score MAE | max abs change | dPLCC |", "|---|---|---|---|---|---|"]
    for rank, r in enumerate(rows, 1):
        dp = "-" if r.dplcc is None else f"{r.dplcc:+.4f}"
        lines.append(f"| {rank} | {r.label} | {r.nodes} | {r.score_mae:.5f} | {r.max_abs_change:.5f} | {dp} |")
    atomic_write_text(out_md, "\n".join(lines) + "\n")


def _latency_ms(path: Path, pixels: np.ndarray, reps: int = 3) -> float:
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: pixels})
    times = []
    for _ in range(reps):
        t = time.perf_counter()
        sess.run(None, {name: pixels})
        times.append((time.perf_counter() - t) * 1000)
    return float(np.median(times))


def quantize_to_budget(source: str | Path, out: str | Path, calibration: CalibrationSet, max_plcc_drop: float,
                       data: EvalData | None = None, config: OnnxInt8Config = OnnxInt8Config(),
                       max_srcc_drop: float | None = None) -> QuantizeResult:
    """INT8 with the fewest float blocks that keeps the PLCC (SRCC) drop within budget on `data`.

    `data` defaults to the calibration images and their labels. The result's details["drift_budget"]
    (also in `<out>.quant.json`) lists the steps, the blocks kept in float, size and latency.
    """
    import onnx

    from rali_edge.quantize.api import quant_json_path, quantize
    from rali_edge.quantize.patterns import sensitivity_units

    for name, v in (("max_plcc_drop", max_plcc_drop), ("max_srcc_drop", max_srcc_drop)):
        if v is not None and not v >= 0:
            raise ConfigError(f"{name}={v}: a drop budget must be >= 0")
    data = data or EvalData(calibration.pixels, calibration.scores)
    if data.gt is None:
        raise ConfigError("the drift budget needs labelled evaluation images (scores) to measure PLCC")
    source, out = Path(source), Path(out)
    with tempfile.TemporaryDirectory(prefix="rali-budget-") as tmp:
        tmpd = Path(tmp)
        prepared = prepare(source, tmpd, config.preprocess)
        kind, units = sensitivity_units(onnx.load(str(prepared)), config.op_types, config.keep_stem_float)
        blocks = [u.nodes for u in units]
        ref = _scores(prepared, data.pixels)
        p_ref, s_ref = _plcc_srcc(ref, data.gt)
        config = dataclasses.replace(config, keep_head_float=True, preprocess=False)
        ranked = _rank_units(prepared, units, ref, calibration, data, config, tmpd)
        steps, kept = [], []
        for step in range(len(ranked) + 1):
            extra = tuple(n for r in ranked[:step] for n in blocks[r.block])
            cand = tmpd / f"step{step}.onnx"
            _quantize_to(prepared, cand, dataclasses.replace(config, extra_float_nodes=extra), calibration)
            p, s = _plcc_srcc(_scores(cand, data.pixels), data.gt)
            kept = [r.block for r in ranked[:step]]
            ok = -(p - p_ref) <= max_plcc_drop and (max_srcc_drop is None or -(s - s_ref) <= max_srcc_drop)
            steps.append({"float_blocks": kept, "dplcc": p - p_ref, "dsrcc": s - s_ref, "within_budget": ok})
            if ok:
                break
        if not steps[-1]["within_budget"]:
            raise DriftBudgetNotMet(
                f"{source}: PLCC drop {-steps[-1]['dplcc']:.4f} exceeds the budget {max_plcc_drop} even with "
                f"all {len(blocks)} units ({kind}s) and the head in float; quantization cannot meet it")
        final = dataclasses.replace(config, extra_float_nodes=tuple(n for b in kept for n in blocks[b]))
        result = quantize(final, prepared, out, calibration)
        speed = {"fp32_ms": _latency_ms(prepared, data.pixels[:8]), "int8_ms": _latency_ms(out, data.pixels[:8]),
                 "batch": int(min(8, len(data.pixels)))}
    result.details["drift_budget"] = {
        "max_plcc_drop": max_plcc_drop, "max_srcc_drop": max_srcc_drop, "plcc_float": p_ref, "srcc_float": s_ref,
        "sensitivity": [dataclasses.asdict(r) for r in ranked], "steps": steps, "float_blocks": kept,
        "unit_kind": kind, "float_units": [units[b].label for b in kept],
        "size_bytes": result.size_bytes, "source_size_bytes": result.source_size_bytes, "latency": speed,
    }
    doc = json.loads(quant_json_path(out).read_text())
    doc["source"] = str(source)
    doc["details"] = result.details
    atomic_write_json(quant_json_path(out), doc)
    return result
