"""OpenVINO IR machinery: convert the folded scorer, carry our metadata in rt_info, write the artifact
folder, read it back, and validate it in OpenVINO itself.

Artifact: a folder `<name>.openvino/` holding `model.xml` (graph) and `model.bin` (weights). One folder
so that the pair is written, renamed and replaced as one (a crash never pairs a new .xml with an old
.bin) and so that sizes count the weights. Apps load `<name>.openvino/model.xml`.

Conversion: `openvino.convert_model` straight from the folded PyTorch module (its PyTorch frontend).
Measured against the ONNX route on the tiny open_clip and HF CLIP scorers, both match PyTorch to
~1e-6; the direct route skips the ONNX export and keeps module paths in op names
(`__module.affine`), which the INT8 step uses to find the head and keep it float. The batch axis is
dynamic (-1), or fixed at --batch N.

Metadata: the flat `rali_edge.*` pairs in the model's rt_info, section `rali_edge` (in the .xml:
`<rt_info><rali_edge><version value="..."/>...`), read back with `model.get_rt_info()`.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._extras import require_modules
from rali_edge.errors import ExportError, NotRunnableHere, ValidationFailed
from rali_edge.export.metadata import PREFIX

if TYPE_CHECKING:
    import openvino as ov
    from torch import nn

    from rali_edge.export.spec import ExportSpec

EXTRA = "pip install 'rali-edge[openvino]'"
NEEDS = {"openvino": "openvino", "nncf": "nncf"}   # module -> the package that installs it
XML, BIN = "model.xml", "model.bin"
SECTION = "rali_edge"   # the rt_info section holding our pairs, keys without the "rali_edge." prefix
AFFINE_PREFIX = "__module.affine"   # FoldedScorer.affine's op names under the PyTorch frontend
OV_TYPES = {"uint8": "u8", "float32": "f32"}   # spec dtype -> OpenVINO element type name


def require(*modules: str) -> None:
    """NotRunnableHere naming the extra when an OpenVINO package is missing."""
    require_modules("OpenVINO export", NEEDS, EXTRA, *modules)


def convert(folded: nn.Module, spec: ExportSpec) -> ov.Model:
    """The folded module as an OpenVINO model with the spec's input (name, type, shape) and output names."""
    import openvino as ov

    batch = -1 if spec.dynamic else spec.batch
    shape = ov.PartialShape([batch, *spec.input_shape(1)[1:]])
    try:
        model = ov.convert_model(folded, example_input=spec.example_inputs(),
                                 input=[(shape, getattr(ov.Type, OV_TYPES[spec.input_dtype]))])
    except Exception as exc:  # the frontend raises its own and torch's types; keep the message
        raise ExportError(f"openvino.convert_model failed: {type(exc).__name__}: {exc}") from exc
    if len(model.outputs) != len(spec.output_names):
        raise ExportError(f"the converted model has {len(model.outputs)} outputs, expected {list(spec.output_names)}")
    model.inputs[0].get_tensor().set_names({spec.input_name})
    for port, name in zip(model.outputs, spec.output_names):
        port.get_tensor().set_names({name})
    return model


def set_props(model: ov.Model, props: dict[str, str]) -> None:
    for key, value in props.items():
        model.set_rt_info(value, [SECTION, key.removeprefix(PREFIX)])


def read_props(model: ov.Model) -> dict[str, str]:
    """Our pairs from the model's rt_info ({} when it has none)."""
    info = model.get_rt_info()
    if SECTION not in info:
        return {}
    return {PREFIX + key: value.astype(str) for key, value in info[SECTION].items()}


def write_ir(model: ov.Model, folder: Path, fp16_weights: bool = False) -> Path:
    """Write model.xml + model.bin into a new `folder` (the artifact's temporary name); FP32 weights
    unless fp16_weights (save_model compresses to FP16 by default: always said explicitly here)."""
    import openvino as ov

    folder.mkdir(parents=True)
    ov.save_model(model, str(folder / XML), compress_to_fp16=fp16_weights)
    return folder


def read_ir(core: ov.Core, path: Path) -> ov.Model:
    """The model of an artifact folder; ExportError naming the folder when it is not a readable IR."""
    xml, weights = path / XML, path / BIN
    if not xml.is_file() or not weights.is_file():
        raise ExportError(f"{path}: not an OpenVINO IR folder (expected {XML} and {BIN} inside)")
    try:
        return core.read_model(str(xml), str(weights))
    except RuntimeError as exc:   # OpenVINO reports a bad IR as RuntimeError
        raise ExportError(f"{path}: OpenVINO cannot read it ({exc})") from exc


def head_ops(model: ov.Model) -> list:
    """The head's ops: FoldedScorer.affine's MatMul (the PCA projection, found by its module path) and
    every op downstream of it (normalisation, cosine logits, softmax, weighted sum). Found by graph
    walk, not by names: conversion renames fused encoder ops (a ResNet's Conv+BN becomes `Multiply_N`)."""
    starts = [op for op in model.get_ordered_ops()
              if op.get_type_name() == "MatMul" and op.get_friendly_name().startswith(AFFINE_PREFIX)]
    if len(starts) != 1:
        raise ExportError(f"cannot find the head: expected one MatMul named {AFFINE_PREFIX}..., found {len(starts)} "
                          "(has the PyTorch frontend's naming changed?)")
    head, todo = {}, starts
    while todo:
        op = todo.pop()
        if op.get_name() in head or op.get_type_name() == "Result":
            continue
        head[op.get_name()] = op
        todo += [i.get_node() for out in op.outputs() for i in out.get_target_inputs()]
    if not any(op.get_type_name() == "Softmax" for op in head.values()):
        raise ExportError("the ops after the PCA projection hold no Softmax: not a folded RALI scorer head")
    return list(head.values())


# ---------------------------------------------------------------- validation in OpenVINO


def validate_ir(path: Path, spec: ExportSpec, pixels: np.ndarray, reference: dict) -> dict:
    """Interface, then shapes, then values, run by OpenVINORunner; every failure collected, then raised."""
    from rali_edge.export.onnx import run_and_check
    from rali_edge.runtime.openvino_runner import OpenVINORunner

    try:
        runner = OpenVINORunner(path)
    except NotRunnableHere:
        raise
    except Exception as exc:  # OpenVINO and the metadata reader raise several types; report the reason
        raise ValidationFailed([f"{path}: OpenVINO cannot load it: {exc}"]) from exc
    failures = _check_interface(runner.compiled, spec)
    return run_and_check(runner, f"{path} in OpenVINO", spec, pixels, reference, failures, runtime="openvino",
                         inference_precision=runner.inference_precision)


def _check_interface(model: ov.CompiledModel, spec: ExportSpec) -> list[str]:
    """The input's name, element type and shape, and the outputs' names and types, against the spec."""
    want_shape = [-1 if spec.dynamic else spec.batch, *spec.input_shape(1)[1:]]
    want = f"{spec.input_name} {OV_TYPES[spec.input_dtype]} {want_shape}"
    got = [f"{','.join(sorted(p.get_names()))} {p.get_element_type().get_type_name()} "
           f"{[d.get_length() if d.is_static else -1 for d in p.get_partial_shape()]}" for p in model.inputs]
    failures = [] if got == [want] else [f"inputs are {got}, expected [{want}]"]
    names = sorted(n for p in model.outputs for n in p.get_names())
    if names != sorted(spec.output_names):
        failures.append(f"outputs are {names}, expected {sorted(spec.output_names)}")
    failures += [f"output {sorted(p.get_names())} is {p.get_element_type().get_type_name()}, expected f32"
                 for p in model.outputs if p.get_element_type().get_type_name() != "f32"]
    return failures
