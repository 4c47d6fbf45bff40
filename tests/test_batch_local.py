"""Batch scoring without Ray: inputs, the shared core, the local engine, writers, resume, the CLI.

A folder of real tiny pictures (JPEG and PNG, nested, one hidden) and the corrupt files users have:
a truncated JPEG, a zero-byte file, a text file named .png. Scores are compared with the evaluation
path (load_images + uint8_batch + the runner), which is what `eval` and `validate` run.
"""

from __future__ import annotations

import csv
import functools
import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from rali_edge.cli.app import app
from rali_edge.errors import ConfigError, InputFileError, UnsupportedOptionError

runner = CliRunner()
CORRUPT = {"broken/truncated.jpg": "truncated", "broken/zero.jpg": "empty file (0 bytes)",
           "broken/text.png": "not a recognised image file"}


def make_photo_folder(root: Path) -> Path:
    """12 good pictures (nested, two formats, odd sizes), 3 corrupt files and a hidden picture."""
    base = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for i in range(12):
        arr = base[i % 4][: 60 + 7 * i, : 90 - 3 * i]
        sub = root / ("a" if i % 2 else "b/c")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(arr).save(sub / f"img{i:02d}.{'jpg' if i % 3 else 'png'}")
    (root / "broken").mkdir()
    good = (root / "a" / "img01.jpg").read_bytes()
    (root / "broken" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "broken" / "zero.jpg").write_bytes(b"")
    (root / "broken" / "text.png").write_text("not an image at all")
    Image.fromarray(base[0][:40, :40]).save(root / "a" / ".hidden.png")
    return root


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    return make_photo_folder(tmp_path_factory.mktemp("photos"))


@pytest.fixture(scope="module")
def onnx_model(tmp_path_factory) -> Path:
    from rali_edge.export.api import export_bundle
    from rali_edge.model.tiny import make_random_bundle

    root = tmp_path_factory.mktemp("model")
    bundle = make_random_bundle(root / "bundle", seed=3)
    return export_bundle(bundle, "onnx", precision="fp32", out_dir=root / "exports").path


def _good(photos: Path) -> list[str]:
    return sorted(str(p) for p in photos.rglob("*") if p.is_file() and "broken" not in p.parts
                  and not p.name.startswith("."))


def _reference_scores(model: Path, paths: list[str]) -> np.ndarray:
    """The evaluation path: the one loader, the one preprocessing, the runner, one batch."""
    from rali_edge.data.images import load_images
    from rali_edge.model.preprocess import uint8_batch
    from rali_edge.runtime import open_runner

    r = open_runner(model)
    good, bad = load_images(paths)
    assert not bad
    return r.run(uint8_batch([img for _, img in good], r.preprocess_config()).numpy())["score"]


# ---------------------------------------------------------------- inputs


def test_inputs_folders_lists_and_uris_become_one_sorted_list(photos, tmp_path):
    from rali_edge.batch.inputs import expand_inputs

    everything = _good(photos) + sorted(str(photos / k) for k in CORRUPT)
    assert expand_inputs([photos]) == sorted(everything)          # recursive, hidden skipped
    listed = tmp_path / "list.txt"
    listed.write_text(f"# a comment\n{photos / 'a' / 'img01.jpg'}\n\n../nope.jpg\n")
    as_csv = tmp_path / "list.csv"
    as_csv.write_text(f"path,other\n{photos / 'b/c/img00.png'},x\n")
    got = expand_inputs([listed, as_csv, photos / "a" / "img01.jpg", f"file://{photos / 'b'}"])
    assert got == sorted({str(photos / "a/img01.jpg"), str(tmp_path / "../nope.jpg"), str(photos / "b/c/img00.png"),
                          *(f"file://{p}" for p in _good(photos) if "/b/c/" in p)})


def test_inputs_parquet_list_and_clear_errors(photos, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from rali_edge.batch.inputs import expand_inputs

    pq.write_table(pa.table({"path": _good(photos)[:3]}), tmp_path / "l.parquet")
    assert expand_inputs([tmp_path / "l.parquet"]) == _good(photos)[:3]
    (tmp_path / "empty").mkdir()
    (tmp_path / "nopath.csv").write_text("file\nx.jpg\n")
    (tmp_path / "blank.txt").write_text("# nothing\n")
    for bad, says in ((tmp_path / "missing", "no such file"), (tmp_path / "empty", "no images found"),
                      (tmp_path / "nopath.csv", "'path' column"), (tmp_path / "blank.txt", "names no images"),
                      (f"file://{tmp_path}/missing", "no such file")):
        with pytest.raises(InputFileError, match=says):
            expand_inputs([bad])


# ---------------------------------------------------------------- the core and the local engine


def test_core_rows_match_the_evaluation_path_and_name_every_bad_file(photos, onnx_model):
    from rali_edge.batch.core import BatchScorer, open_artifact_runner
    from rali_edge.data.images import load_image
    from rali_edge.model.preprocess import uint8_batch

    core = BatchScorer(open_artifact_runner(onnx_model))
    good = _good(photos)[:5]
    paths = [good[0], str(photos / "broken/truncated.jpg"), good[1], str(photos / "broken/zero.jpg"),
             *good[2:], str(photos / "broken/text.png"), str(photos / "gone.jpg")]
    rows = core.score(paths)
    assert rows.paths == paths
    reasons = dict(rows.failures())
    assert "truncated" in reasons[str(photos / "broken/truncated.jpg")]
    assert reasons[str(photos / "broken/zero.jpg")] == "empty file (0 bytes)"
    assert "not a recognised image" in reasons[str(photos / "broken/text.png")]
    assert reasons[str(photos / "gone.jpg")] == "file not found"
    ok = [i for i, e in enumerate(rows.errors) if not e]
    assert np.isnan(rows.scores[[i for i in range(len(paths)) if i not in ok]]).all()
    np.testing.assert_allclose(rows.scores[ok], _reference_scores(onnx_model, good), atol=1e-6)
    pixels = uint8_batch([load_image(good[0])], core.preprocess).numpy()[0]   # what eval and validate feed
    np.testing.assert_array_equal(core.prepare(good[0]).pixels, pixels)


@pytest.mark.parametrize("batch_size,threads,ahead", [(1, 1, 0), (4, 3, 2), (64, 2, 1)])
def test_local_engine_keeps_order_and_scores_whatever_the_overlap(photos, onnx_model, batch_size, threads, ahead):
    from rali_edge.batch.artifact import ArtifactFiles
    from rali_edge.batch.inputs import expand_inputs
    from rali_edge.batch.local import LocalEngine
    from rali_edge.batch.rows import ScoredRows

    paths = expand_inputs([photos])
    engine = LocalEngine(batch_size=batch_size, decode_threads=threads, ahead=ahead, progress=False)
    with engine.session(ArtifactFiles.of(onnx_model)) as session:
        parts = list(session.score(paths))
    assert all(len(p) <= batch_size for p in parts)
    rows = ScoredRows.concat(parts)
    assert rows.paths == paths and len(rows.failures()) == len(CORRUPT)
    scores = rows.score_of()
    np.testing.assert_allclose([scores[p] for p in _good(photos)], _reference_scores(onnx_model, _good(photos)),
                               atol=1e-6)


# ---------------------------------------------------------------- artifacts and checksums


def test_artifact_checksum_and_the_copy_a_worker_makes(onnx_model, tmp_path):
    from rali_edge.batch.artifact import ArtifactFiles, materialise

    files = ArtifactFiles.of(onnx_model)
    assert files.sha256 == hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    copy = materialise(files.blobs(), onnx_model.name, files.sha256, tmp_path / "w1")
    assert copy.read_bytes() == onnx_model.read_bytes()
    bundle = ArtifactFiles.of(onnx_model.parent.parent / "bundle")
    again = materialise(bundle.blobs(), "bundle", bundle.sha256, tmp_path / "w2")
    assert ArtifactFiles.of(again).sha256 == bundle.sha256
    blobs = files.blobs()
    blobs[onnx_model.name] = blobs[onnx_model.name][:-1] + b"x"
    with pytest.raises(ConfigError, match="sha256"):
        materialise(blobs, onnx_model.name, files.sha256, tmp_path / "w3")
    with pytest.raises(ConfigError, match="outside"):
        materialise({"../evil": b""}, "evil", "0", tmp_path / "w4")


# ---------------------------------------------------------------- writers and resume


def test_writers_table_and_formats(photos, onnx_model, tmp_path):
    import pyarrow.parquet as pq

    from rali_edge.batch.api import score_collection
    from rali_edge.batch.local import LocalEngine
    from rali_edge.batch.writers import ParquetPartsWriter, writer_class

    engine = LocalEngine(batch_size=3, progress=False)
    small_parts = functools.partial(ParquetPartsWriter, rows_per_part=4)
    s = score_collection(onnx_model, [photos], engine, small_parts, out=tmp_path / "s.parquet")
    # batches of 3, a part once 4 rows wait: 6 + 6 + the last 3
    assert (s.total, s.errors) == (15, 3) and len(list((tmp_path / "s.parquet").glob("part-*.parquet"))) == 3
    table = pq.read_table(tmp_path / "s.parquet")
    meta = {k.decode(): v.decode() for k, v in table.schema.metadata.items()}
    assert meta["rali_edge.artifact_sha256"] == hashlib.sha256(onnx_model.read_bytes()).hexdigest()
    assert meta["rali_edge.format"] == "onnx" and table.schema.field("error").type == "string"
    s = score_collection(onnx_model, [photos], engine, writer_class(tmp_path / "s.csv"), out=tmp_path / "s.csv")
    rows = list(csv.DictReader(open(tmp_path / "s.csv")))
    assert [r["path"] for r in rows] == sorted(table.column("path").to_pylist())
    assert {r["path"]: r["error"] for r in rows if r["error"]} == dict(s.failures)
    assert json.loads((tmp_path / "s.csv.meta.json").read_text()) == meta
    score_collection(onnx_model, [photos], engine, writer_class(tmp_path / "s.json"), out=tmp_path / "s.json")
    doc = json.loads((tmp_path / "s.json").read_text())
    assert doc["metadata"] == meta and [r["score"] is None for r in doc["rows"]].count(True) == 3
    with pytest.raises(ConfigError, match="unsupported extension"):
        writer_class(tmp_path / "s.xlsx")
    with pytest.raises(UnsupportedOptionError, match="local paths"):
        writer_class(Path("s3://bucket/scores.parquet"))
    with pytest.raises(UnsupportedOptionError, match="--resume"):
        writer_class(tmp_path / "s.csv")(tmp_path / "s.csv", meta, resume=True)


class _StopAfter:
    """An engine that stops (as a killed run would) after `n` batches of the wrapped one."""

    def __init__(self, engine, n: int):
        self.engine, self.n = engine, n

    def session(self, files):
        import contextlib

        @contextlib.contextmanager
        def opened():
            with self.engine.session(files) as inner:
                class Stopping:
                    metadata = inner.metadata

                    def score(_, paths):
                        for i, rows in enumerate(inner.score(paths)):
                            if i == self.n:
                                raise KeyboardInterrupt
                            yield rows
                yield Stopping()
        return opened()


def test_interrupted_run_keeps_its_parts_and_resume_finishes_it(photos, onnx_model, tmp_path):
    import pyarrow.parquet as pq

    from rali_edge.batch.api import score_collection
    from rali_edge.batch.local import LocalEngine
    from rali_edge.batch.writers import ParquetPartsWriter

    out = tmp_path / "r.parquet"
    parts = functools.partial(ParquetPartsWriter, rows_per_part=4)
    with pytest.raises(KeyboardInterrupt):
        score_collection(onnx_model, [photos], _StopAfter(LocalEngine(batch_size=2, progress=False), 3), parts, out=out)
    assert len(pq.read_table(out)) == 6   # three batches of two: one full part + the rest flushed on abort
    with pytest.raises(ConfigError, match="--resume"):
        score_collection(onnx_model, [photos], LocalEngine(progress=False), parts, out=out)
    s = score_collection(onnx_model, [photos], LocalEngine(progress=False), parts, out=out, resume=True)
    assert (s.skipped, s.total, s.errors) == (6, 15, 3)
    paths = pq.read_table(out).column("path").to_pylist()
    assert sorted(paths) == sorted(set(paths)) and len(paths) == 15
    bundle = onnx_model.parent.parent / "bundle"   # the same scorer, another artifact
    with pytest.raises(ConfigError, match="another artifact"):
        score_collection(bundle, [photos], LocalEngine(progress=False), parts, out=out, resume=True)


# ---------------------------------------------------------------- the command line


def test_cli_score_exit_codes_and_rows(photos, onnx_model, tmp_path):
    import pyarrow.parquet as pq

    res = runner.invoke(app, ["score", str(onnx_model), str(photos), "--out", str(tmp_path / "s.parquet")])
    assert res.exit_code == 1, res.output
    assert "3 of 15 inputs could not be scored" in res.output and "truncated.jpg" in res.output
    assert len(pq.read_table(tmp_path / "s.parquet")) == 15
    res = runner.invoke(app, ["score", str(onnx_model), *_good(photos)[:2], "--out", str(tmp_path / "ok.json")])
    assert res.exit_code == 0, res.output
    for args, says in ((["--actors", "2"], "--actors applies to another engine"),
                       (["--decode-threads", "2", "--engine", "ray"], "--decode-threads applies"),
                       (["--resume"], "--resume needs --out"),
                       (["--device", "cuda"], "applies to bundles"),
                       (["--batch-size", "0"], "--batch-size 0")):
        res = runner.invoke(app, ["score", str(onnx_model), str(photos), *args])
        assert res.exit_code == 2 and says in res.output, (args, res.output)
    for engine in ("local", "ray"):   # before any work: Ray is not even started
        res = runner.invoke(app, ["score", str(onnx_model), str(tmp_path / "nothing-here"), "--engine", engine])
        assert res.exit_code == 2 and "no such file or folder" in res.output
    bundle = str(onnx_model.parent.parent / "bundle")
    for args, says in ((["--gpus-per-actor", "1", "--engine", "ray"], "needs a bundle and --device cuda"),
                       (["--device", "cuda", "--engine", "ray"], "needs --gpus-per-actor")):
        res = runner.invoke(app, ["score", bundle, str(photos), *args])
        assert res.exit_code == 2 and says in res.output, (args, res.output)


def test_validate_refuses_ray_options_without_the_ray_engine(onnx_model, photos, tmp_path):
    meta = tmp_path / "m.json"
    meta.write_text(json.dumps([{"image": p, "gt_score_norm": 3.0} for p in _good(photos)]))
    res = runner.invoke(app, ["validate", str(onnx_model), "--bundle", str(onnx_model.parent.parent / "bundle"),
                              "--meta", str(meta), "--image-root", str(photos), "--actors", "2"])
    assert res.exit_code == 2 and "--actors applies to another engine" in res.output


def test_ray_engine_without_ray_installed_says_how_to_get_it(monkeypatch):
    import sys

    from rali_edge.batch.ray_engine import ray_connection

    monkeypatch.setitem(sys.modules, "ray", None)   # `import ray` now fails as if it were absent
    with pytest.raises(ConfigError, match=r"rali-edge\[ray\]"):
        with ray_connection(None):
            pass


def test_score_files_library_call_uses_the_same_core(photos, onnx_model):
    from rali_edge.evaluation.score import score_files
    from rali_edge.runtime import open_runner

    paths = [*_good(photos)[:4], str(photos / "broken/zero.jpg")]
    result = score_files(open_runner(onnx_model), paths, batch_size=3)
    assert result.paths == paths[:4] and [f.path for f in result.failures] == paths[4:]
    np.testing.assert_allclose(result.scores, _reference_scores(onnx_model, paths[:4]), atol=1e-6)


def test_ray_actor_plan_never_takes_every_cpu():
    from rali_edge.batch.ray_engine import IO_CPUS, plan_actors

    for cpus in (2, 3, 8, 16, 64):
        for threads in (1, 2, 4):
            if cpus - IO_CPUS < threads:
                continue
            n = plan_actors(cpus, None, threads)
            assert n >= 1 and n * threads <= cpus - IO_CPUS and (n + 1) * threads > cpus - IO_CPUS
    assert plan_actors(2, None, 1) == 1 and plan_actors(16, None, 4) == 3
    assert plan_actors(16, None, 1, cluster_gpus=2, gpus_per_actor=1) == 2
    for args in ((2, 2, 1), (2, None, 2), (1, None, 1), (8, None, 1, 0, 1)):
        with pytest.raises(ConfigError, match="CPU|fit"):
            plan_actors(*args)


def test_ray_connection_shuts_down_only_what_it_started(monkeypatch):
    """No real Ray here: a stand-in module records what ray_connection asks of it."""
    import sys
    import types

    from rali_edge.batch.ray_engine import ray_connection

    calls = []
    fake = types.SimpleNamespace(initialized=False)
    fake.is_initialized = lambda: fake.initialized
    fake.init = lambda **kw: calls.append(("init", kw["address"]))
    fake.shutdown = lambda: calls.append(("shutdown",))
    monkeypatch.setitem(sys.modules, "ray", types.ModuleType("ray"))
    monkeypatch.setattr(sys.modules["ray"], "is_initialized", fake.is_initialized, raising=False)
    monkeypatch.setattr(sys.modules["ray"], "init", fake.init, raising=False)
    monkeypatch.setattr(sys.modules["ray"], "shutdown", fake.shutdown, raising=False)
    with ray_connection("10.0.0.1:6379"):
        pass
    assert calls == [("init", "10.0.0.1:6379"), ("shutdown",)]
    calls.clear()
    fake.initialized = True   # the caller's session (a test fixture, a ray job's driver): left alone
    with ray_connection(None):
        pass
    assert calls == []
