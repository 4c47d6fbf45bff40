"""Metadata written into every artifact: how to feed it and what its output means.

Flat string -> string pairs, because that is what ONNX `metadata_props`, Core ML
`user_defined_metadata` and our TensorRT JSON header all hold. Values that are not plain strings
are JSON-encoded. `read_metadata` turns them back into an `ArtifactMetadata`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from rali_edge import __version__
from rali_edge.errors import ExportError

if TYPE_CHECKING:
    from rali_edge.bundle import PreprocessConfig
    from rali_edge.export.spec import ExportSpec

SCORE_RANGE = (1.0, 5.0)
PREFIX = "rali_edge."

# key -> True when the value is JSON-encoded (lists, numbers, null), False when a plain string.
KEYS: dict[str, bool] = {
    "version": False,
    "bundle_checksum": False,
    "format": False,
    "precision": False,
    "input_name": False,
    "input_kind": False,
    "input_dtype": False,
    "input_layout": False,
    "image_size": True,
    "batch": True,
    "resize": True,
    "crop": False,
    "interpolation": False,
    "mean": True,
    "std": True,
    "output_names": True,
    "score_range": True,
    "opset": True,
    "preprocess": False,
}


@dataclass(frozen=True)
class ArtifactMetadata:
    version: str
    bundle_checksum: str
    format: str
    precision: str
    input_name: str
    input_kind: str
    input_dtype: str
    input_layout: str
    image_size: int
    batch: int | None
    resize: int
    crop: str
    interpolation: str
    mean: list[float]
    std: list[float]
    output_names: list[str]
    score_range: list[float]
    opset: int | None
    preprocess: str  # a sentence for people reading the file

    def to_props(self) -> dict[str, str]:
        out = {}
        for key, is_json in KEYS.items():
            value = getattr(self, key)
            out[PREFIX + key] = json.dumps(value) if is_json else str(value)
        return out


def build_metadata(
    preprocess: PreprocessConfig,
    spec: ExportSpec,
    fmt: str,
    precision: str,
    bundle_checksum: str,
    opset: int | None,
) -> ArtifactMetadata:
    from rali_edge.export.spec import INPUT_KINDS

    sentence = (
        f"resize the shortest side to {preprocess.resize} ({preprocess.interpolation}), "
        f"{preprocess.crop} crop {preprocess.image_size}x{preprocess.image_size}, RGB; "
        f"input: {INPUT_KINDS[spec.input_kind]}; mean/std are applied inside the graph"
        + ("" if spec.input_kind != "normalized" else " NOT (apply them before feeding)")
    )
    return ArtifactMetadata(
        version=__version__,
        bundle_checksum=bundle_checksum,
        format=fmt,
        precision=precision,
        input_name=spec.input_name,
        input_kind=spec.input_kind,
        input_dtype=spec.input_dtype,
        input_layout="NHWC RGB" if spec.channels_last else "NCHW RGB",
        image_size=spec.image_size,
        batch=spec.batch,
        resize=preprocess.resize,
        crop=preprocess.crop,
        interpolation=preprocess.interpolation,
        mean=[float(m) for m in preprocess.mean],
        std=[float(s) for s in preprocess.std],
        output_names=list(spec.output_names),
        score_range=list(SCORE_RANGE),
        opset=opset,
        preprocess=sentence,
    )


def read_metadata(props: dict[str, str], where: str) -> ArtifactMetadata:
    """Parse the pairs written by `ArtifactMetadata.to_props`; ExportError names what is missing."""
    values = {}
    missing = [k for k in KEYS if PREFIX + k not in props]
    if missing:
        raise ExportError(f"{where}: not a rali-edge artifact (metadata lacks {', '.join(missing)})")
    for key, is_json in KEYS.items():
        raw = props[PREFIX + key]
        try:
            values[key] = json.loads(raw) if is_json else raw
        except json.JSONDecodeError as exc:
            raise ExportError(f"{where}: metadata {PREFIX + key} is not valid JSON ({exc})") from exc
    return ArtifactMetadata(**values)
