"""Atomic writes leave either the complete new output or the untouched old one, never a half."""

from __future__ import annotations

import json

import pytest

from rali_edge._atomic import atomic_path, atomic_write_json, atomic_write_text


def test_write_json_round_trip(tmp_path):
    target = atomic_write_json(tmp_path / "r.json", {"a": 1})
    assert json.loads(target.read_text()) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.json"]


def test_failed_file_write_keeps_old_content(tmp_path):
    target = tmp_path / "r.txt"
    atomic_write_text(target, "old")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("crash")
    assert target.read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["r.txt"]


def test_folder_replaced_only_when_complete(tmp_path):
    target = tmp_path / "bundle"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "a").write_text("1")
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.mkdir()
            (tmp / "a").write_text("2")
            raise RuntimeError("crash")
    assert (target / "a").read_text() == "1"
    with atomic_path(target) as tmp:
        tmp.mkdir()
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bundle"]


def test_nothing_written_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError):
        with atomic_path(tmp_path / "x"):
            pass
    assert not (tmp_path / "x").exists()
