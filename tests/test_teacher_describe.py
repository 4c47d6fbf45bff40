"""`describe` with a tiny random-weight Qwen2.5-VL built offline (rali_edge.teacher.tiny)."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rali_edge.data.meta import read_meta
from rali_edge.teacher.describe import SamplingConfig, describe_with_model, load_teacher, malformed_path_for
from rali_edge.teacher.tiny import build_tiny_teacher
from rali_edge.teacher.triplets import read_triplets

WELL_FORMED = '<think>\nEdges are smeared; overall quality is poor.\n</think>\n<answer>\n{{"rating": {r}}}\n</answer>'


@pytest.fixture(scope="module")
def teacher(tmp_path_factory):
    path = build_tiny_teacher(tmp_path_factory.mktemp("tiny") / "qwen", seed=0)
    model, processor = load_teacher(str(path), device="cpu")
    return path, model, processor


@pytest.fixture()
def records(tmp_path):
    rng = np.random.default_rng(0)
    items = []
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (32, 40, 3), dtype=np.uint8)).save(tmp_path / f"{i}.png")
        items.append({"image": f"{i}.png", "gt_score": float(i), "gt_score_norm": 1.5 + i})
    (tmp_path / "meta.json").write_text(json.dumps(items))
    return read_meta(tmp_path / "meta.json", tmp_path)


class ScriptedGenerate:
    """Wraps the real `generate` (so the real model runs), then replaces the sampled tokens with
    scripted completions, row by row in call order: the parsing/writing/resuming path gets
    completions whose content is known, since random weights never emit the tags."""

    def __init__(self, model, processor, texts):
        self.real, self.tok, self.texts, self.rows = model.generate, processor.tokenizer, list(texts), 0

    def __call__(self, **inputs):
        out = self.real(**{**inputs, "max_new_tokens": 2})
        prompt = inputs["input_ids"]
        assert out.shape[0] == prompt.shape[0] and torch.equal(out[:, : prompt.shape[1]], prompt)
        ids = [self.tok(self.texts[self.rows + i])["input_ids"] for i in range(prompt.shape[0])]
        self.rows += prompt.shape[0]
        width = max(map(len, ids))
        pad = self.tok.pad_token_id
        new = torch.tensor([x + [pad] * (width - len(x)) for x in ids])
        return torch.cat([prompt, new], dim=1)


def run(records, seeds, out, model, processor, texts, monkeypatch, batch_size=2):
    scripted = ScriptedGenerate(model, processor, texts)
    monkeypatch.setattr(model, "generate", scripted)
    stats = describe_with_model(records, seeds, out, model, processor, "tiny-random", batch_size=batch_size,
                                sampling=SamplingConfig(max_new_tokens=8), progress=False)
    monkeypatch.undo()
    return stats, scripted.rows


def test_describe_writes_parseable_jsonl_and_resumes(teacher, records, tmp_path, monkeypatch):
    _, model, processor = teacher
    out = tmp_path / "texts.jsonl"
    # Order of rows: seed 0 (images 0, 1 | 2), then seed 1 (0, 1 | 2). Row 4 (image 1, seed 1) is malformed.
    texts = [WELL_FORMED.format(r=r) for r in ("2.10", "2.20", "2.30", "2.40")]
    texts += ["<think>\nno answer tag\n</think>", WELL_FORMED.format(r="2.60")]
    stats, rows = run(records, [0, 1], out, model, processor, texts, monkeypatch)
    assert rows == 6 and (stats.written, stats.malformed, stats.skipped, stats.total) == (5, 1, 0, 6)
    triplets = read_triplets(out)
    assert {(t.image, t.seed) for t in triplets} == {("0.png", 0), ("1.png", 0), ("2.png", 0), ("0.png", 1),
                                                     ("2.png", 1)}
    first = triplets[0]
    assert first.text == "Edges are smeared; overall quality is poor." and first.rating == 2.10
    assert first.gt_score_norm == 1.5 and first.teacher == "tiny-random" and "<answer>" in first.raw
    side = [json.loads(x) for x in malformed_path_for(out).read_text().splitlines()]
    assert [(m["image"], m["seed"]) for m in side] == [("1.png", 1)] and "rating" in side[0]["reason"]

    # Resume: only the malformed pair is sampled again.
    stats, rows = run(records, [0, 1], out, model, processor, [WELL_FORMED.format(r="3.00")], monkeypatch)
    assert rows == 1 and (stats.written, stats.skipped) == (1, 5)
    # A complete file: a second run samples nothing and adds nothing.
    before = out.read_text()
    stats, rows = run(records, [0, 1], out, model, processor, [], monkeypatch)
    assert rows == 0 and stats.written == 0 and out.read_text() == before
    # Deleting lines re-creates exactly those pairs.
    lines = before.splitlines(keepends=True)
    out.write_text("".join(lines[:2]))
    stats, rows = run(records, [0, 1], out, model, processor, [WELL_FORMED.format(r="1.0")] * 4, monkeypatch)
    assert rows == 4 and stats.written == 4
    assert sorted((t.image, t.seed) for t in read_triplets(out)) == sorted(
        (f"{i}.png", s) for i in range(3) for s in (0, 1)
    )


def test_random_weights_give_malformed_completions_kept_out(teacher, records, tmp_path):
    _, model, processor = teacher
    out = tmp_path / "texts.jsonl"
    stats = describe_with_model(records, [0, 1], out, model, processor, "tiny-random", batch_size=3,
                                sampling=SamplingConfig(max_new_tokens=6), progress=False)
    # Random weights never produce the <think>/<answer> tags: every completion is malformed, all counted.
    assert (stats.malformed, stats.written, stats.total) == (6, 0, 6)
    assert not out.exists() or out.read_text() == ""
    side = [json.loads(x) for x in malformed_path_for(out).read_text().splitlines()]
    assert len(side) == 6 and all(m["raw"] for m in side)
    assert stats.notes["format_pass_rate"] == 0.0


def test_unreadable_images_are_logged_not_fatal(teacher, records, tmp_path, monkeypatch):
    _, model, processor = teacher
    records[1].path.write_bytes(b"not an image")
    out = tmp_path / "texts.jsonl"
    stats, rows = run(records, [0], out, model, processor, [WELL_FORMED.format(r="2")] * 2, monkeypatch)
    assert rows == 2 and stats.written == 2 and stats.notes["bad_images"] == 1
    assert "image not loadable" in malformed_path_for(out).read_text()
