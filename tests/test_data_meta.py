"""Meta JSON, several metas at once, and image-folder readers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from PIL import Image

from rali_edge.data.images import BadImage
from rali_edge.data.meta import Record, check_images_exist, read_image_folder, read_meta, read_metas
from rali_edge.errors import DataError

RECORDS = [
    {"image": "KONIQ/images/a.jpg", "gt_score": 60.5, "gt_score_norm": 3.42, "std": 0.4, "std_norm": 0.1, "id": 7},
    {"image": "KONIQ/images/b.jpg", "gt_score": 80, "gt_score_norm": 4.5},
]


def _write(path: Path, obj) -> Path:
    path.write_text(obj if isinstance(obj, str) else json.dumps(obj))
    return path


@pytest.mark.parametrize("wrap", [lambda r: r, lambda r: {"results": r}, lambda r: {"data": r}],
                         ids=["list", "results", "data"])
def test_read_meta_forms(tmp_path, wrap):
    meta = _write(tmp_path / "test_koniq_2k.json", wrap(RECORDS))
    records = read_meta(meta, tmp_path)
    assert [r.image for r in records] == ["KONIQ/images/a.jpg", "KONIQ/images/b.jpg"]
    first = records[0]
    assert first.path == tmp_path.absolute() / "KONIQ/images/a.jpg" and first.path.is_absolute()
    assert first.score == 3.42 and first.gt_score == 60.5
    assert first.dataset == "test_koniq_2k"
    assert first.extras == {"std": 0.4, "std_norm": 0.1, "id": 7}
    assert records[1].score == 4.5 and records[1].gt_score == 80.0


def test_degradation_and_source_fields(tmp_path):
    meta = _write(tmp_path / "deg.json", [
        {"image": "a.png", "distortion_class": "blur", "severity": "serious", "source": "s1", "distortion": "motion_blur"},
        {"image": "b.png", "distortion_class": "null", "severity": "null"},
    ])
    a, b = read_meta(meta, tmp_path)
    assert (a.distortion_class, a.severity, a.source, a.score) == ("blur", "serious", "s1", None)
    assert a.extras == {"distortion": "motion_blur"}
    assert (b.distortion_class, b.severity, b.source) == ("null", "null", None)


def test_missing_images_do_not_fail_reading_but_are_reported(tmp_path):
    Image.new("RGB", (4, 4)).save(tmp_path / "here.png")
    (tmp_path / "adir.png").mkdir()
    meta = _write(tmp_path / "m.json", [{"image": n, "gt_score_norm": 3} for n in ("here.png", "gone.png", "adir.png")])
    records = read_meta(meta, tmp_path)
    assert len(records) == 3
    assert check_images_exist(records) == [
        BadImage(str(tmp_path / "gone.png"), "file not found"),
        BadImage(str(tmp_path / "adir.png"), "not a regular file"),
    ]


@pytest.mark.parametrize(
    "content, message",
    [
        ('[{"image": "a.png",', "invalid JSON at line 1, column"),
        ('{\n  "results": [\n    {"image": "a.png"} oops\n  ]\n}', "invalid JSON at line 3"),
        ("", "empty file"),
        ([], "holds no records"),
        ({"results": []}, "holds no records"),
        ({"images": []}, "expected a list of records"),
        ({"results": [], "data": []}, "both 'results' and 'data'"),
        ({"data": {"image": "a.png"}}, "'data' must be a list"),
        ("3", "expected a list of records"),
        ([{"gt_score_norm": 3.0}], "record 0: missing or empty 'image'"),
        ([{"image": ""}], "record 0: missing or empty 'image'"),
        (["a.png"], "record 0: expected an object"),
        ([{"image": "a.png", "gt_score_norm": "high"}], "'gt_score_norm' must be a number"),
        ([{"image": "a.png", "gt_score_norm": True}], "'gt_score_norm' must be a number"),
        ('[{"image": "a.png", "gt_score_norm": NaN}]', "not a finite number"),
        ([{"image": "a.png", "gt_score": "x", "gt_score_norm": 3}], "'gt_score' must be a number"),
        ([{"image": "a.png", "gt_score_norm": 72.0}], "outside [1, 5]"),
        ([{"image": "a.png", "gt_score_norm": 3}, {"image": "b.png"}], "record 1 has no gt_score_norm"),
        ([{"image": "a.png", "distortion_class": "haze"}], "distortion_class='haze' is not one of"),
        ([{"image": "a.png", "severity": "mild"}], "severity='mild' is not one of"),
        ([{"image": "a.png", "source": 5}], "'source' must be a string"),
    ],
)
def test_malformed_meta(tmp_path, content, message):
    meta = _write(tmp_path / "bad.json", content)
    with pytest.raises(DataError) as info:
        read_meta(meta, tmp_path)
    assert message in str(info.value)
    assert str(meta) in str(info.value)


def test_missing_meta_and_root(tmp_path):
    with pytest.raises(DataError, match="meta file not found"):
        read_meta(tmp_path / "nope.json", tmp_path)
    meta = _write(tmp_path / "m.json", RECORDS)
    with pytest.raises(DataError, match="image root not found"):
        read_meta(meta, tmp_path / "no-root")
    with pytest.raises(DataError, match="image root is not a folder"):
        read_meta(meta, meta)


def test_read_metas(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    m1 = _write(tmp_path / "a" / "test_koniq_2k.json", RECORDS)
    m2 = _write(tmp_path / "a" / "test_spaq_2k.json", {"results": RECORDS[:1]})
    out = read_metas([m1, m2], tmp_path)
    assert list(out) == ["test_koniq_2k", "test_spaq_2k"]
    assert len(out["test_koniq_2k"]) == 2 and out["test_spaq_2k"][0].dataset == "test_spaq_2k"
    dup = _write(tmp_path / "b" / "test_koniq_2k.json", RECORDS)
    with pytest.raises(DataError, match="share the dataset name 'test_koniq_2k'"):
        read_metas([m1, dup], tmp_path)
    with pytest.raises(DataError, match="no meta files"):
        read_metas([], tmp_path)


def _folder(tmp_path: Path) -> Path:
    root = tmp_path / "photos"
    (root / "sub").mkdir(parents=True)
    (root / ".hidden").mkdir()
    for rel in ("b.jpg", "a.PNG", "sub/c.webp", ".hidden/x.png", ".y.png"):
        Image.new("RGB", (4, 4)).save(root / rel, format="WEBP" if rel.endswith("webp") else None)
    (root / "notes.txt").write_text("not an image")
    return root


def test_read_image_folder(tmp_path):
    root = _folder(tmp_path)
    records = read_image_folder(root)
    assert [r.image for r in records] == ["a.PNG", "b.jpg", "sub/c.webp"]
    assert all(r.score is None and r.dataset == "photos" and r.path.is_file() for r in records)
    assert records[2] == Record(image="sub/c.webp", path=root.absolute() / "sub/c.webp", score=None,
                                gt_score=None, dataset="photos")


def test_read_image_folder_with_scores(tmp_path):
    root = _folder(tmp_path)
    csv = tmp_path / "scores.csv"
    csv.write_text("image,score\nb.jpg,4.5\nsub/c.webp,2\n")
    records = {r.image: r for r in read_image_folder(root, csv)}
    assert records["b.jpg"].score == 4.5 and records["sub/c.webp"].score == 2.0
    assert records["a.PNG"].score is None


@pytest.mark.parametrize(
    "csv_text, message",
    [
        ("file,mos\nb.jpg,3\n", "must name the columns 'image' and 'score'"),
        ("image,score\nb.jpg,3\nmissing.jpg,2\n", "line 3: image missing.jpg not found"),
        ("image,score\nb.jpg,good\n", "line 2: score 'good' is not a number"),
        ("image,score\nb.jpg,nan\n", "not a finite number"),
        ("image,score\nb.jpg,55\n", "outside [1, 5]"),
        ("image,score\nb.jpg,3\nb.jpg,4\n", "line 3: b.jpg is listed twice"),
        ("image,score\nnotes.txt,3\n", "notes.txt (and 0 more) is not an image"),
        ("image,score\n", "no rows"),
    ],
)
def test_bad_scores_csv(tmp_path, csv_text, message):
    root = _folder(tmp_path)
    csv = tmp_path / "scores.csv"
    csv.write_text(csv_text)
    with pytest.raises(DataError) as info:
        read_image_folder(root, csv)
    assert message in str(info.value)


def test_image_folder_errors(tmp_path):
    with pytest.raises(DataError, match="image folder not found"):
        read_image_folder(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no images found"):
        read_image_folder(tmp_path / "empty")
    root = _folder(tmp_path)
    with pytest.raises(DataError, match="scores CSV not found"):
        read_image_folder(root, tmp_path / "none.csv")
