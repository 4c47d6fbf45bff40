"""The Ray engine on a local 2-CPU Ray (started once by this module, and shut down by it).

The same scores as the local engine to 1e-6 on a folder with corrupt files; every file exactly once;
an interrupted run finished with --resume on Ray; the defaults never give actors every CPU; the
cluster this module started is left running by rali-edge; `validate --engine ray` gives the local
engine's drift numbers.
"""

from __future__ import annotations

import functools
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from rali_edge.cli.app import app

pytestmark = pytest.mark.slow
runner = CliRunner()
CPUS = 2


@pytest.fixture(scope="module")
def ray_cluster():
    ray = pytest.importorskip("ray", reason="needs the ray extra: pip install 'rali-edge[ray]'")
    ray.init(address="local", num_cpus=CPUS, include_dashboard=False)   # a new one, whatever else runs here
    yield ray
    ray.shutdown()   # this module started it


@pytest.fixture(scope="module")
def photos(tmp_path_factory) -> Path:
    """16 tiny pictures (nested, JPEG and PNG) and 3 corrupt files."""
    root = tmp_path_factory.mktemp("ray_photos")
    base = [data.astronaut(), data.chelsea(), data.coffee(), data.rocket()]
    for i in range(16):
        sub = root / ("x" if i % 2 else "y/z")
        sub.mkdir(parents=True, exist_ok=True)
        Image.fromarray(base[i % 4][: 50 + 5 * i, : 80]).save(sub / f"p{i:02d}.{'jpg' if i % 3 else 'png'}")
    good = (root / "x" / "p01.jpg").read_bytes()
    (root / "x" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    (root / "x" / "zero.jpg").write_bytes(b"")
    (root / "y" / "text.png").write_text("a text file named .png")
    return root


def _read(out: Path) -> dict[str, tuple[float, str]]:
    import pyarrow.parquet as pq

    table = pq.read_table(out)
    paths = table.column("path").to_pylist()
    assert len(paths) == len(set(paths)), "a path appears twice"
    return {p: (s, e) for p, s, e in zip(paths, table.column("score").to_pylist(), table.column("error").to_pylist())}


def _assert_same_scores(a: dict, b: dict) -> None:
    assert a.keys() == b.keys()
    assert {p for p, (_, e) in a.items() if e} == {p for p, (_, e) in b.items() if e}
    good = [p for p, (_, e) in a.items() if not e]
    np.testing.assert_allclose([a[p][0] for p in good], [b[p][0] for p in good], atol=1e-6, rtol=0)


def test_int8_onnx_on_ray_equals_the_local_engine(ray_cluster, int8_case, photos, tmp_path):
    model = int8_case["int8"].path
    local, on_ray = tmp_path / "local.parquet", tmp_path / "ray.parquet"
    res = runner.invoke(app, ["score", str(model), str(photos), "--out", str(local)])
    assert res.exit_code == 1, res.output
    res = runner.invoke(app, ["score", str(model), str(photos), "--engine", "ray", "--out", str(on_ray),
                              "--batch-size", "4"])
    assert res.exit_code == 1, res.output
    assert "3 of 19 inputs could not be scored" in res.output
    for name in ("truncated.jpg", "zero.jpg", "text.png"):
        assert name in res.output
    rows = _read(on_ray)
    assert len(rows) == 19 and sum(bool(e) for _, e in rows.values()) == 3
    assert rows[str(photos / "x" / "zero.jpg")] == (None, "empty file (0 bytes)")
    _assert_same_scores(_read(local), rows)
    assert ray_cluster.is_initialized(), "rali-edge shut down a Ray session it did not start"


def test_a_bundle_travels_to_the_actors_and_resume_finishes_an_interrupted_run(ray_cluster, scorer_case, photos,
                                                                               tmp_path):
    """A folder artifact as bytes; a local run stopped after its first parts, then finished on Ray."""
    import pyarrow.parquet as pq

    from rali_edge.batch.api import score_collection
    from rali_edge.batch.local import LocalEngine
    from rali_edge.batch.writers import ParquetPartsWriter

    bundle, out, full = scorer_case["bundle"], tmp_path / "resumed.parquet", tmp_path / "full.parquet"
    parts = functools.partial(ParquetPartsWriter, rows_per_part=4)

    class Killed(Exception):
        pass

    engine = LocalEngine(batch_size=4, progress=False)
    writer_calls = []

    def sink(*args, **kw):
        writer = parts(*args, **kw)
        original = writer.write

        def write(rows):
            writer_calls.append(len(rows))
            if len(writer_calls) > 2:
                raise Killed   # the third batch never lands: as if the process died there
            original(rows)
        writer.write = write
        return writer

    with pytest.raises(Killed):
        score_collection(bundle, [photos], engine, sink, out=out)
    assert len(pq.read_table(out)) == 8
    res = runner.invoke(app, ["score", str(bundle), str(photos), "--engine", "ray", "--out", str(out), "--resume"])
    assert res.exit_code == 1 and "8 of them already there" in res.output, res.output
    res = runner.invoke(app, ["score", str(bundle), str(photos), "--out", str(full)])
    assert res.exit_code == 1, res.output
    resumed = _read(out)
    assert len(resumed) == 19
    _assert_same_scores(_read(full), resumed)


def test_default_actors_leave_cpu_for_ray_data_and_too_many_are_refused(ray_cluster, scorer_case, photos):
    from rali_edge.batch.artifact import ArtifactFiles
    from rali_edge.batch.ray_engine import IO_CPUS, RayEngine

    assert ray_cluster.cluster_resources()["CPU"] == CPUS
    with RayEngine(progress=False).session(ArtifactFiles.of(scorer_case["onnx"])) as session:
        assert session.actors * session.engine.threads_per_actor <= CPUS - IO_CPUS
        rows = list(session.score([str(p) for p in sorted((photos / "x").glob("p*.jpg"))]))
    assert sum(len(r) for r in rows) == len(list((photos / "x").glob("p*.jpg")))
    for args in (["--actors", "2"], ["--threads-per-actor", "2"]):
        res = runner.invoke(app, ["score", str(scorer_case["onnx"]), str(photos), "--engine", "ray", *args])
        assert res.exit_code == 2 and ("starve" in res.output or "not enough" in res.output), res.output


def test_validate_on_ray_gives_the_local_engine_numbers(ray_cluster, int8_case, tmp_path):
    root = int8_case["root"]
    images = json.loads(int8_case["test"].read_text())
    shutil.copy(root / images[0]["image"], tmp_path / "broken.png")
    (tmp_path / "broken.png").write_bytes((tmp_path / "broken.png").read_bytes()[:40])
    meta = tmp_path / "test_with_bad.json"
    meta.write_text(json.dumps(images + [{**images[0], "image": str(tmp_path / "broken.png")}]))
    args = [str(int8_case["int8"].path), "--bundle", str(int8_case["bundle"]), "--meta", str(meta),
            "--image-root", str(root), "--max-plcc-drop", "0.5"]
    res_local = runner.invoke(app, ["validate", *args, "--out", str(tmp_path / "local")])
    res_ray = runner.invoke(app, ["validate", *args, "--out", str(tmp_path / "ray"), "--engine", "ray"])
    assert res_local.exit_code == res_ray.exit_code == 1, res_ray.output   # the broken image is a failure
    local = json.loads((tmp_path / "local" / "report.json").read_text())
    on_ray = json.loads((tmp_path / "ray" / "report.json").read_text())
    assert local["failures"] == on_ray["failures"] and local["bad_images"] == on_ray["bad_images"]
    assert [(r["artifact"], r["dataset"], r["n"], r["status"]) for r in local["rows"]] == \
           [(r["artifact"], r["dataset"], r["n"], r["status"]) for r in on_ray["rows"]]
    for a, b in zip(local["rows"], on_ray["rows"]):
        for key in ("plcc", "srcc", "dplcc", "dsrcc", "score_mae", "max_abs_change"):
            assert b[key] == pytest.approx(a[key], abs=1e-6), key
    artifact_rows = [r for r in on_ray["rows"] if r["artifact"] == int8_case["int8"].path.name]
    assert artifact_rows and all("ray engine" in r["embedding_reason"] for r in artifact_rows)
    res = runner.invoke(app, ["validate", *args, "--engine", "ray", "--device-preprocess", "jpeg90"])
    assert res.exit_code == 2 and "--engine local" in res.output
