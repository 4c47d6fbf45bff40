"""The one benchmark table: a row per (format, precision), with a status and a reason when a number is missing."""

from __future__ import annotations

import enum
import math
from dataclasses import dataclass, field

import numpy as np


class Status(str, enum.Enum):
    OK = "ok"
    VALIDATION_FAILED = "validation_failed"   # exported, but drift vs float is over the limit
    EXPORT_FAILED = "export_failed"
    NOT_RUNNABLE = "not_runnable"             # runtime absent here (Core ML off macOS, TensorRT without GPU)
    SIMULATED = "simulated"                   # accuracy from a simulation of the precision, no runtime here


STATUS_TEXT = {
    Status.OK: "ok",
    Status.VALIDATION_FAILED: "exported, validation failed",
    Status.EXPORT_FAILED: "export failed",
    Status.NOT_RUNNABLE: "not runnable here",
    Status.SIMULATED: "simulated",
}

COLUMNS = ("Format", "Precision", "Status", "Size (MB)", "PLCC", "SRCC", "dPLCC", "dSRCC", "ms/img", "img/s")


@dataclass
class BenchmarkRow:
    """One artifact's figures. None means 'no number': the table then shows why (reason fields)."""

    format: str
    precision: str
    status: Status
    reason: str = ""                        # why the status is not ok, short enough for a table cell
    detail: str = ""                        # the full message behind `reason` (reports print it as a note)
    artifact: str | None = None             # path of the exported file/folder
    size_mb: float | None = None
    plcc: float | None = None               # vs ground truth (mean over datasets)
    srcc: float | None = None
    dplcc: float | None = None              # plcc - float plcc (negative = worse)
    dsrcc: float | None = None
    ms_per_img: float | None = None         # batch 1 median
    img_per_s: float | None = None          # batch N median
    timing_reason: str = ""                 # why there is no timing (not runnable, simulated, failed)
    scores: np.ndarray | None = None        # per-image scores, aligned with the report's float scores
    drift: list[dict] = field(default_factory=list)   # per-dataset drift rows (report/drift.py), as dicts
    timing: dict | None = None              # Latency.to_dict()
    extra: dict = field(default_factory=dict)

    @property
    def status_text(self) -> str:
        text = STATUS_TEXT[self.status]
        return f"{text} ({self.reason})" if self.reason else text

    @property
    def ran(self) -> bool:
        """Whether the artifact itself produced the accuracy figures (not simulated, not failed)."""
        return self.status in (Status.OK, Status.VALIDATION_FAILED)

    def to_dict(self) -> dict:
        return {
            "format": self.format,
            "precision": self.precision,
            "status": self.status.value,
            "status_text": self.status_text,
            "reason": self.reason,
            "detail": self.detail,
            "artifact": self.artifact,
            "size_mb": self.size_mb,
            "plcc": self.plcc,
            "srcc": self.srcc,
            "dplcc": self.dplcc,
            "dsrcc": self.dsrcc,
            "ms_per_img": self.ms_per_img,
            "img_per_s": self.img_per_s,
            "timing_reason": self.timing_reason,
            "timing": self.timing,
            "drift": self.drift,
            "scores": None if self.scores is None else [float(s) for s in self.scores],
            "extra": self.extra,
        }


def short_reason(text: str, limit: int = 60) -> str:
    """The head of a message for a table cell: up to the first ' (' or ';', at most `limit` characters."""
    text = " ".join(str(text).split())
    for sep in (" (", "; "):
        cut = text.find(sep)
        if cut > 0:
            text = text[:cut]
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def notes(rows: list[BenchmarkRow]) -> list[str]:
    """'format precision: full message' for every row whose detail says more than its cell."""
    return [f"{r.format} {r.precision}: {r.detail}" for r in rows if r.detail and r.detail != r.reason]


def _num(value: float | None, fmt: str, missing: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return missing
    return format(value, fmt)


def _missing_accuracy(row: BenchmarkRow) -> str:
    # Rows with no accuracy at all failed or could not run: say that, not a blank.
    return row.reason or STATUS_TEXT[row.status]


def _missing_timing(row: BenchmarkRow) -> str:
    return row.timing_reason or row.reason or STATUS_TEXT[row.status]


def row_cells(row: BenchmarkRow) -> list[str]:
    """The row as display strings, one per COLUMNS entry; a missing number shows its reason."""
    acc = _missing_accuracy(row)
    tim = _missing_timing(row)
    return [
        row.format,
        row.precision,
        row.status_text,
        _num(row.size_mb, ".2f", "—" if row.status is not Status.EXPORT_FAILED else acc),
        _num(row.plcc, ".4f", acc),
        _num(row.srcc, ".4f", acc),
        _num(row.dplcc, "+.4f", acc),
        _num(row.dsrcc, "+.4f", acc),
        _num(row.ms_per_img, ".2f", tim),
        _num(row.img_per_s, ".1f", tim),
    ]


def _md_escape(text: str) -> str:
    return text.replace("|", "\\|").replace("\n", " ")


def markdown_grid(header, rows) -> str:
    """A Markdown table of text cells: every report table goes through here (cells escaped)."""
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(_md_escape(c) for c in row) + " |" for row in rows]
    return "\n".join(lines) + "\n"


def markdown_table(rows: list[BenchmarkRow]) -> str:
    return markdown_grid(COLUMNS, [row_cells(row) for row in rows])


PLAIN_CELL = 22


def _clip(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def plain_table(rows: list[BenchmarkRow]) -> str:
    """Fixed-width text table (for logs and terminals). A reason standing in a number column is
    shortened to keep the table readable; the Status column and the reports carry it in full."""
    cells = [list(COLUMNS)] + [[c if i < 4 else _clip(c, PLAIN_CELL) for i, c in enumerate(row_cells(r))]
                               for r in rows]
    widths = [max(len(c[i]) for c in cells) for i in range(len(COLUMNS))]
    out = []
    for n, line in enumerate(cells):
        out.append(" | ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip())
        if n == 0:
            out.append("-+-".join("-" * w for w in widths))
    return "\n".join(out) + "\n"
