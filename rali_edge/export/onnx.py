"""ONNX export of the folded scorer, and its validation in ONNX Runtime.

Exporter: `torch.onnx.export(dynamo=True)` (torch.export + onnxscript). Chosen because it is the
maintained path (the TorchScript exporter is deprecated), it converts both CLIP implementations
(HF and open_clip) and ORT matches PyTorch to ~1e-6. Its limit: it writes opset 18 and converts
upwards only; below 18 it fails and silently leaves 18. So the capability table accepts 18 and up
only, and the saved model's opset is checked against the request (ExportError if they differ).

Weights are stored inside the single .onnx file (the protobuf limit is 2 GB; larger models are
refused rather than split into external data files).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge._atomic import atomic_path
from rali_edge.errors import ExportError, UnsupportedOptionError, ValidationFailed
from rali_edge.export.spec import ExportSpec

if TYPE_CHECKING:
    import onnx
    from torch import nn

PROTOBUF_LIMIT = 2**31 - 2**20  # stay a MiB under 2 GB for the graph itself
ORT_TYPES = {"uint8": "tensor(uint8)", "float32": "tensor(float)"}  # spec dtype -> ORT's type string


def to_onnx_model(folded: nn.Module, spec: ExportSpec, opset: int) -> onnx.ModelProto:
    """Trace the folded module with the dynamo exporter; checks the opset it actually wrote."""
    import torch

    kwargs = {}
    if spec.dynamic:
        kwargs["dynamic_shapes"] = {"pixels": {0: torch.export.Dim("batch", min=1, max=65536)}}
    try:
        program = torch.onnx.export(
            folded,
            (spec.example_inputs(),),
            dynamo=True,
            opset_version=opset,
            input_names=[spec.input_name],
            external_data=False,
            verbose=False,
            **kwargs,
        )
    except Exception as exc:  # the exporter raises many internal types; keep the message
        raise ExportError(f"torch.onnx.export (dynamo) failed: {type(exc).__name__}: {exc}") from exc
    model = program.model_proto
    check_opset(model, opset)
    rename_outputs(model, list(spec.output_names))
    return model


def rename_outputs(model: onnx.ModelProto, names: list[str]) -> None:
    """Give the graph outputs their interface names.

    Done here rather than by the exporter's output_names, which can collide with an internal value
    of the same name (HF CLIP's folded position `embedding` constant) and break SSA form.
    """
    graph = model.graph
    if len(graph.output) != len(names):
        raise ExportError(f"the graph has {len(graph.output)} outputs, the spec names {len(names)}")
    wanted = set(names)
    current = [o.name for o in graph.output]
    # First move internal values that squat on an interface name out of the way.
    taken = {i.name for i in graph.initializer} | {v for n in graph.node for v in n.output} | {i.name for i in graph.input}
    mapping = {v: f"{v}__internal" for v in taken if v in wanted and v not in current}
    mapping.update({old: new for old, new in zip(current, names) if old != new})
    for init in graph.initializer:
        init.name = mapping.get(init.name, init.name)
    for node in graph.node:
        node.input[:] = [mapping.get(v, v) for v in node.input]
        node.output[:] = [mapping.get(v, v) for v in node.output]
    for value in list(graph.value_info) + list(graph.output):
        value.name = mapping.get(value.name, value.name)


def model_opset(model: onnx.ModelProto) -> int | None:
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    return None


def check_opset(model: onnx.ModelProto, opset: int) -> None:
    got = model_opset(model)
    if got != opset:
        raise ExportError(f"the exporter wrote ONNX opset {got}, not the requested {opset}; nothing was saved")


def simplify(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    return onnxslim.slim(model)


def set_metadata(model: onnx.ModelProto, props: dict[str, str]) -> None:
    import onnx

    keep = [p for p in model.metadata_props if p.key not in props]
    del model.metadata_props[:]
    model.metadata_props.extend(keep)
    for key, value in props.items():
        model.metadata_props.append(onnx.StringStringEntryProto(key=key, value=value))


def save_onnx(model: onnx.ModelProto, path: str | Path) -> Path:
    """Check the model and write it as one self-contained file (atomic)."""
    import onnx

    size = model.ByteSize()
    if size > PROTOBUF_LIMIT:
        raise UnsupportedOptionError(f"{path}: the model is {size / 2**30:.2f} GiB; single-file ONNX is limited to 2 GB")
    try:
        onnx.checker.check_model(model)
    except onnx.checker.ValidationError as exc:
        raise ExportError(f"{path}: the exported graph fails onnx.checker: {exc}") from exc
    with atomic_path(path) as tmp:
        onnx.save_model(model, str(tmp))
    return Path(path)


def export_onnx(
    folded: nn.Module, spec: ExportSpec, path: str | Path, opset: int, props: dict[str, str], simplify_graph: bool = False
) -> Path:
    model = to_onnx_model(folded, spec, opset)
    if simplify_graph:
        model = simplify(model)
        check_opset(model, opset)
    set_metadata(model, props)
    return save_onnx(model, path)


# ---------------------------------------------------------------- validation in ONNX Runtime


def reference_outputs(scorer: nn.Module, preprocess, pixels: np.ndarray) -> dict[str, np.ndarray]:
    """PyTorch float32 outputs of the UNFOLDED scorer on uint8 pixels (the truth to compare with)."""
    import torch

    from rali_edge.model.preprocess import normalize

    with torch.no_grad():
        x = normalize(torch.from_numpy(pixels), preprocess)
        feats = scorer.backbone.encode_image(x)
        return {"score": scorer.head(feats).numpy(), "embedding": scorer.head.project(feats).numpy()}


def validate_session(path: Path, spec: ExportSpec, pixels: np.ndarray, reference: dict[str, np.ndarray]) -> dict:
    """Names, then shapes, then values; every failure is collected before ValidationFailed is raised."""
    from rali_edge.runtime.onnxruntime_runner import OnnxRuntimeRunner

    failures: list[str] = []
    _check_file(path, failures)
    try:
        runner = OnnxRuntimeRunner(path)
    except Exception as exc:  # ORT load errors come in several types; report, do not hide
        raise ValidationFailed(failures + [f"{path}: ONNX Runtime cannot load it: {exc}"]) from exc
    _check_names(runner.session, spec, failures)
    return run_and_check(runner, f"{path} in ONNX Runtime", spec, pixels, reference, failures)


def run_and_check(runner, where: str, spec: ExportSpec, pixels: np.ndarray, reference: dict[str, np.ndarray],
                  failures: list[str], **report) -> dict:
    """Run `pixels` through an opened `runner`, then check output shapes, values against `reference`
    and (dynamic batch) one image alone; `failures` already holds the caller's interface checks. Every
    failure is collected before ValidationFailed is raised (shared by every backend that validates in
    its runtime). Returns the value report, with the caller's `report` entries."""
    outs = {}
    try:
        outs = runner.run(pixels)
    except Exception as exc:  # a graph that runs badly is a validation failure, with the reason
        failures.append(f"running {where} failed: {type(exc).__name__}: {exc}")
    report = {"n_images": int(len(pixels)), "tolerance": spec.tolerance, **report}
    if outs:
        check_shapes(outs, len(pixels), reference, failures)
        report.update(check_values(outs, reference, spec.tolerance, failures))
        if spec.dynamic and len(pixels) > 1:
            check_single(runner, pixels, outs, failures)
    if failures:
        raise ValidationFailed(failures)
    return report


def check_single(runner, pixels: np.ndarray, outs: dict, failures: list[str]) -> None:
    """A dynamic batch axis must also take one image, with the same result as inside a batch
    (shared by every backend that validates in its runtime)."""
    one = runner.run(pixels[:1])
    if one["score"].shape != (1,):
        failures.append(f"batch of 1 gives score shape {list(one['score'].shape)}, expected [1]")
    elif abs(float(one["score"][0]) - float(outs["score"][0])) > 1e-5:
        failures.append("the score of an image alone differs from its score inside a batch by more than 1e-5")


def _check_file(path: Path, failures: list[str]) -> None:
    import onnx

    if path.suffix != ".onnx":
        return  # .ort files are checked by loading them in ORT
    try:
        onnx.checker.check_model(str(path))
    except onnx.checker.ValidationError as exc:
        failures.append(f"{path}: onnx.checker: {exc}")


def _check_names(session, spec: ExportSpec, failures: list[str]) -> None:
    inputs = [(i.name, i.type) for i in session.get_inputs()]
    want_in = [(spec.input_name, ORT_TYPES[spec.input_dtype])]
    if inputs != want_in:
        failures.append(f"inputs are {inputs}, expected {want_in}")
    outputs = [o.name for o in session.get_outputs()]
    if outputs != list(spec.output_names):
        failures.append(f"outputs are {outputs}, expected {list(spec.output_names)}")


def check_shapes(outs, n: int, reference, failures: list[str]) -> None:
    """Each output the reference has: batch n and the reference's other axes (names are checked
    apart, per runtime)."""
    for name, got in outs.items():
        if name not in reference:
            continue
        want = (n,) + tuple(reference[name].shape[1:])
        if tuple(got.shape) != want:
            failures.append(f"output {name!r} has shape {list(got.shape)}, expected {list(want)}")


def check_values(outs, reference, tolerance: float | None, failures: list[str]) -> dict:
    """Max |difference| per output; a failure when over `tolerance` (None: report only)."""
    report = {}
    for name, got in outs.items():
        ref = reference[name]
        if got.shape != ref.shape:
            continue  # already reported by the shape check
        if not np.all(np.isfinite(got)):
            failures.append(f"output {name!r} has non-finite values")
            continue
        diff = float(np.max(np.abs(got.astype(np.float64) - ref.astype(np.float64))))
        report[f"max_abs_diff_{name}"] = diff
        if tolerance is not None and diff > tolerance:
            failures.append(f"output {name!r}: max |difference| {diff:.3g} vs PyTorch exceeds tolerance {tolerance:g}")
    return report
