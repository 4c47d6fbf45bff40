"""Triplet files, the template describer and teacher config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rali_edge.data.meta import Record
from rali_edge.errors import ConfigError, DataError
from rali_edge.teacher.config import GRPOTeacherConfig, RACTConfig, config_from_dict, load_config
from rali_edge.teacher.template import TEMPLATE_TEACHER, describe_with_template, template_text
from rali_edge.teacher.triplets import Triplet, TripletWriter, read_triplets

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "teacher"


def rec(image: str, score: float | None, cls: str | None = "blur", sev: str | None = "serious") -> Record:
    return Record(image=image, path=Path("/nowhere") / image, score=score, gt_score=score,
                  distortion_class=cls, severity=sev)


def test_writer_round_trip_and_done_keys(tmp_path):
    out = tmp_path / "t.jsonl"
    t1 = Triplet("a.png", 2.5, 0, "soft edges", 2.4, "<think>soft edges</think>", "model-x")
    t2 = Triplet("a.png", 2.5, 1, "blurry", None, "blurry", "template")
    with TripletWriter(out) as w:
        assert w.done_keys() == set()
        w.write(t1)
        w.write(t2)
    assert read_triplets(out) == [t1, t2]
    assert TripletWriter(out).done_keys() == {("a.png", 0), ("a.png", 1)}


def test_writer_drops_a_cut_off_last_line(tmp_path):
    out = tmp_path / "t.jsonl"
    with TripletWriter(out) as w:
        w.write(Triplet("a.png", 2.5, 0, "x", 2.0, "x", "m"))
    with open(out, "a") as f:
        f.write('{"image": "b.png", "gt_sc')  # a crash mid-line
    w = TripletWriter(out)
    w.close()
    assert w.repaired_bytes > 0
    assert [t.image for t in read_triplets(out)] == ["a.png"]


@pytest.mark.parametrize(
    "line,needle",
    [
        ("not json", "not valid JSON"),
        ('{"image": "a.png"}', "missing field"),
        ('{"image": "a.png", "gt_score_norm": "3", "seed": 0, "text": "t", "rating": null, "raw": "", "teacher": "m"}',
         "gt_score_norm"),
        ('{"image": "a.png", "gt_score_norm": 3, "seed": 1.5, "text": "t", "rating": null, "raw": "", "teacher": "m"}',
         "seed"),
        ('{"image": "a.png", "gt_score_norm": 3, "seed": 1, "text": " ", "rating": null, "raw": "", "teacher": "m"}',
         "empty"),
    ],
)
def test_read_triplets_names_the_bad_line(tmp_path, line, needle):
    good = Triplet("a.png", 2.5, 0, "x", 2.0, "x", "m").to_json()
    path = tmp_path / "t.jsonl"
    path.write_text(good + "\n\n" + line + "\n")
    with pytest.raises(DataError, match=rf"t\.jsonl:3: .*{needle}"):
        read_triplets(path)


def test_read_triplets_missing_or_empty(tmp_path):
    with pytest.raises(DataError, match="not found"):
        read_triplets(tmp_path / "none.jsonl")
    (tmp_path / "e.jsonl").write_text("")
    with pytest.raises(DataError, match="no triplets"):
        read_triplets(tmp_path / "e.jsonl")


def test_template_texts_carry_quality_and_vary_by_seed():
    bad = rec("x.png", 1.2, "blur", "catastrophic")
    good = rec("y.png", 4.8, "null", "null")
    mid = rec("z.png", 3.1, "noise", "moderate")
    bad_texts = {template_text(bad, s) for s in range(6)}
    assert len(bad_texts) > 1  # several phrasings
    assert all("blur" in t and "bad" in t for t in bad_texts)
    assert all("no visible" in t or "free of distortion" in t for t in (template_text(good, s) for s in range(4)))
    assert all("excellent" in template_text(good, s) for s in range(4))
    assert "noise" in template_text(mid, 0) and "fair" in template_text(mid, 0)
    assert template_text(bad, 3) == template_text(bad, 3)  # deterministic


def test_template_without_score_uses_severity_and_rejects_unknowns():
    assert "poor" in template_text(rec("a.png", None, "darken", "serious"), 0)
    with pytest.raises(DataError, match="no score and no known severity"):
        template_text(rec("a.png", None, "darken", "weird"), 0)


def test_describe_with_template_writes_and_resumes(tmp_path):
    out = tmp_path / "texts.jsonl"
    records = [rec(f"{i}.png", 1.0 + i, "compression", "obvious") for i in range(3)]
    stats = describe_with_template(records, [0, 1], out, progress=False)
    assert (stats.written, stats.skipped, stats.total) == (6, 0, 6)
    triplets = read_triplets(out)
    assert {t.teacher for t in triplets} == {TEMPLATE_TEACHER}
    assert {(t.image, t.seed) for t in triplets} == {(f"{i}.png", s) for i in range(3) for s in (0, 1)}
    again = describe_with_template(records, [0, 1, 2], out, progress=False)
    assert (again.written, again.skipped) == (3, 6)
    with pytest.raises(DataError, match="no gt_score_norm"):
        describe_with_template([rec("n.png", None)], [0], tmp_path / "n.jsonl", progress=False)


@pytest.mark.parametrize("name", ["grpo_example.toml", "grpo_example.yaml"])
def test_example_grpo_configs_load_with_paper_defaults(name):
    cfg = load_config(GRPOTeacherConfig, CONFIGS / name)
    assert (cfg.num_generations, cfg.beta, cfg.learning_rate, cfg.max_completion_length) == (8, 1e-3, 1e-6, 256)
    assert cfg.num_train_epochs == 10 and cfg.temperature == 1.0 and cfg.score_threshold == 0.35


def test_example_ract_config_loads():
    cfg = load_config(RACTConfig, CONFIGS / "ract_example.toml")
    assert cfg.train == "vision" and len(cfg.score_triplets) == 1


def test_config_errors(tmp_path):
    base = {"output_dir": "o", "image_root": "r", "score_meta": "m.json"}
    assert config_from_dict(GRPOTeacherConfig, base, "x").score_meta == ["m.json"]
    with pytest.raises(ConfigError, match="unknown setting.*num_generation\\b"):
        config_from_dict(GRPOTeacherConfig, {**base, "num_generation": 4}, "x")
    with pytest.raises(ConfigError, match="multiple of num_generations"):
        config_from_dict(GRPOTeacherConfig, {**base, "per_device_train_batch_size": 6}, "x")
    with pytest.raises(ConfigError, match="at least one"):
        config_from_dict(GRPOTeacherConfig, {"output_dir": "o", "image_root": "r"}, "x")
    with pytest.raises(ConfigError, match="train must be one of"):
        config_from_dict(RACTConfig, {"output_dir": "o", "image_root": "r", "triplets": ["t"], "train": "llm"}, "x")
    bad = tmp_path / "c.json"
    bad.write_text(json.dumps(base))
    with pytest.raises(ConfigError, match=r"\.toml, \.yaml"):
        load_config(GRPOTeacherConfig, bad)


def test_template_uses_the_finer_distortion_name():
    brightened = Record(image="b.png", path=Path("/nowhere/b.png"), score=2.0, gt_score=2.0,
                        distortion_class="darken", severity="serious", extras={"distortion": "brighten"})
    texts = [template_text(brightened, s) for s in range(4)]
    assert all("overexposure" in t and "underexposure" not in t for t in texts)
