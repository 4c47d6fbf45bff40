"""Where rows go: chosen by the --out suffix through `WRITERS`; every file is written atomically.

- `.parquet`: a FOLDER of part files (`part-<run>-<n>.parquet`, each written atomically every
  `rows_per_part` rows, so a killed run keeps every part already written). `resume=True` reads the paths
  already there and the run scores only the rest; parts written for another artifact are refused.
  The run metadata is the parquet schema metadata of every part.
- `.csv`: one file (columns path, score, error), written at the end, sorted by path; the metadata in a
  sidecar `<out>.meta.json`.
- `.json`: one file `{"metadata": {...}, "rows": [{"path", "score", "error"}]}`, sorted by path.

Every writer has `existing` (rows already in the output, for --resume), `write(rows)`, `close()` (all
rows given) and `abort()` (the run stopped: keep what is complete, never a half-written file).
"""

from __future__ import annotations

import csv
import io
import math
import re
import secrets
import shutil
import time
from pathlib import Path

from rali_edge._atomic import atomic_path, atomic_write_json, atomic_write_text
from rali_edge.batch.rows import COLUMNS, ScoredRows, from_arrow, to_arrow
from rali_edge.errors import ConfigError, UnsupportedOptionError

ROWS_PER_PART = 10_000
SHA_KEY = "rali_edge.artifact_sha256"


class ParquetPartsWriter:
    resumable = True

    def __init__(self, out: Path, metadata: dict[str, str], resume: bool = False,
                 rows_per_part: int = ROWS_PER_PART):
        if out.exists() and not out.is_dir():
            raise ConfigError(f"--out {out}: is a file; a .parquet output is a folder of part files")
        parts = sorted(out.glob("part-*.parquet")) if out.is_dir() else []
        if parts and not resume:
            raise ConfigError(f"--out {out}: already holds {len(parts)} part files of an earlier run; "
                              "add --resume to finish that run, or choose a new --out")
        self.out, self.metadata, self.rows_per_part = out, metadata, max(1, rows_per_part)
        self.existing = self._read_parts(parts)
        self._buffer: list[ScoredRows] = []
        self._buffered = 0
        self._run = f"{time.strftime('%Y%m%d-%H%M%S')}-{secrets.token_hex(3)}"
        self._written = 0
        if resume:   # temporaries of parts a killed run was writing: never complete, never read
            for stale in out.glob(".part-*.tmp"):
                shutil.rmtree(stale, ignore_errors=True)

    def _read_parts(self, parts: list[Path]) -> ScoredRows:
        import pyarrow.parquet as pq

        rows = []
        for part in parts:
            table = pq.read_table(part)
            sha = (table.schema.metadata or {}).get(SHA_KEY.encode(), b"").decode()
            if sha != self.metadata[SHA_KEY]:
                raise ConfigError(f"--resume: {part} holds scores of another artifact (sha256 {sha or 'none'}, "
                                  f"this one is {self.metadata[SHA_KEY]}); choose a new --out")
            rows.append(from_arrow(table))
        return ScoredRows.concat(rows)

    def write(self, rows: ScoredRows) -> None:
        self._buffer.append(rows)
        self._buffered += len(rows)
        if self._buffered >= self.rows_per_part:
            self._flush()

    def _flush(self) -> None:
        import pyarrow.parquet as pq

        if not self._buffered:
            return
        table = to_arrow(ScoredRows.concat(self._buffer), self.metadata)
        with atomic_path(self.out / f"part-{self._run}-{self._written:05d}.parquet") as tmp:
            pq.write_table(table, tmp)
        self._written += 1
        self._buffer, self._buffered = [], 0

    def close(self) -> None:
        self.out.mkdir(parents=True, exist_ok=True)   # an output with nothing left to score still exists
        self._flush()

    def abort(self) -> None:
        self._flush()   # every buffered row is complete: keeping it saves work on --resume


class _WholeFileWriter:
    """Collects every row, writes one file at the end (nothing at all when the run stops)."""

    resumable = False

    def __init__(self, out: Path, metadata: dict[str, str], resume: bool = False, rows_per_part: int = 0):
        if resume:
            raise UnsupportedOptionError(f"--resume needs a .parquet output (a folder of parts), not {out.name}")
        self.out, self.metadata = out, metadata
        self.existing = ScoredRows.empty()
        self._rows: list[ScoredRows] = []

    def write(self, rows: ScoredRows) -> None:
        self._rows.append(rows)

    def abort(self) -> None:
        self._rows = []

    def close(self) -> None:
        self._write(ScoredRows.concat(self._rows).sorted_by_path())


class CsvWriter(_WholeFileWriter):
    def _write(self, rows: ScoredRows) -> None:
        buf = io.StringIO()
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        writer.writerows((p, "" if e else repr(float(s)), e) for p, s, e in zip(rows.paths, rows.scores, rows.errors))
        atomic_write_json(self.out.with_name(self.out.name + ".meta.json"), self.metadata)
        atomic_write_text(self.out, buf.getvalue())


class JsonWriter(_WholeFileWriter):
    def _write(self, rows: ScoredRows) -> None:
        items = [{"path": p, "score": None if e or not math.isfinite(s) else float(s), "error": e}
                 for p, s, e in zip(rows.paths, rows.scores, rows.errors)]
        atomic_write_json(self.out, {"metadata": self.metadata, "rows": items})


WRITERS: dict[str, type] = {".parquet": ParquetPartsWriter, ".csv": CsvWriter, ".json": JsonWriter}


def writer_class(out: Path) -> type:
    if re.match(r"^[A-Za-z][A-Za-z0-9+.-]+:/", str(out)):   # a URI (Path has already folded its "//")
        raise UnsupportedOptionError(f"--out {out}: outputs are local paths (a shared filesystem on a cluster); "
                                     "URIs are for inputs")
    cls = WRITERS.get(out.suffix.lower())
    if cls is None:
        raise ConfigError(f"--out {out}: unsupported extension {out.suffix!r}; use one of {sorted(WRITERS)}")
    return cls
