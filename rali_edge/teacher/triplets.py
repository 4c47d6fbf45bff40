"""Image-text-score triplets: the teacher's output and the aligner's input (one JSON line each).

The file is append-only and flushed per line, so a crashed or interrupted `describe` run resumes:
`TripletWriter.done_keys()` says which (image, seed) pairs are already there.
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rali_edge.errors import DataError

_FIELDS = ("image", "gt_score_norm", "seed", "text", "rating", "raw", "teacher")


@dataclass(frozen=True)
class Triplet:
    image: str  # as written in the meta file (relative to the image root)
    gt_score_norm: float  # ground-truth score on [1, 5]
    seed: int  # sampling seed that produced this text
    text: str  # the reasoning text (last <think>...</think>, stripped)
    rating: float | None  # the teacher's own rating from <answer>; None for the template describer
    raw: str  # the full completion
    teacher: str  # model id or path, or "template"

    def key(self) -> tuple[str, int]:
        return (self.image, self.seed)

    def to_json(self) -> str:
        return json.dumps(asdict(self), ensure_ascii=False)


@dataclass
class DescribeStats:
    """What one describe run did; `malformed` completions are logged to `malformed_path`."""

    total: int = 0  # (image, seed) pairs asked for
    skipped: int = 0  # already in the output (resumed)
    written: int = 0
    malformed: int = 0
    out_path: Path | None = None
    malformed_path: Path | None = None
    teacher: str = ""
    notes: dict[str, Any] = field(default_factory=dict)


def _number(value: Any, name: str, where: str, allow_none: bool = False) -> float | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise DataError(f"{where}: field {name!r} must be a finite number, got {value!r}")
    return float(value)


def triplet_from_dict(obj: Any, where: str) -> Triplet:
    """Validate one decoded JSON line; `where` names the file and line in errors."""
    if not isinstance(obj, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in _FIELDS if k not in obj]
    if missing:
        raise DataError(f"{where}: missing field(s) {', '.join(missing)}")
    for name in ("image", "text", "raw", "teacher"):
        if not isinstance(obj[name], str):
            raise DataError(f"{where}: field {name!r} must be a string, got {obj[name]!r}")
    if not obj["image"] or not obj["text"].strip():
        raise DataError(f"{where}: fields 'image' and 'text' must not be empty")
    seed = obj["seed"]
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise DataError(f"{where}: field 'seed' must be an integer, got {seed!r}")
    return Triplet(
        image=obj["image"],
        gt_score_norm=_number(obj["gt_score_norm"], "gt_score_norm", where),  # type: ignore[arg-type]
        seed=seed,
        text=obj["text"],
        rating=_number(obj["rating"], "rating", where, allow_none=True),
        raw=obj["raw"],
        teacher=obj["teacher"],
    )


def read_triplets(path: str | os.PathLike[str]) -> list[Triplet]:
    """Read a triplets JSONL file; DataError naming the line for anything malformed.

    Blank lines are allowed. Nothing is skipped silently: one bad line fails the whole read.
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: triplets file not found")
    out: list[Triplet] = []
    with open(path, encoding="utf-8") as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            where = f"{path}:{lineno}"
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: not valid JSON ({exc.msg})") from exc
            out.append(triplet_from_dict(obj, where))
    if not out:
        raise DataError(f"{path}: no triplets in the file")
    return out


class TripletWriter:
    """Append-only JSONL writer, one flushed line per triplet, resumable by (image, seed).

    A line cut off by a crash (no final newline) is removed on open, and counted in
    `repaired_bytes` so the caller can say so; complete malformed lines raise DataError.
    """

    def __init__(self, path: str | os.PathLike[str]):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.repaired_bytes = _drop_partial_last_line(self.path)
        self._done: set[tuple[str, int]] = set()
        if self.path.exists() and self.path.stat().st_size > 0:
            self._done = {t.key() for t in read_triplets(self.path)}
        self._f = open(self.path, "a", encoding="utf-8")

    def done_keys(self) -> set[tuple[str, int]]:
        return set(self._done)

    def write(self, triplet: Triplet) -> None:
        self._f.write(triplet.to_json() + "\n")
        self._f.flush()
        self._done.add(triplet.key())

    def close(self) -> None:
        if not self._f.closed:
            self._f.flush()
            os.fsync(self._f.fileno())
            self._f.close()

    def __enter__(self) -> TripletWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _drop_partial_last_line(path: Path) -> int:
    if not path.exists():
        return 0
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return 0
    keep = data.rfind(b"\n") + 1
    with open(path, "r+b") as f:
        f.truncate(keep)
    return len(data) - keep
