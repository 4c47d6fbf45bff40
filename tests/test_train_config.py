"""The training TOML, --set overrides, validation split, stage markers and the CLI's error paths."""

from __future__ import annotations

from pathlib import Path

import pytest
from typer.testing import CliRunner

from rali_edge.errors import ConfigError
from rali_edge.train.config import load_train_config

CONFIGS = Path(__file__).resolve().parents[1] / "configs" / "train"


def test_shipped_configs_load_with_paper_settings():
    koniq = load_train_config(CONFIGS / "koniq_vitl336.toml")
    assert (koniq.align.lr, koniq.fit.lr) == (1e-5, 3e-2)
    assert (koniq.compress.pca_dim, koniq.compress.num_buckets, koniq.compress.num_basis) == (512, 240, 250)
    assert koniq.backbone.name == "openai/clip-vit-large-patch14-336"
    assert Path(koniq.data.image_root).is_absolute()  # resolved against the TOML's folder
    tiny = load_train_config(CONFIGS / "synth_tiny.toml")
    assert Path(tiny.backbone.config_file).is_file()


def test_overrides_and_errors(tmp_path):
    cfg = load_train_config(CONFIGS / "synth_tiny.toml", ["align.lr=2e-5", "fit.train_components=true",
                                                           "data.train_meta=['a.json', 'b.json']"])
    assert cfg.align.lr == 2e-5 and cfg.fit.train_components is True
    assert [Path(p).name for p in cfg.data.train_meta] == ["a.json", "b.json"]
    with pytest.raises(ConfigError, match=r"\[align\]: unknown setting 'learning_rate'"):
        load_train_config(None, ["align.learning_rate=1"])
    with pytest.raises(ConfigError, match="align.max_steps: expected an integer, got float 1.5"):
        load_train_config(None, ["align.max_steps=1.5"])
    with pytest.raises(ConfigError, match="unknown setting 'trainer'.*accepted keys: align, backbone"):
        load_train_config(None, ["trainer.lr=1"])
    bad = tmp_path / "bad.toml"
    bad.write_text("[compress]\nnum_basis = 0\n")
    with pytest.raises(ConfigError, match="num_basis"):
        load_train_config(bad)


def test_validation_split_keeps_sources_together():
    from rali_edge.train.pipeline import split_records

    class R:
        def __init__(self, image, source):
            self.image, self.source = image, source

    records = [R(f"{s}/{i}.png", s) for s in "abcdefghij" for i in range(5)]
    train, val = split_records(records, 0.2, seed=0)
    assert len(val) == 10 and sorted(train + val) == list(range(50))
    assert not {records[i].source for i in val} & {records[i].source for i in train}
    assert split_records(records, 0.2, seed=0) == (train, val)
    assert split_records(records, 0.0, seed=0)[1] == []


def test_cli_reports_config_errors(tmp_path):
    from rali_edge.cli.app import app

    runner = CliRunner()
    result = runner.invoke(app, ["train", "--stage", "everything", "--config", str(CONFIGS / "synth_tiny.toml")])
    assert result.exit_code == 2 and "--stage" in result.output
    result = runner.invoke(app, ["train", "--config", str(tmp_path / "missing.toml")])
    assert result.exit_code == 2 and "not found" in result.output
    # fit before compress: refused with the stage to run first
    result = runner.invoke(app, ["train", "--config", str(CONFIGS / "synth_tiny.toml"), "--out", str(tmp_path / "o"),
                                 "--stage", "fit"])
    assert result.exit_code == 2 and "run it first" in result.output
