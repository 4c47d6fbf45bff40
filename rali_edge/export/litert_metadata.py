"""rali-edge metadata inside a .tflite file, where LiteRT keeps it: the flatbuffer's `metadata` list.

One entry per key (`rali_edge.version`, `rali_edge.input_kind`, ...; the names of
`ArtifactMetadata.to_props`), its buffer holding the value's UTF-8 bytes, the way ONNX files hold
`metadata_props`. The interpreter ignores entries it does not know; any flatbuffer reader (the
LiteRT schema in ai-edge-litert, the TFLite Support Library on Android) can list them.
"""

from __future__ import annotations

import mmap
import os
from pathlib import Path

from rali_edge.errors import ExportError
from rali_edge.export.metadata import PREFIX


def embed_props(model: bytes, props: dict[str, str]) -> bytes:
    """The .tflite flatbuffer `model` with `props` as its `rali_edge.*` metadata (old ones replaced)."""
    import numpy as np
    from ai_edge_litert import schema_py_generated as schema
    from ai_edge_litert.tools import flatbuffer_utils

    obj = flatbuffer_utils.read_model_from_bytearray(model)
    # Entry names come back as bytes from a parsed model; ours are rewritten, the converter's kept.
    obj.metadata = [m for m in (obj.metadata or []) if not _name(m.name).startswith(PREFIX)]
    obj.buffers = obj.buffers or [schema.BufferT()]   # buffer 0 is the shared empty buffer by convention
    for key, value in props.items():
        buffer = schema.BufferT()
        buffer.data = np.frombuffer(value.encode("utf-8"), dtype=np.uint8)
        obj.buffers.append(buffer)
        entry = schema.MetadataT()
        entry.name, entry.buffer = key, len(obj.buffers) - 1
        obj.metadata.append(entry)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(obj))


def read_props(path: str | os.PathLike[str]) -> dict[str, str]:
    """The `rali_edge.*` metadata of a .tflite file (memory-mapped: the weights are not read)."""
    from ai_edge_litert import schema_py_generated as schema

    path = Path(path)
    try:
        with open(path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as mm:
            if mm[4:8] != b"TFL3":
                raise ExportError(f"{path}: not a LiteRT/TFLite flatbuffer (no TFL3 identifier)")
            model = schema.Model.GetRootAs(mm, 0)
            return {name: _entry_text(model, i) for i, name in _our_entries(model)}
    except (OSError, ValueError) as exc:   # empty or unreadable file: mmap and the parser raise these
        raise ExportError(f"{path}: cannot read its LiteRT metadata ({exc})") from exc


def _our_entries(model) -> list[tuple[int, str]]:
    names = ((i, _name(model.Metadata(i).Name())) for i in range(model.MetadataLength()))
    return [(i, name) for i, name in names if name.startswith(PREFIX)]


def _entry_text(model, index: int) -> str:
    buffer = model.Buffers(model.Metadata(index).Buffer())
    # Byte by byte: values are short, and numpy views would pin the memory map open.
    return bytes(buffer.Data(j) for j in range(buffer.DataLength())).decode("utf-8")


def _name(raw: bytes | str | None) -> str:
    return raw.decode("utf-8") if isinstance(raw, bytes) else (raw or "")
