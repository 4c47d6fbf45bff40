"""`rali-edge teacher describe | train | ract` end to end on tiny data and a tiny random Qwen2.5-VL."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from rali_edge.cli.app import app
from rali_edge.errors import ConfigError
from rali_edge.teacher.config import GRPOTeacherConfig
from rali_edge.teacher.describe import malformed_path_for
from rali_edge.teacher.grpo import REWARD_LOG, _check_vllm
from rali_edge.teacher.tiny import build_tiny_teacher
from rali_edge.teacher.triplets import read_triplets

runner = CliRunner()


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    root = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(2)
    items = []
    for i in range(2):
        Image.fromarray(rng.integers(0, 255, (32, 32, 3), dtype=np.uint8)).save(root / f"{i}.png")
        items.append({"image": f"{i}.png", "gt_score": float(i), "gt_score_norm": 2.0 + i,
                      "distortion_class": "noise", "severity": "moderate"})
    (root / "meta.json").write_text(json.dumps(items))
    return root


def invoke(*args):
    result = runner.invoke(app, ["teacher", *map(str, args)])
    return result.exit_code, result.output


def test_describe_template_cli(data, tmp_path):
    out = tmp_path / "t.jsonl"
    code, text = invoke("describe", "--meta", data / "meta.json", "--image-root", data, "--template",
                        "--seeds", 0, 1, 2, "--out", out)
    assert code == 0, text
    assert "6 written" in text
    assert sorted((t.image, t.seed) for t in read_triplets(out)) == [(f"{i}.png", s) for i in range(2) for s in range(3)]
    code, text = invoke("describe", "--meta", data / "meta.json", "--image-root", data, "--template", "--out", out)
    assert code == 0 and "0 written, 6 already there" in text


def test_describe_cli_errors(data, tmp_path):
    code, text = invoke("describe", "--meta", data / "meta.json", "--image-root", data, "--out", tmp_path / "x.jsonl")
    assert code == 2 and "exactly one of --model" in text
    code, text = invoke("describe", "--meta", data / "missing.json", "--image-root", data, "--template",
                        "--out", tmp_path / "x.jsonl")
    assert code == 2 and "missing.json" in text
    code, text = invoke("train", "--config", tmp_path / "none.toml")
    assert code == 2 and "not found" in text


def test_vllm_asked_but_absent_is_an_error(tmp_path):
    cfg = GRPOTeacherConfig(output_dir="o", image_root="r", score_meta=["m"], use_vllm=True)
    if importlib.util.find_spec("vllm") is None:
        with pytest.raises(ConfigError, match="vLLM is not installed"):
            _check_vllm(cfg)
    else:
        _check_vllm(cfg)


@pytest.mark.slow
def test_describe_model_train_and_ract_cli(data, tmp_path):
    tiny = build_tiny_teacher(tmp_path / "tiny")
    out = tmp_path / "texts.jsonl"
    code, text = invoke("describe", "--model", tiny, "--meta", data / "meta.json", "--image-root", data,
                        "--seeds", 0, "--max-new-tokens", 4, "--device", "cpu", "--out", out)
    assert code == 0, text
    assert "2 malformed" in text  # random weights: logged and kept out, never silently dropped
    assert len(malformed_path_for(out).read_text().splitlines()) == 2

    cfg = tmp_path / "grpo.toml"
    cfg.write_text(
        f'output_dir = "{tmp_path / "grpo"}"\nimage_root = "{data}"\nscore_meta = ["{data / "meta.json"}"]\n'
        f'model = "{tiny}"\nnum_generations = 2\nper_device_train_batch_size = 2\ngradient_accumulation_steps = 1\n'
        "max_completion_length = 4\nmax_steps = 1\ngradient_checkpointing = false\n"
    )
    code, text = invoke("train", "--config", cfg)
    assert code == 0, text
    assert "trained 1 steps" in text and (tmp_path / "grpo" / REWARD_LOG).is_file()

    invoke("describe", "--meta", data / "meta.json", "--image-root", data, "--template", "--out", tmp_path / "t.jsonl")
    ract = tmp_path / "ract.yaml"
    ract.write_text(
        f"output_dir: {tmp_path / 'ract'}\nimage_root: {data}\ntriplets: [{tmp_path / 't.jsonl'}]\n"
        f"model: {tmp_path / 'grpo'}\ntrain: vision+llm\nmax_steps: 1\nper_device_train_batch_size: 2\n"
        "gradient_checkpointing: false\n"
    )
    code, text = invoke("ract", "--config", ract)
    assert code == 0, text
    assert "vision+llm" in text and "0 frozen" in text
