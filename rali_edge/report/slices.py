"""Where does the drift come from? The same figures per slice of the images: per value of a meta field
(`distortion_class`, `severity`, `source`, ... see report/images.py), per dataset when several meta
files are given (`dataset`), and per quintile of the ground truth (`gt_quintile`).

Every slice row has its count; a slice of fewer than SMALL_SLICE images is marked `small` (its
figures are noisy: read its interval). Correlations need a ground truth and at least 3 images with
non-constant scores; otherwise they are None with the reason. The default slice fields are every
field with 2 to MAX_DEFAULT_VALUES values and at least 2 images per value on average (identifiers
such as `id` drop out): the meta fields, `dataset` when there are several meta files, `gt_quintile`
when there is a ground truth (these two names win over meta keys of the same name). `--slice-by`
may name any field that exists.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from rali_edge.errors import ConfigError, DataError
from rali_edge.report.bootstrap import DEFAULT_BOOTSTRAP, Bootstrap, Interval, PairedBootstrap
from rali_edge.report.images import ImageTable

DATASET_FIELD = "dataset"
QUALITY_FIELD = "gt_quintile"
QUALITY_BINS = 5
SMALL_SLICE = 20
MAX_DEFAULT_VALUES = 50
MISSING = "(none)"


def _value_orders() -> dict[str, tuple[str, ...]]:
    from rali_edge.data.meta import SEVERITIES

    return {"severity": SEVERITIES}   # fields whose values have a natural order (others: numeric, then text)


@dataclass
class SliceRow:
    field: str
    value: str
    n: int
    small: bool
    mean_change: float                 # mean of artifact - float scores
    mean_abs_change: float
    float_plcc: float | None = None
    plcc: float | None = None
    dplcc: float | None = None
    dplcc_ci: Interval | None = None
    float_srcc: float | None = None
    srcc: float | None = None
    dsrcc: float | None = None
    dsrcc_ci: Interval | None = None
    reason: str | None = None          # why correlations or intervals are None

    def to_dict(self) -> dict:
        return asdict(self)


def quality_bins(gt: np.ndarray, bins: int = QUALITY_BINS) -> list[str]:
    """Each image's ground-truth quantile bin as a label "Q<i> <low>-<high>" (its bin's range)."""
    edges = np.quantile(gt, np.linspace(0, 1, bins + 1)[1:-1])
    index = np.searchsorted(edges, gt, side="right")
    labels = {}
    for b in np.unique(index):
        members = gt[index == b]
        labels[b] = f"Q{b + 1} {members.min():.2f}-{members.max():.2f}"
    return [labels[b] for b in index]


def field_values(table: ImageTable) -> dict[str, list[str | None]]:
    """Every field a report can slice `table` by -> each image's value."""
    out = dict(table.fields)
    out[DATASET_FIELD] = list(table.dataset)
    if table.gt is not None and len(table) > 0:
        out[QUALITY_FIELD] = quality_bins(table.gt)
    return out


def _distinct(values: Sequence) -> int:
    return len(set(values))


def default_fields(values: dict[str, list]) -> list[str]:
    """Fields with 2 to MAX_DEFAULT_VALUES values and at least 2 images per value on average (so an
    identifier such as `id` is left out); quality bins and datasets last."""
    keep = [k for k, v in values.items() if 2 <= _distinct(v) <= min(MAX_DEFAULT_VALUES, len(v) / 2)]
    return sorted(keep, key=lambda k: (k == QUALITY_FIELD, k == DATASET_FIELD, k))


def parse_slice_by(slice_by: str | Sequence[str] | None) -> tuple[str, ...] | None:
    """`--slice-by` (a comma list, or several) -> field names; None means every field."""
    if slice_by is None:
        return None
    items = slice_by.split(",") if isinstance(slice_by, str) else [p for s in slice_by for p in str(s).split(",")]
    names = tuple(dict.fromkeys(i.strip() for i in items if i.strip()))
    if not names:
        raise ConfigError(f"--slice-by {slice_by!r}: no field named")
    return names


def choose_fields(requested: tuple[str, ...] | None, values: dict[str, list]) -> list[str]:
    """The fields to slice by: the requested ones (each must exist), or the default ones."""
    if requested is None:
        return default_fields(values)
    unknown = [f for f in requested if f not in values]
    if unknown:
        raise ConfigError(f"--slice-by {', '.join(unknown)}: no such field in the data; fields that exist: "
                          + ", ".join(sorted(values)))
    return list(requested)


def check_slice_by(slice_by: str | Sequence[str] | None, metas: Sequence[str | os.PathLike],
                   image_root) -> tuple[str, ...] | None:
    """Parse `--slice-by` and check, from the meta files alone (before any image is read or model run),
    that every named field exists. ConfigError naming the fields that do."""
    from rali_edge.data.meta import read_metas
    from rali_edge.report.images import record_fields

    requested = parse_slice_by(slice_by)
    if requested is not None:
        by_dataset = read_metas(metas, image_root)
        records = [r for rs in by_dataset.values() for r in rs]
        names = set(record_fields(records)) | {DATASET_FIELD}
        if all(r.score is not None for r in records):
            names.add(QUALITY_FIELD)
        choose_fields(requested, {n: [] for n in names})
    return requested


def _sort_key(field: str, value: str, orders: dict[str, tuple[str, ...]]):
    order = orders.get(field, ())
    try:
        number = float(value)
    except ValueError:
        number = float("inf")
    return (value == MISSING, order.index(value) if value in order else len(order), number, value)


class _SliceReference:
    """The float model on one slice: its correlations and its bootstrap, drawn once and shared by every
    artifact (one slice's resamples in memory at a time)."""

    def __init__(self, field: str, value: str, ref: np.ndarray, gt: np.ndarray | None, config: Bootstrap):
        from rali_edge.metrics import plcc, srcc

        self.field, self.value, self.ref, self.gt = field, value, ref, gt
        self.reason: str | None = None
        if gt is None:
            self.reason = "no ground truth"
        elif ref.size < 3:
            self.reason = f"{ref.size} image(s): too few for a correlation"
        else:
            try:
                self.plcc, self.srcc = plcc(ref, gt), srcc(ref, gt)
            except DataError as exc:
                self.reason = str(exc)
            else:
                self.boot = PairedBootstrap(ref, gt, config)

    def row(self, got: np.ndarray) -> SliceRow:
        from rali_edge.metrics import plcc, srcc

        change = got - self.ref
        row = SliceRow(field=self.field, value=self.value, n=int(got.size), small=got.size < SMALL_SLICE,
                       mean_change=float(change.mean()), mean_abs_change=float(np.abs(change).mean()),
                       reason=self.reason)
        if self.reason is not None:
            return row
        row.float_plcc, row.float_srcc = self.plcc, self.srcc
        try:
            row.plcc, row.srcc = plcc(got, self.gt), srcc(got, self.gt)
        except DataError as exc:
            row.reason = str(exc)
            return row
        row.dplcc, row.dsrcc = row.plcc - self.plcc, row.srcc - self.srcc
        found = self.boot.compare(got)
        row.dplcc_ci, row.dsrcc_ci = found["dplcc_ci"], found["dsrcc_ci"]
        if row.dplcc_ci is None or row.dsrcc_ci is None:
            row.reason = "interval undefined in most resamples (constant scores)"
        return row


def slice_rows(float_scores, artifacts: Sequence, table: ImageTable, fields: Sequence[str],
               config: Bootstrap = DEFAULT_BOOTSTRAP) -> list[list[SliceRow]]:
    """For each artifact's scores (in order), one SliceRow per (field, value) of `fields`, values in
    their natural order."""
    ref = np.asarray(float_scores, np.float64)
    scores = [np.asarray(a, np.float64) for a in artifacts]
    values, orders = field_values(table), _value_orders()
    rows: list[list[SliceRow]] = [[] for _ in scores]
    for name in fields:
        labels = np.array([MISSING if v is None else v for v in values[name]], dtype=object)
        for value in sorted(set(labels.tolist()), key=lambda v: _sort_key(name, v, orders)):
            mask = labels == value
            reference = _SliceReference(name, value, ref[mask], None if table.gt is None else table.gt[mask], config)
            for out, got in zip(rows, scores):
                out.append(reference.row(got[mask]))
    return rows
