"""Rows of a batch run: (path, score, error), in numpy for the engines and in Arrow for Ray and parquet.

`error` is "" when the image was scored; otherwise it says why not and `score` is NaN here (null in
Arrow, empty in CSV, null in JSON). The Arrow schema is fixed (`arrow_schema`): a batch without errors
must not turn the error column into a null-typed one, or parquet parts would disagree.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

import numpy as np

COLUMNS = ("path", "score", "error")


@dataclass
class ScoredRows:
    paths: list[str]
    scores: np.ndarray                     # float64, NaN where `errors` is not empty
    errors: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.scores = np.asarray(self.scores, dtype=np.float64)
        if not self.errors:
            self.errors = [""] * len(self.paths)
        if not len(self.paths) == len(self.scores) == len(self.errors):
            raise ValueError(f"rows disagree: {len(self.paths)} paths, {len(self.scores)} scores, "
                             f"{len(self.errors)} errors")

    def __len__(self) -> int:
        return len(self.paths)

    @classmethod
    def empty(cls) -> ScoredRows:
        return cls([], np.zeros(0), [])

    @classmethod
    def concat(cls, parts: Iterable[ScoredRows]) -> ScoredRows:
        parts = list(parts)
        if not parts:
            return cls.empty()
        return cls([p for r in parts for p in r.paths], np.concatenate([r.scores for r in parts]),
                   [e for r in parts for e in r.errors])

    def failures(self) -> list[tuple[str, str]]:
        """(path, reason) of every row that has an error."""
        return [(p, e) for p, e in zip(self.paths, self.errors) if e]

    def sorted_by_path(self) -> ScoredRows:
        order = sorted(range(len(self.paths)), key=self.paths.__getitem__)
        return ScoredRows([self.paths[i] for i in order], self.scores[order], [self.errors[i] for i in order])

    def score_of(self) -> dict[str, float]:
        """path -> score of the rows without an error."""
        return {p: float(s) for p, s, e in zip(self.paths, self.scores, self.errors) if not e}


def arrow_schema(metadata: dict[str, str] | None = None):
    import pyarrow as pa

    fields = [pa.field("path", pa.string(), nullable=False), pa.field("score", pa.float64()),
              pa.field("error", pa.string(), nullable=False)]
    return pa.schema(fields, metadata=metadata)


def to_arrow(rows: ScoredRows, metadata: dict[str, str] | None = None):
    import pyarrow as pa

    scores = pa.array(rows.scores, pa.float64(), mask=np.asarray([bool(e) for e in rows.errors], dtype=bool))
    return pa.Table.from_arrays([pa.array(rows.paths, pa.string()), scores, pa.array(rows.errors, pa.string())],
                                schema=arrow_schema(metadata))


def from_arrow(table) -> ScoredRows:
    scores = table.column("score").to_numpy(zero_copy_only=False)
    return ScoredRows(table.column("path").to_pylist(), np.asarray(scores, np.float64),
                      table.column("error").to_pylist())
