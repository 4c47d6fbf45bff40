"""ExecuTorch programs (.pte) of the folded scorer: capture, lowering to XNNPACK, metadata, and
validation in ExecuTorch's own runtime.

Path: `torch.export` -> `to_edge_transform_and_lower(ep, partitioner=[XnnpackPartitioner()])` ->
`.to_executorch()`. Two exact graph rewrites first (executorch_partition.delegable_shapes) let XNNPACK
take the views and no-op expands it would otherwise refuse. The FP16 and INT8 variants are made by
executorch_fp16 and executorch_int8 before capture.
What XNNPACK has no kernel for (LayerNorm, the class-token select, the head's L2 norm) runs in
ExecuTorch's portable kernels between partitions; `partition_summary` reports them.

Metadata is written twice: as a constant method `rali_edge_metadata` inside the program (a JSON
string, readable by any ExecuTorch runtime with `execute("rali_edge_metadata")`), and as a sidecar
`<artifact>.json` for tools that cannot load the program. Runners read the program's copy first.

A dynamic batch axis is bounded (DYNAMIC_MAX_BATCH): ExecuTorch plans its memory for the largest
batch (about 1.8 MB per image of the bound for a ViT-B/16). Runners run larger batches in chunks of
the bound, which they read back from the program's input shape.

executorch and torchao are imported inside the functions: `import rali_edge` stays light.
"""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import ExportError, ValidationFailed
from rali_edge.export.executorch_partition import delegable_shapes, partition_summary

if TYPE_CHECKING:
    from torch import nn

    from rali_edge.export.spec import ExportSpec

EXTRA = "pip install 'rali-edge[executorch]'"
METADATA_METHOD = "rali_edge_metadata"
SIDECAR_SUFFIX = ".json"
# The upper bound of a dynamic batch axis: the benchmark's speed batch, a phone-sized arena.
DYNAMIC_MAX_BATCH = 8
# ExecuTorch ScalarType codes (runtime/core/portable_type/scalar_type.h) of the dtypes we write.
SCALAR_TYPES = {0: "uint8", 5: "float16", 6: "float32"}


# ---------------------------------------------------------------- availability


def executorch_available() -> tuple[bool, str]:
    """(True, "") when ExecuTorch and torchao (its quantizer's base) can be imported here."""
    for module in ("executorch", "torchao"):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not installed ({EXTRA})"
    return True, ""


def require_executorch() -> None:
    ok, why = executorch_available()
    if not ok:
        raise ExportError(f"the executorch format needs ExecuTorch: {why}")


def sidecar_path(artifact: str | Path) -> Path:
    p = Path(artifact)
    return p.with_name(p.name + SIDECAR_SUFFIX)


# ---------------------------------------------------------------- capture and lowering


def dynamic_shapes(spec: ExportSpec, max_batch: int | None = DYNAMIC_MAX_BATCH):
    """torch.export's dynamic_shapes for the batch axis (None for a fixed batch)."""
    from torch.export import Dim

    if not spec.dynamic:
        return None
    return ({0: Dim("batch", min=1, max=max_batch)},) if max_batch else ({0: Dim("batch", min=1)},)


def capture(module: nn.Module, spec: ExportSpec, max_batch: int | None = DYNAMIC_MAX_BATCH):
    """torch.export of `module` on the spec's example input (non-strict: the towers use Python control flow)."""
    import torch

    example = (spec.example_inputs(),)
    return torch.export.export(module, example, dynamic_shapes=dynamic_shapes(spec, max_batch), strict=False)


def lower(exported, props: dict[str, str]) -> tuple[bytes, dict]:
    """XNNPACK-delegated program bytes, with `props` as the constant method METADATA_METHOD."""
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    edge = to_edge_transform_and_lower(exported, transform_passes=[delegable_shapes],
                                       partitioner=[XnnpackPartitioner()],
                                       constant_methods={METADATA_METHOD: json.dumps(props, sort_keys=True)})
    details = partition_summary(edge.exported_program().graph_module)
    program = edge.to_executorch()
    plan = next(p for p in program.executorch_program.execution_plan if p.name == "forward")
    details["planned_memory_bytes"] = int(sum(plan.non_const_buffer_sizes))
    return program.buffer, details


# ---------------------------------------------------------------- validation in ExecuTorch


def validate_program(path: Path, spec: ExportSpec, pixels: np.ndarray, reference: dict[str, np.ndarray],
                     props: dict[str, str]) -> dict:
    """Interface, then metadata, then shapes, then values, run by ExecuTorch's runtime; every failure
    is collected before ValidationFailed is raised."""
    from rali_edge.export.onnx import run_and_check
    from rali_edge.runtime.executorch_runner import ExecuTorchRunner

    try:
        runner = ExecuTorchRunner(path)
    except Exception as exc:  # ExecuTorch raises RuntimeError with a status code; name the file
        raise ValidationFailed([f"{path}: ExecuTorch cannot load it: {exc}"]) from exc
    failures = check_interface(runner.program.metadata("forward"), spec)
    if read_program_metadata(runner.program) != props:
        failures.append(f"{path}: the metadata read back from the program differs from what was written")
    return run_and_check(runner, f"{path} in ExecuTorch", spec, pixels, reference, failures, runtime="executorch")


def check_interface(meta, spec: ExportSpec) -> list[str]:
    """One uint8 input of the spec's shape (the batch: fixed, or the dynamic bound); float32 outputs."""
    failures = []
    if meta.num_inputs() != 1:
        return [f"the program takes {meta.num_inputs()} inputs, expected 1"]
    info = meta.input_tensor_meta(0)
    dtype = SCALAR_TYPES.get(info.dtype(), f"scalar type {info.dtype()}")
    if dtype != spec.input_dtype:
        failures.append(f"input dtype is {dtype}, expected {spec.input_dtype}")
    want = spec.input_shape(spec.batch if spec.batch is not None else DYNAMIC_MAX_BATCH)
    if tuple(info.sizes()) != tuple(want):
        failures.append(f"input shape (batch: its bound) is {list(info.sizes())}, expected {list(want)}")
    if meta.num_outputs() != len(spec.output_names):
        failures.append(f"the program has {meta.num_outputs()} outputs, expected {len(spec.output_names)}")
    for i in range(min(meta.num_outputs(), len(spec.output_names))):
        out = SCALAR_TYPES.get(meta.output_tensor_meta(i).dtype(), "other")
        if out != "float32":
            failures.append(f"output {spec.output_names[i]!r} is {out}, expected float32")
    return failures


def read_program_metadata(program) -> dict[str, str] | None:
    """The props stored in the program's METADATA_METHOD; None when the program has none."""
    if METADATA_METHOD not in program.method_names:
        return None
    (text,) = program.load_method(METADATA_METHOD).execute([])
    try:
        props = json.loads(text)
    except (TypeError, json.JSONDecodeError) as exc:
        raise ExportError(f"the program's {METADATA_METHOD} is not a JSON object ({exc})") from exc
    return props if isinstance(props, dict) else None
