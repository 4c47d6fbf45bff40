"""GRPO (TRL GRPOTrainer) and RACT (TRL SFTTrainer) steps on a tiny random-weight Qwen2.5-VL."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from rali_edge.data.meta import read_meta
from rali_edge.teacher.config import GRPOTeacherConfig, RACTConfig
from rali_edge.teacher.grpo import REWARD_LOG, build_dataset, task_rows, train_grpo
from rali_edge.teacher.prompts import DEGRADATION_PROMPT, SCORE_PROMPT, SYSTEM_PROMPT
from rali_edge.teacher.ract import VISION_PREFIX, score_target, sft_rows, train_ract
from rali_edge.teacher.rewards import format_ok
from rali_edge.teacher.template import describe_with_template
from rali_edge.teacher.tiny import build_tiny_teacher


@pytest.fixture(scope="module")
def tiny_path(tmp_path_factory):
    return build_tiny_teacher(tmp_path_factory.mktemp("tiny") / "qwen", seed=0)


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("data")
    rng = np.random.default_rng(1)
    scores, dists = [], []
    for i in range(4):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
        scores.append({"image": f"{i}.png", "gt_score": float(i), "gt_score_norm": 1.0 + i})
        dists.append({"image": f"{i}.png", "distortion_class": "blur", "severity": "serious"})
    (root / "score.json").write_text(json.dumps(scores))
    (root / "dist.json").write_text(json.dumps(dists[:2]))
    describe_with_template(read_meta(root / "score.json", root), [0, 1], root / "texts.jsonl", progress=False)
    return root


def load(path):
    from transformers import Qwen2_5_VLForConditionalGeneration

    torch.manual_seed(0)
    return Qwen2_5_VLForConditionalGeneration.from_pretrained(path)


def snapshot(model):
    return {n: p.detach().clone() for n, p in model.named_parameters()}


def changed(model, before):
    return {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}


def grpo_cfg(tiny_path, data, out, **kw):
    base = dict(output_dir=str(out), image_root=str(data), score_meta=[str(data / "score.json")],
                degradation_meta=[str(data / "dist.json")], model=str(tiny_path), num_generations=2,
                per_device_train_batch_size=2, gradient_accumulation_steps=1, max_completion_length=8,
                max_steps=2, learning_rate=1e-2, gradient_checkpointing=False, save_steps=10_000)
    return GRPOTeacherConfig(**{**base, **kw})


def test_grpo_dataset_mixes_tasks_with_verbatim_prompts(tiny_path, data, tmp_path):
    rows = task_rows(grpo_cfg(tiny_path, data, tmp_path))
    assert [r["task"] for r in rows] == ["score"] * 4 + ["degradation"] * 2
    ds = build_dataset(rows)
    score, dist = ds[0], ds[5]
    assert isinstance(score["image"], Image.Image) and score["gt_score_norm"] == 1.0
    assert score["prompt"] == [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": SCORE_PROMPT}]
    assert dist["prompt"][1]["content"] == DEGRADATION_PROMPT and dist["distortion_class"] == "blur"


def distinct_chars(prompts, completions, **_):
    # Random weights never earn Q-Insight rewards (all zero -> zero advantage -> no update); this
    # extra reward varies between completions so the policy-gradient step has a signal.
    return [float(len(set(c[0]["content"]))) for c in completions]


@pytest.mark.slow
def test_grpo_two_steps_change_parameters_and_log_rewards(tiny_path, data, tmp_path):
    model = load(tiny_path)
    before = snapshot(model)
    cfg = grpo_cfg(tiny_path, data, tmp_path / "out")
    result = train_grpo(cfg, model=model, extra_rewards=[distinct_chars])
    assert result.steps == 2
    moved = changed(model, before)
    assert any(n.startswith(VISION_PREFIX) for n in moved), "the vision tower must be trained too"
    assert any(n.startswith("model.language_model.") for n in moved)
    rows = [json.loads(x) for x in (tmp_path / "out" / REWARD_LOG).read_text().splitlines()]
    assert [r["step"] for r in rows] == [1, 2]
    for row in rows:
        assert row["format_pass_rate"] == row["rewards/format_reward/mean"] == 0.0
        assert "rewards/score_reward/mean" in row and "rewards/distinct_chars/mean" in row
    assert rows[1]["learning_rate"] < rows[0]["learning_rate"]  # linear decay
    assert (tmp_path / "out" / "config.json").is_file() and (tmp_path / "out" / "tokenizer.json").is_file()


def test_ract_rows_and_score_target(data, tmp_path):
    cfg = RACTConfig(output_dir=str(tmp_path), image_root=str(data), triplets=[str(data / "texts.jsonl")],
                     score_triplets=[str(data / "texts.jsonl")])
    rows = sft_rows(cfg)
    assert [r["task"] for r in rows] == ["description"] * 8 + ["score"] * 8
    assert format_ok(score_target("Edges are smeared.", 2.456))
    assert '"rating": 2.46' in score_target("x", 2.456)


@pytest.mark.slow
def test_ract_step_with_frozen_llm_changes_only_the_vision_tower(tiny_path, data, tmp_path):
    model = load(tiny_path)
    before = snapshot(model)
    cfg = RACTConfig(output_dir=str(tmp_path / "ract"), image_root=str(data), triplets=[str(data / "texts.jsonl")],
                     score_triplets=[str(data / "texts.jsonl")], model=str(tiny_path), train="vision", max_steps=1,
                     per_device_train_batch_size=2, learning_rate=1e-2, gradient_checkpointing=False,
                     save_steps=10_000)
    result = train_ract(cfg, model=model)
    moved = changed(model, before)
    vision = {n for n in before if n.startswith(VISION_PREFIX)}
    assert result.steps == 1 and moved and moved <= vision
    assert len(moved) > len(vision) // 2  # not a stray tensor: the tower as a whole moved
    assert result.trainable == len(vision)


@pytest.mark.gpu
def test_grpo_step_on_cuda_bf16(tiny_path, data, tmp_path):
    import time

    model = load(tiny_path).to(torch.bfloat16)
    before = snapshot(model)
    cfg = grpo_cfg(tiny_path, data, tmp_path / "gpu", max_steps=1, bf16=True)
    start = time.perf_counter()
    result = train_grpo(cfg, model=model, extra_rewards=[distinct_chars])
    elapsed = time.perf_counter() - start
    assert result.steps == 1 and next(model.parameters()).device.type == "cuda"
    assert changed(model, {n: p.to(next(model.parameters()).device) for n, p in before.items()})
    print(f"one GRPO step on {torch.cuda.get_device_name()}: {elapsed:.2f} s")


def test_missing_images_fail_before_training(tiny_path, data, tmp_path):
    from rali_edge.errors import DataError

    (tmp_path / "img").mkdir()
    (tmp_path / "meta.json").write_text(json.dumps([{"image": "img/gone.png", "gt_score": 1, "gt_score_norm": 2.0}]))
    cfg = grpo_cfg(tiny_path, tmp_path, tmp_path / "o", score_meta=[str(tmp_path / "meta.json")], degradation_meta=[])
    with pytest.raises(DataError, match="missing, e.g. .*gone.png"):
        task_rows(cfg)
