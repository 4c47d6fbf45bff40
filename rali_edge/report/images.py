"""The images a report is about, pooled over its meta files in order: where each is, its dataset, its
ground truth and its meta fields (the categorical ones a report can slice by).

The eval sets (rali_edge.evaluation.evalset) hold the pixels of the images that could be read; the
meta fields come from the same meta files, read again with the one meta reader and matched to the
eval sets record by record (a file changed meanwhile is a DataError, never a silent mismatch).

A meta field is categorical when every value it has is text, an integer or a boolean (floats such as
`std` are not); a record without it has the value None. `distortion_class`, `severity` and `source`
are the reader's own fields; any other key of the records (`distortion`, `level`, ...) counts too.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from rali_edge.errors import DataError

if TYPE_CHECKING:
    from rali_edge.data.meta import Record
    from rali_edge.evaluation.evalset import EvalSet

RECORD_FIELDS = ("distortion_class", "severity", "source")


@dataclass
class ImageTable:
    """One entry per scored image, in the order of the report's concatenated scores."""

    image: list[str]                   # as written in the meta file
    path: list[str]                    # on disk
    dataset: list[str]                 # meta file stem
    gt: np.ndarray | None              # gt_score_norm of every image; None when some dataset has none
    fields: dict[str, list[str | None]] = field(default_factory=dict)   # categorical meta fields, as text

    def __len__(self) -> int:
        return len(self.image)

    def to_dict(self) -> dict:
        return {"image": self.image, "dataset": self.dataset}


def _categorical(value) -> bool:
    return isinstance(value, (str, bool, int))   # bool is an int; floats (std, ...) are not categorical


def record_fields(records: Sequence[Record]) -> dict[str, list[str | None]]:
    """The categorical fields of `records`, as text (None where a record lacks the field)."""
    values: dict[str, list] = {name: [getattr(r, name) for r in records] for name in RECORD_FIELDS}
    extra_keys = sorted({k for r in records for k in r.extras})
    for key in extra_keys:
        values[key] = [r.extras.get(key) for r in records]
    out = {}
    for name, vals in values.items():
        present = [v for v in vals if v is not None]
        if present and all(_categorical(v) for v in present):
            out[name] = [None if v is None else str(v) for v in vals]
    return out


def _kept(records: Sequence[Record], paths: Sequence[str], dataset: str) -> list[Record]:
    """The records whose images the eval set kept, in order (it drops unreadable ones only)."""
    kept, it = [], iter(records)
    for path in paths:
        for r in it:
            if str(r.path) == path:
                kept.append(r)
                break
        else:
            raise DataError(f"{dataset}: {path} is not in its meta file any more (did it change meanwhile?)")
    return kept


def image_table(sets: Sequence[EvalSet], metas: Sequence[str | os.PathLike], image_root) -> ImageTable:
    """The pooled image table of `sets` (loaded from `metas`), with their meta fields."""
    from rali_edge.data.meta import read_metas

    by_dataset = read_metas(metas, image_root)
    records: list[Record] = []
    for s in sets:
        records += _kept(by_dataset[s.dataset], s.paths, s.dataset)
    has_gt = all(s.gt is not None for s in sets)
    return ImageTable(image=[r.image for r in records], path=[str(r.path) for r in records],
                      dataset=[s.dataset for s in sets for _ in range(len(s))],
                      gt=np.concatenate([s.gt for s in sets]) if has_gt else None,
                      fields=record_fields(records))
