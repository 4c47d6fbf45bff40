"""Inputs of a batch run -> one sorted, de-duplicated list of image locations, and reading their bytes.

An input is one of:
- an image file (kept as given, whatever its suffix, so a broken file becomes a row with its reason);
- a folder, searched recursively for `data.meta.IMAGE_EXTENSIONS` (hidden entries skipped);
- a list file, chosen by suffix (`LIST_READERS`): `.txt` one location per line (blank lines and `#`
  comments skipped), `.csv` / `.parquet` with a `path` column. Relative entries are relative to the
  list file's folder. Listed locations are not checked up front: a missing one is a row with a reason;
- a URI (`s3://`, `gs://`, `file://`, any scheme pyarrow.fs knows) of a file or a folder.

A missing input or an input that yields nothing is an `InputFileError` (exit 2) before any work.
"""

from __future__ import annotations

import csv
import functools
import os
from collections.abc import Callable, Iterable
from pathlib import Path

from rali_edge.data.meta import IMAGE_EXTENSIONS
from rali_edge.errors import ConfigError, ImageLoadError, InputFileError

PATH_COLUMN = "path"


def is_uri(location: str) -> bool:
    return "://" in location


def expand_inputs(items: Iterable[str | os.PathLike]) -> list[str]:
    """Every image location the inputs name, sorted and without duplicates."""
    found: set[str] = set()
    for item in items:
        text = str(item)
        found.update(_expand_uri(text) if is_uri(text) else _expand_local(Path(text)))
    if not found:
        raise InputFileError("no inputs given")
    return sorted(found)


def _expand_local(path: Path) -> list[str]:
    if path.is_dir():
        images = [str(p) for p in _walk(path)]
        if not images:
            raise InputFileError(f"{path}: no images found (looked recursively for "
                                 f"{', '.join(sorted(IMAGE_EXTENSIONS))})")
        return images
    if not path.exists():
        raise InputFileError(f"{path}: no such file or folder")
    reader = LIST_READERS.get(path.suffix.lower())
    if reader is None:
        return [str(path)]
    listed = [_resolve(entry, path.parent) for entry in reader(path)]
    if not listed:
        raise InputFileError(f"{path}: the list file names no images")
    return listed


def _walk(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*")
            if p.suffix.lower() in IMAGE_EXTENSIONS and p.is_file()
            and not any(part.startswith(".") for part in p.relative_to(folder).parts)]


def _resolve(entry: str, base: Path) -> str:
    return entry if is_uri(entry) or os.path.isabs(entry) else str(base / entry)


def _read_txt(path: Path) -> list[str]:
    lines = (line.strip() for line in path.read_text(encoding="utf-8").splitlines())
    return [line for line in lines if line and not line.startswith("#")]


def _read_csv(path: Path) -> list[str]:
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if PATH_COLUMN not in (reader.fieldnames or []):
            raise InputFileError(f"{path}: a list file needs a {PATH_COLUMN!r} column, has {reader.fieldnames}")
        return [row[PATH_COLUMN].strip() for row in reader if row[PATH_COLUMN].strip()]


def _read_parquet(path: Path) -> list[str]:
    pq = _pyarrow("parquet", f"reading the list file {path}")
    try:
        table = pq.read_table(path, columns=[PATH_COLUMN])
    except Exception as exc:  # pyarrow raises ArrowInvalid, KeyError, OSError: name the file either way
        raise InputFileError(f"{path}: cannot read a {PATH_COLUMN!r} column ({exc})") from None
    return [p for p in table.column(PATH_COLUMN).to_pylist() if p]


# The suffixes that make a file a list of images rather than an image.
LIST_READERS: dict[str, Callable[[Path], list[str]]] = {".txt": _read_txt, ".csv": _read_csv,
                                                        ".parquet": _read_parquet}


def _expand_uri(uri: str) -> list[str]:
    fs_mod = _pyarrow("fs", f"reading {uri}")
    fs, root = _filesystem(uri)
    scheme = uri.split("://", 1)[0]
    info = fs.get_file_info(root)
    if info.type == fs_mod.FileType.NotFound:
        raise InputFileError(f"{uri}: no such file or folder")
    if info.type == fs_mod.FileType.File:
        return [uri]
    selector = fs_mod.FileSelector(root, recursive=True)
    images = [f"{scheme}://{i.path}" for i in fs.get_file_info(selector)
              if i.type == fs_mod.FileType.File and Path(i.path).suffix.lower() in IMAGE_EXTENSIONS
              and not any(part.startswith(".") for part in Path(i.path).relative_to(root).parts)]
    if not images:
        raise InputFileError(f"{uri}: no images found under it")
    return images


def read_bytes(location: str) -> bytes:
    """The file's bytes; any failure is an ImageLoadError naming it (a row, never a crash)."""
    try:
        if is_uri(location):
            fs, path = _filesystem(location)
            with fs.open_input_stream(path) as stream:
                return stream.read()
        with open(location, "rb") as f:
            return f.read()
    except FileNotFoundError:
        raise ImageLoadError(location, "file not found") from None
    except IsADirectoryError:
        raise ImageLoadError(location, "is a directory, not an image file") from None
    except (OSError, ValueError) as exc:   # permissions, network, pyarrow's ArrowIOError (an OSError)
        raise ImageLoadError(location, f"cannot read: {exc}") from None


@functools.lru_cache(maxsize=16)
def _filesystem_for(prefix: str):
    fs_mod = _pyarrow("fs", f"reading {prefix}")
    try:
        return fs_mod.FileSystem.from_uri(prefix)[0]
    except (OSError, ValueError) as exc:   # unknown scheme, missing credentials, pyarrow built without it
        raise InputFileError(f"{prefix}: no filesystem for it ({exc})") from None


def _filesystem(uri: str):
    """(filesystem, path inside it); one filesystem per scheme and bucket, reused."""
    scheme, rest = uri.split("://", 1)
    if scheme == "file":
        return _filesystem_for("file:///"), rest
    bucket = rest.split("/", 1)[0]
    return _filesystem_for(f"{scheme}://{bucket}"), rest


def _pyarrow(module: str, why: str):
    import importlib

    try:
        return importlib.import_module(f"pyarrow.{module}")
    except ImportError:
        raise ConfigError(f"{why} needs pyarrow: pip install 'rali-edge[ray]' (or pyarrow)") from None
