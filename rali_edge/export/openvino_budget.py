"""The OpenVINO INT8 drift budget: NNCF's accuracy control, gated on the PLCC drop, measured again here.

`nncf.quantize_with_accuracy_control` reverts the encoder ops whose quantization moves the scores most
back to float until the PLCC drop on the labelled calibration set is within the budget (NNCF ranks ops
by how far they move the outputs: a PLCC per image does not exist). NNCF only warns when it cannot
meet the budget, so the drop is measured again in OpenVINO (f32 inference) and DriftBudgetNotMet
raised when it is over. The head stays float (export.openvino_int8 says why).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ConfigError

if TYPE_CHECKING:
    from rali_edge.calibration.sets import CalibrationSet


def with_accuracy_control(model, dataset, inputs: np.ndarray, calibration: CalibrationSet, budget: float,
                          kwargs: dict):
    """nncf.quantize_with_accuracy_control with a PLCC validation on the labelled calibration set."""
    import nncf

    scores = _labels(calibration)
    items = [(inputs[i:i + 1], float(scores[i])) for i in range(len(inputs))]
    validation = nncf.Dataset(items, lambda item: item[0])
    return nncf.quantize_with_accuracy_control(model, dataset, validation, _validation_fn, max_drop=budget,
                                               drop_type=nncf.DropType.ABSOLUTE, **kwargs)


def _validation_fn(compiled, items) -> tuple[float, list]:
    """PLCC of the scores against the labels, and each item's output: NNCF then ranks ops by how far they
    move the outputs (a PLCC per image does not exist)."""
    from rali_edge.metrics import plcc

    items = list(items)
    outs = [np.array(compiled(x)[0], copy=True) for x, _ in items]
    gt = [g for _, g in items]
    # NNCF first calls this on one item to learn the return types: no PLCC on fewer than 3 images.
    metric = plcc(np.concatenate(outs), gt) if len(items) >= 3 else float("nan")
    return metric, [[o] for o in outs]


def _labels(calibration: CalibrationSet) -> np.ndarray:
    if calibration.scores is None:
        raise ConfigError("the drift budget needs labelled calibration images (a meta file with scores) to "
                          "measure the PLCC drop; an image folder has no labels")
    return calibration.scores


def budget_details(float_model, quantized, inputs: np.ndarray, calibration: CalibrationSet, budget: float,
                   details: dict) -> dict:
    """Measure the drop again in OpenVINO; DriftBudgetNotMet when it is over the budget."""
    from rali_edge.metrics import plcc
    from rali_edge.quantize.sensitivity import DriftBudgetNotMet

    gt = _labels(calibration)
    p_float, p_int8 = plcc(_scores(float_model, inputs), gt), plcc(_scores(quantized, inputs), gt)
    ok = -(p_int8 - p_float) <= budget
    if not ok:
        raise DriftBudgetNotMet(f"OpenVINO INT8: PLCC drop {p_float - p_int8:.4f} on the calibration set exceeds the "
                                f"budget {budget} even after NNCF's accuracy control kept "
                                f"{len(details['float_compute_ops'])} compute ops float")
    return {"max_plcc_drop": budget, "plcc_float": p_float, "method": "nncf accuracy control",
            "steps": [{"dplcc": p_int8 - p_float, "within_budget": ok}],
            "float_units": details["float_compute_ops"]}


def _scores(model, inputs: np.ndarray, batch: int = 32) -> np.ndarray:
    import openvino as ov

    compiled = ov.Core().compile_model(model, "CPU", {"INFERENCE_PRECISION_HINT": "f32"})   # never bf16
    return np.concatenate([np.array(compiled(inputs[i:i + batch])[0]) for i in range(0, len(inputs), batch)])
