"""One capability table: which options each export format accepts. Everything else is rejected.

Options are never silently changed: an unsupported combination raises UnsupportedOptionError
naming the format, the option and what is accepted instead.
"""

from __future__ import annotations

from dataclasses import dataclass

from rali_edge.errors import UnsupportedOptionError

PRECISIONS = ("fp32", "fp16", "int8")
QUANTIZE_COMMAND = "rali-edge quantize"


@dataclass(frozen=True)
class FormatCaps:
    """What one export format accepts."""

    suffix: str  # artifact file/folder suffix
    precisions: tuple[str, ...]
    quantized_precisions: tuple[str, ...]  # precisions produced by rali_edge.quantize, not here
    dynamic_batch: bool
    opsets: tuple[int, int] | None  # inclusive range; None: the format has no ONNX opset
    default_opset: int | None
    input_kinds: tuple[str, ...]
    simplify: bool  # onnxslim graph simplification offered
    max_fixed_batch: int | None = None  # largest fixed batch accepted; None: any
    note: str = ""


# The ONNX exporter is torch.onnx.export(dynamo=True): its translation library is written at
# opset 18 and cannot go lower (asking for 17 silently leaves 18), hence the lower bound.
# TensorRT 10.x (JetPack 6 ships 10.3) parses ONNX opsets up to 20.
FORMATS: dict[str, FormatCaps] = {
    "onnx": FormatCaps(
        suffix=".onnx",
        precisions=("fp32", "fp16", "int8"),
        quantized_precisions=("fp16", "int8"),
        dynamic_batch=True,
        opsets=(18, 21),
        default_opset=18,
        input_kinds=("uint8", "normalized"),
        simplify=True,
    ),
    "ort": FormatCaps(
        suffix=".ort",
        precisions=("fp32", "int8"),
        quantized_precisions=("int8",),
        dynamic_batch=True,
        opsets=(18, 21),
        default_opset=18,
        input_kinds=("uint8", "normalized"),
        simplify=True,
        note="ONNX Runtime Mobile format (Android/iOS onnxruntime-mobile packages)",
    ),
    "coreml": FormatCaps(
        suffix=".mlpackage",
        precisions=("fp16", "fp32", "int8"),
        quantized_precisions=("int8",),
        dynamic_batch=True,
        opsets=None,
        default_opset=None,
        input_kinds=("unit",),
        simplify=False,
        max_fixed_batch=1,  # an ImageType input is fed one image per prediction
        note="int8 means INT8 weights (activation calibration needs macOS)",
    ),
    "tensorrt": FormatCaps(
        suffix=".engine",
        precisions=("fp32", "fp16", "int8"),
        quantized_precisions=("int8",),
        dynamic_batch=True,
        opsets=(18, 20),
        default_opset=18,
        input_kinds=("uint8", "normalized"),
        simplify=True,
        note="engines are specific to GPU and TensorRT version: build on the target",
    ),
}


def caps(fmt: str) -> FormatCaps:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise UnsupportedOptionError(
            f"unknown export format {fmt!r}; choose one of {', '.join(FORMATS)}"
        ) from None


def check_options(
    fmt: str,
    precision: str,
    batch: int | None,
    opset: int | None,
    input_kind: str = "uint8",
    simplify: bool = False,
) -> int | None:
    """Check an option combination against the table; return the opset to use (None: no opset)."""
    c = caps(fmt)
    if precision not in PRECISIONS:
        raise UnsupportedOptionError(f"unknown precision {precision!r}; choose one of {', '.join(PRECISIONS)}")
    if precision not in c.precisions:
        raise UnsupportedOptionError(
            f"format {fmt!r} does not offer precision {precision!r} (offered: {', '.join(c.precisions)})"
            + (f"; {c.note}" if c.note else "")
        )
    if batch is None and not c.dynamic_batch:
        raise UnsupportedOptionError(f"format {fmt!r} needs a fixed batch size (--batch N)")
    if batch is not None and batch < 1:
        raise UnsupportedOptionError(f"batch must be a positive integer, got {batch}")
    if batch is not None and c.max_fixed_batch is not None and batch > c.max_fixed_batch:
        raise UnsupportedOptionError(
            f"format {fmt!r} takes a fixed batch of at most {c.max_fixed_batch} (or a dynamic batch), not {batch}"
        )
    if input_kind not in c.input_kinds:
        raise UnsupportedOptionError(
            f"format {fmt!r} does not take input_kind {input_kind!r} (accepted: {', '.join(c.input_kinds)})"
        )
    if simplify and not c.simplify:
        raise UnsupportedOptionError(f"format {fmt!r} has no graph simplification option")
    return _check_opset(fmt, c, opset)


def _check_opset(fmt: str, c: FormatCaps, opset: int | None) -> int | None:
    if c.opsets is None:
        if opset is not None:
            raise UnsupportedOptionError(f"format {fmt!r} has no ONNX opset; drop --opset {opset}")
        return None
    if opset is None:
        return c.default_opset
    lo, hi = c.opsets
    if not lo <= opset <= hi:
        why = (
            " (the dynamo ONNX exporter cannot produce opsets below 18)"
            if opset < lo
            else ""
        )
        raise UnsupportedOptionError(
            f"format {fmt!r} supports ONNX opsets {lo}..{hi}, not {opset}{why}"
        )
    return opset


def needs_quantize(fmt: str, precision: str) -> bool:
    """True when this precision is made by rali_edge.quantize from the float artifact."""
    return precision in caps(fmt).quantized_precisions
