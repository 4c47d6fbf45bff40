"""Core ML export: an mlprogram converted from torch.export, with an RGB ImageType input.

The ImageType hands the graph `pixel * 1/255` (one global scale); the folded module (input_kind
"unit") does the per-channel mean/std inside its patch-embedding convolution, exactly. torch.export
is used because torch.jit.trace of open_clip's ViT fails to convert (REFERENCE section 7).

Conversion and saving work on Linux; prediction needs macOS (see runtime/coreml_runner.py). On Linux
the saved package's spec is checked instead (`check_package`).
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING

from rali_edge._atomic import atomic_path
from rali_edge.errors import ExportError, ValidationFailed
from rali_edge.export.spec import ExportSpec

if TYPE_CHECKING:
    from torch import nn

MAX_DYNAMIC_BATCH = 64
# Our precision names -> coremltools.precision attribute names.
COMPUTE_PRECISION = {"fp16": "FLOAT16", "fp32": "FLOAT32"}


def export_coreml(folded: nn.Module, spec: ExportSpec, path: str | Path, precision: str, props: dict[str, str]) -> Path:
    """Convert and save `<name>.mlpackage` atomically; `precision` is "fp16" or "fp32" compute."""
    if spec.input_kind != "unit":
        raise ExportError(f"Core ML export needs a folded module with input_kind 'unit', got {spec.input_kind!r}")
    mlmodel = _convert(folded, spec, precision)
    for key, value in props.items():
        mlmodel.user_defined_metadata[key] = value
    mlmodel.short_description = "RALI image-quality score in [1, 5] (rali-edge)"
    with atomic_path(path) as tmp:
        mlmodel.save(str(tmp))
    return Path(path)


def _convert(folded: nn.Module, spec: ExportSpec, precision: str):
    import coremltools as ct
    import torch

    dynamic = {"pixels": {0: torch.export.Dim("batch", min=1, max=MAX_DYNAMIC_BATCH)}} if spec.dynamic else None
    try:
        # Dynamic batch needs an example batch >= 2, or the exporter specialises the axis to 1.
        program = torch.export.export(folded, (spec.example_inputs(),), dynamic_shapes=dynamic)
        program = program.run_decompositions({})
    except Exception as exc:  # torch.export raises many internal types; keep the message
        raise ExportError(f"torch.export failed: {type(exc).__name__}: {exc}") from exc
    s = spec.image_size
    batch = ct.RangeDim(1, MAX_DYNAMIC_BATCH, default=1) if spec.dynamic else spec.batch
    image = ct.ImageType(
        name=spec.input_name,
        shape=(batch, 3, s, s),
        scale=1.0 / 255.0,
        bias=[0.0, 0.0, 0.0],
        color_layout=ct.colorlayout.RGB,
    )
    try:
        return ct.convert(
            program,
            inputs=[image],
            outputs=[ct.TensorType(name=n) for n in spec.output_names],
            convert_to="mlprogram",
            compute_precision=getattr(ct.precision, COMPUTE_PRECISION[precision]),
            minimum_deployment_target=ct.target.iOS16,
        )
    except Exception as exc:  # coremltools raises ValueError/NotImplementedError/IndexError...
        raise ExportError(f"coremltools conversion failed: {type(exc).__name__}: {exc}") from exc


# ---------------------------------------------------------------- spec checks (run on Linux)


def compute_precision_of(spec_proto) -> str:
    """"fp16" when the program computes in FLOAT16 anywhere, else "fp32"."""
    from coremltools.proto import MIL_pb2

    main = spec_proto.mlProgram.functions["main"]
    block = main.block_specializations[main.opset]
    types = Counter(
        MIL_pb2.DataType.Name(out.type.tensorType.dataType) for op in block.operations for out in op.outputs
    )
    return "fp16" if types["FLOAT16"] > 0 else "fp32"


def check_package(path: str | Path, spec: ExportSpec, precision: str, props: dict[str, str]) -> dict:
    """Check a saved package: ImageType RGB input and size, output names, precision, metadata."""
    import coremltools as ct

    model = ct.models.MLModel(str(path), skip_model_load=True)
    proto = model.get_spec()
    failures: list[str] = []
    inputs = list(proto.description.input)
    if [i.name for i in inputs] != [spec.input_name]:
        failures.append(f"inputs are {[i.name for i in inputs]}, expected [{spec.input_name!r}]")
    elif inputs[0].type.WhichOneof("Type") != "imageType":
        failures.append(f"input {spec.input_name!r} is a {inputs[0].type.WhichOneof('Type')}, expected an imageType")
    else:
        img = inputs[0].type.imageType
        color = ct.proto.FeatureTypes_pb2.ImageFeatureType.ColorSpace.Name(img.colorSpace)
        if (img.width, img.height, color) != (spec.image_size, spec.image_size, "RGB"):
            failures.append(f"input image is {img.width}x{img.height} {color}, expected {spec.image_size}² RGB")
    outputs = [o.name for o in proto.description.output]
    if outputs != list(spec.output_names):
        failures.append(f"outputs are {outputs}, expected {list(spec.output_names)}")
    got_precision = compute_precision_of(proto)
    if got_precision != precision:
        failures.append(f"compute precision is {got_precision}, expected {precision}")
    meta = dict(model.user_defined_metadata)
    wrong = [k for k, v in props.items() if meta.get(k) != v]
    if wrong:
        failures.append(f"user_defined_metadata differs or lacks {wrong}")
    if failures:
        raise ValidationFailed([f"{path}: {f}" for f in failures])
    return {"spec_checked": True, "compute_precision": got_precision, "prediction_checked": False,
            "prediction_note": "Core ML prediction needs macOS; spec checked only"}
