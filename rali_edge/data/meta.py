"""Readers for image-quality metadata: Data-DeQA-Score meta JSON files and plain image folders.

A meta file (REFERENCE section 4) is a JSON list of records, or an object holding that list under
`results` or `data`. Each record needs `image` (a path relative to the image root); the score
fields `gt_score` (raw MOS) and `gt_score_norm` (MOS rescaled to [1, 5]) are optional, so that
Q-Insight degradation metas (`image`, `distortion_class`, `severity`) read too; within one file
either every record has `gt_score_norm` or none has. `std`, `std_norm`, `id`, `distortion` and any
other keys are kept in `Record.extras`.

Images a meta file names but that are missing on disk do not fail reading: the loader reports them
when scoring; `check_images_exist` lists them up front for callers that want to know early.
"""

from __future__ import annotations

import csv
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rali_edge.data.images import BadImage
from rali_edge.errors import InputFileError

# Q-Insight's degradation vocabulary (REFERENCE section 3); "null" means "no distortion".
DISTORTION_CLASSES = ("noise", "compression", "blur", "darken", "null")
SEVERITIES = ("slight", "moderate", "obvious", "serious", "catastrophic", "null")

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif"})

SCORE_MIN, SCORE_MAX = 1.0, 5.0
_SCORE_TOL = 1e-3  # rounding slack around [1, 5] in published files

_KNOWN_KEYS = frozenset({"image", "gt_score", "gt_score_norm", "distortion_class", "severity", "source"})


@dataclass(frozen=True)
class Record:
    image: str  # as written in the meta file (relative to the image root)
    path: Path  # absolute path on disk
    score: float | None  # gt_score_norm, [1, 5]
    gt_score: float | None
    distortion_class: str | None = None
    severity: str | None = None
    source: str | None = None
    dataset: str = ""  # meta file stem, or folder name
    # std, std_norm, id, distortion and unknown keys, as read; not part of equality or hashing
    extras: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)


def read_meta(meta_path: str | Path, image_root: str | Path) -> list[Record]:
    """Read one meta JSON file. Raises `InputFileError` naming the file (and record) when malformed."""
    meta_path = Path(meta_path)
    root = _existing_dir(image_root, "image root")
    items = _load_items(meta_path)
    dataset = meta_path.stem
    records = [_record(meta_path, i, item, root, dataset) for i, item in enumerate(items)]
    with_score = [r.score is not None for r in records]
    if any(with_score) and not all(with_score):
        missing = with_score.index(False)
        raise InputFileError(
            f"{meta_path}: record {missing} has no gt_score_norm while other records have one; "
            "a meta file must score all its records or none"
        )
    return records


def read_metas(meta_paths: Iterable[str | Path], image_root: str | Path) -> dict[str, list[Record]]:
    """Read several meta files sharing one image root, keyed by dataset name (the file stem)."""
    meta_paths = [Path(p) for p in meta_paths]
    if not meta_paths:
        raise InputFileError("no meta files given")
    out: dict[str, list[Record]] = {}
    seen: dict[str, Path] = {}
    for path in meta_paths:
        name = path.stem
        if name in seen:
            raise InputFileError(
                f"two meta files share the dataset name {name!r}: {seen[name]} and {path}; "
                "rename one so that results stay distinguishable"
            )
        seen[name] = path
        out[name] = read_meta(path, image_root)
    return out


def read_image_folder(folder: str | Path, scores_csv: str | Path | None = None) -> list[Record]:
    """Every image under `folder` (recursive, hidden files skipped, sorted by relative path).

    With `scores_csv` (header `image,score`, paths relative to `folder`, scores in [1, 5]) the
    records carry those scores; folder images without a CSV row keep `score=None`, and a row that
    names a missing image is an error.
    """
    root = _existing_dir(folder, "image folder")
    images = sorted(
        p.relative_to(root).as_posix()
        for p in root.rglob("*")
        if p.suffix.lower() in IMAGE_EXTENSIONS
        and p.is_file()
        and not any(part.startswith(".") for part in p.relative_to(root).parts)
    )
    if not images:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise InputFileError(f"{root}: no images found (looked recursively for {exts})")
    scores = _read_scores_csv(Path(scores_csv), root) if scores_csv is not None else {}
    unlisted = sorted(set(scores) - set(images))
    if unlisted:
        raise InputFileError(
            f"{scores_csv}: {unlisted[0]} (and {len(unlisted) - 1} more) is not an image the folder "
            f"reader picks up (hidden, or an extension outside {', '.join(sorted(IMAGE_EXTENSIONS))})"
        )
    return [
        Record(image=rel, path=root / rel, score=scores.get(rel), gt_score=scores.get(rel), dataset=root.name)
        for rel in images
    ]


def check_images_exist(records: Iterable[Record]) -> list[BadImage]:
    """The records whose image file is missing (or not a file), as `BadImage`s, in input order."""
    bad = []
    for r in records:
        if not r.path.exists():
            bad.append(BadImage(str(r.path), "file not found"))
        elif not r.path.is_file():
            bad.append(BadImage(str(r.path), "not a regular file"))
    return bad


# ---------------------------------------------------------------------------------------------


def _existing_dir(path: str | Path, what: str) -> Path:
    path = Path(path).expanduser().absolute()
    if not path.exists():
        raise InputFileError(f"{path}: {what} not found")
    if not path.is_dir():
        raise InputFileError(f"{path}: {what} is not a folder")
    return path


def _load_items(meta_path: Path) -> Sequence[Any]:
    if not meta_path.exists():
        raise InputFileError(f"{meta_path}: meta file not found")
    if not meta_path.is_file():
        raise InputFileError(f"{meta_path}: meta path is not a file")
    try:
        text = meta_path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputFileError(f"{meta_path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None
    if not text.strip():
        raise InputFileError(f"{meta_path}: empty file")
    try:
        obj = json.loads(text)
    except json.JSONDecodeError as exc:
        raise InputFileError(f"{meta_path}: invalid JSON at line {exc.lineno}, column {exc.colno}: {exc.msg}") from None
    items = _unwrap(meta_path, obj)
    if not items:
        raise InputFileError(f"{meta_path}: the meta file holds no records")
    return items


def _unwrap(meta_path: Path, obj: Any) -> Sequence[Any]:
    if isinstance(obj, list):
        return obj
    if isinstance(obj, dict):
        keys = [k for k in ("results", "data") if k in obj]
        if len(keys) == 2:
            raise InputFileError(f"{meta_path}: holds both 'results' and 'data'; cannot tell which is the record list")
        if keys and isinstance(obj[keys[0]], list):
            return obj[keys[0]]
        if keys:
            raise InputFileError(f"{meta_path}: '{keys[0]}' must be a list of records, got {type(obj[keys[0]]).__name__}")
    raise InputFileError(
        f"{meta_path}: expected a list of records or an object with a 'results' or 'data' list, "
        f"got {type(obj).__name__}"
    )


def _record(meta_path: Path, index: int, item: Any, root: Path, dataset: str) -> Record:
    where = f"{meta_path}: record {index}"
    if not isinstance(item, dict):
        raise InputFileError(f"{where}: expected an object, got {type(item).__name__}")
    image = item.get("image")
    if not isinstance(image, str) or not image.strip():
        raise InputFileError(f"{where}: missing or empty 'image' (a path relative to the image root)")
    gt_score = _number(where, item, "gt_score")
    score = _number(where, item, "gt_score_norm")
    if score is not None and not (SCORE_MIN - _SCORE_TOL <= score <= SCORE_MAX + _SCORE_TOL):
        raise InputFileError(
            f"{where}: gt_score_norm={score} is outside [1, 5]; rescale MOS with "
            "4 * (mos - min) / (max - min) + 1"
        )
    return Record(
        image=image,
        path=root / image,
        score=score,
        gt_score=gt_score,
        distortion_class=_vocab(where, item, "distortion_class", DISTORTION_CLASSES),
        severity=_vocab(where, item, "severity", SEVERITIES),
        source=_optional_str(where, item, "source"),
        dataset=dataset,
        extras={k: v for k, v in item.items() if k not in _KNOWN_KEYS},
    )


def _number(where: str, item: Mapping[str, Any], key: str) -> float | None:
    value = item.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise InputFileError(f"{where}: '{key}' must be a number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise InputFileError(f"{where}: '{key}' is {value}, not a finite number")
    return value


def _optional_str(where: str, item: Mapping[str, Any], key: str) -> str | None:
    value = item.get(key)
    if value is None or isinstance(value, str):
        return value
    raise InputFileError(f"{where}: '{key}' must be a string, got {value!r}")


def _vocab(where: str, item: Mapping[str, Any], key: str, allowed: tuple[str, ...]) -> str | None:
    value = _optional_str(where, item, key)
    if value is not None and value not in allowed:
        raise InputFileError(f"{where}: {key}={value!r} is not one of {', '.join(allowed)}")
    return value


def _read_scores_csv(csv_path: Path, root: Path) -> dict[str, float]:
    if not csv_path.is_file():
        raise InputFileError(f"{csv_path}: scores CSV not found")
    with open(csv_path, newline="", encoding="utf-8-sig") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        if "image" not in header or "score" not in header:
            raise InputFileError(f"{csv_path}: the header must name the columns 'image' and 'score', got {header}")
        scores: dict[str, float] = {}
        for row in reader:
            line = reader.line_num
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            rel = Path(row["image"]).as_posix()
            if not rel or rel == ".":
                raise InputFileError(f"{csv_path}, line {line}: empty image name")
            if rel in scores:
                raise InputFileError(f"{csv_path}, line {line}: {rel} is listed twice")
            scores[rel] = _csv_score(csv_path, line, row["score"])
            if not (root / rel).is_file():
                raise InputFileError(f"{csv_path}, line {line}: image {rel} not found under {root}")
    if not scores:
        raise InputFileError(f"{csv_path}: no rows")
    return scores


def _csv_score(csv_path: Path, line: int, text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise InputFileError(f"{csv_path}, line {line}: score {text!r} is not a number") from None
    if not math.isfinite(value):
        raise InputFileError(f"{csv_path}, line {line}: score is {value}, not a finite number")
    if not (SCORE_MIN - _SCORE_TOL <= value <= SCORE_MAX + _SCORE_TOL):
        raise InputFileError(
            f"{csv_path}, line {line}: score {value} is outside [1, 5]; rescale with "
            "4 * (s - min) / (max - min) + 1"
        )
    return value
