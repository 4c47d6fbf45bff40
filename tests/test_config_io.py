"""The one typed config loader (rali_edge.config_io) and the four config loaders built on it."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal, Optional

import pytest

from rali_edge import config_io
from rali_edge.errors import BundleError, ConfigError


@dataclass(frozen=True)
class Inner:
    lr: float = 1e-3
    steps: int = 10

    def __post_init__(self) -> None:
        if self.lr <= 0:
            raise ConfigError(f"lr must be positive, got {self.lr}")


@dataclass(frozen=True)
class Outer:
    name: str
    inner: Inner = field(default_factory=Inner)
    flag: bool = False
    files: tuple[str, ...] = ()
    seeds: list[int] = field(default_factory=list)
    mean: tuple[float, float, float] = (0.5, 0.5, 0.5)
    root: Path = Path(".")
    limit: int | None = None
    tag: Optional[str] = None
    mode: Literal["fast", "slow"] = "fast"
    extra: dict[str, int] = field(default_factory=dict)


def build(data: dict, where: str = "run.toml") -> Outer:
    return config_io.from_dict(Outer, data, where)


# ---------------------------------------------------------------- from_dict


def test_builds_nested_dataclass_and_normalises_containers():
    cfg = build({"name": "a", "inner": {"lr": 2, "steps": 3}, "files": ["x", "y"], "seeds": [1, 2],
                 "mean": [0, 1, 0.5], "root": "data", "mode": "slow", "extra": {"k": 1}})
    assert cfg.inner == Inner(lr=2.0, steps=3) and isinstance(cfg.inner.lr, float)  # int accepted for float
    assert cfg.files == ("x", "y") and cfg.seeds == [1, 2] and cfg.mean == (0.0, 1.0, 0.5)
    assert cfg.root == Path("data") and cfg.mode == "slow" and cfg.extra == {"k": 1}
    assert build({"name": "a"}) == Outer(name="a")  # defaults fill what the file leaves out


def test_unknown_key_names_key_file_section_and_accepted_keys():
    with pytest.raises(ConfigError, match=r"run.toml: unknown setting 'nmae'.*accepted keys: extra, files, flag"):
        build({"nmae": "a"})
    with pytest.raises(ConfigError, match=r"run.toml \[inner\]: unknown setting 'rate'.*accepted keys: lr, steps"):
        build({"name": "a", "inner": {"rate": 1.0}})


def test_wrong_type_names_dotted_field_expected_type_and_value():
    with pytest.raises(ConfigError, match=r"run.toml: inner.lr: expected a number, got str 'fast'"):
        build({"name": "a", "inner": {"lr": "fast"}})
    with pytest.raises(ConfigError, match=r"files\[1\]: expected a string, got int 3"):
        build({"name": "a", "files": ["x", 3]})
    with pytest.raises(ConfigError, match=r"files: expected a list of strings, got str 'x'"):
        build({"name": "a", "files": "x"})  # never split into letters
    with pytest.raises(ConfigError, match=r"mean: expected a list of 3 numbers"):
        build({"name": "a", "mean": [0.5, 0.5]})
    with pytest.raises(ConfigError, match=r"mode: expected one of \['fast', 'slow'\], got str 'medium'"):
        build({"name": "a", "mode": "medium"})
    with pytest.raises(ConfigError, match=r"inner: expected a table, got int 3"):
        build({"name": "a", "inner": 3})
    with pytest.raises(ConfigError, match=r"extra.k: expected an integer"):
        build({"name": "a", "extra": {"k": "1"}})


def test_bool_is_not_an_int_and_int_is_not_a_bool():
    with pytest.raises(ConfigError, match=r"inner.steps: expected an integer, got bool True"):
        build({"name": "a", "inner": {"steps": True}})
    with pytest.raises(ConfigError, match=r"inner.lr: expected a number, got bool False"):
        build({"name": "a", "inner": {"lr": False}})
    with pytest.raises(ConfigError, match=r"flag: expected true or false, got int 1"):
        build({"name": "a", "flag": 1})
    with pytest.raises(ConfigError, match=r"inner.steps: expected an integer, got float 2.0"):
        build({"name": "a", "inner": {"steps": 2.0}})


def test_optional_accepts_none_and_checks_the_value():
    assert build({"name": "a", "limit": None, "tag": None}).limit is None
    assert build({"name": "a", "limit": 5, "tag": "t"}).tag == "t"
    with pytest.raises(ConfigError, match=r"limit: expected an integer, got str '5'"):
        build({"name": "a", "limit": "5"})
    with pytest.raises(ConfigError, match=r"tag: expected a string"):
        build({"name": "a", "tag": 1})


def test_missing_key_not_a_table_post_init_and_error_class():
    with pytest.raises(ConfigError, match=r"run.toml: missing required keys \['name'\]"):
        build({})
    with pytest.raises(ConfigError, match=r"run.toml: expected a table of settings, got list"):
        build([1])  # type: ignore[arg-type]
    # range checks stay in __post_init__; the loader puts the file and section in front
    with pytest.raises(ConfigError, match=r"run.toml \[inner\]: lr must be positive, got -1.0"):
        build({"name": "a", "inner": {"lr": -1}})
    with pytest.raises(BundleError, match="unknown setting 'x'"):
        config_io.from_dict(Inner, {"x": 1}, "config.json", error=BundleError)


def test_number_in_quotes_gets_a_hint():
    with pytest.raises(ConfigError, match=r"inner.lr: expected a number, got str '1e-3' \(.*1.0e-3"):
        build({"name": "a", "inner": {"lr": "1e-3"}}, "t.yaml")


# ---------------------------------------------------------------- read_file


def test_missing_file_and_wrong_suffix(tmp_path):
    with pytest.raises(ConfigError, match=r"none.toml: config file not found"):
        config_io.read_file(tmp_path / "none.toml")
    with pytest.raises(ConfigError, match=r"that is a folder"):
        config_io.read_file(tmp_path)
    (tmp_path / "c.ini").write_text("a = 1\n")
    with pytest.raises(ConfigError, match=r"c.ini: config files must be \.toml, \.json"):
        config_io.read_file(tmp_path / "c.ini")


def test_syntax_errors_name_file_and_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('name = "a"\nlr = = 3\n')
    with pytest.raises(ConfigError, match=r"bad.toml: not valid TOML: .*line 2"):
        config_io.read_file(bad)
    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }')
    with pytest.raises(ConfigError, match=r"bad.json: not valid JSON: .*line 2"):
        config_io.read_file(bad)
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\nb: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: not valid YAML: .*line 2"):
        config_io.read_file(bad, (".yaml",))
    top = tmp_path / "list.json"
    top.write_text("[1, 2]")
    with pytest.raises(ConfigError, match=r"list.json: expected a table of settings at the top level"):
        config_io.read_file(top)


def test_read_file_then_from_dict(tmp_path):
    good = tmp_path / "run.toml"
    good.write_text('name = "a"\n[inner]\nlr = 0.5\n')
    assert build(config_io.read_file(good), str(good)).inner.lr == 0.5


# ---------------------------------------------------------------- the four loaders


def test_bundle_config_rejects_unknown_key_and_wrong_type_naming_file(tmp_path):
    import torch

    from rali_edge.bundle import (BackboneConfig, BundleConfig, HeadConfig, PreprocessConfig, Provenance,
                                  build_manifest, load_bundle, save_bundle)

    d, m, k = 8, 4, 3
    config = BundleConfig(
        backbone=BackboneConfig(library="open_clip", name="t", pretrained=None, model_config={}, embed_dim=d,
                                image_size=32),
        preprocess=PreprocessConfig(image_size=32, resize=32),
        head=HeadConfig(embed_dim=d, pca_dim=m, num_basis=k, temperature=0.01),
        provenance=Provenance.now(),
    )
    tensors = {"head.pca_mean": torch.zeros(d), "head.pca_scale": torch.ones(d),
               "head.pca_components": torch.zeros(m, d), "head.prototypes": torch.zeros(k, m),
               "head.proto_scores": torch.ones(k), "head.logit_scale": torch.tensor(100.0)}
    folder = save_bundle(tmp_path / "b", config, tensors)

    def load_with(section: str, key: str, value):
        raw = config.to_dict()
        raw[section][key] = value
        (folder / "config.json").write_text(json.dumps(raw))
        (folder / "manifest.json").write_text(json.dumps(build_manifest(folder)))
        return load_bundle(folder)

    with pytest.raises(BundleError, match=r"config.json: bundle config \[head\]: unknown setting 'pca_dims'"):
        load_with("head", "pca_dims", 4)
    with pytest.raises(BundleError, match=r"config.json: bundle config: head.pca_dim: expected an integer, got float"):
        load_with("head", "pca_dim", 4.0)


def test_train_config_rejects_unknown_key_and_wrong_type_naming_file(tmp_path):
    from rali_edge.train.config import load_train_config

    bad = tmp_path / "train.toml"
    bad.write_text("[align]\nlearning_rate = 1e-5\n")
    with pytest.raises(ConfigError, match=r"train.toml \[align\]: unknown setting 'learning_rate'.*accepted keys"):
        load_train_config(bad)
    bad.write_text('[align]\nlr = "fast"\n')
    with pytest.raises(ConfigError, match=r"train.toml: align.lr: expected a number, got str 'fast'"):
        load_train_config(bad)
    bad.write_text("")
    with pytest.raises(ConfigError, match=r"train.toml: fit.train_components: expected true or false, got int 1"):
        load_train_config(bad, ["fit.train_components=1"])  # --set values are checked the same way


def test_teacher_config_rejects_unknown_key_and_wrong_type_naming_file(tmp_path):
    from rali_edge.teacher.config import GRPOTeacherConfig, RACTConfig, load_config

    base = 'output_dir = "o"\nimage_root = "r"\nscore_meta = ["m.json"]\n'
    bad = tmp_path / "grpo.toml"
    bad.write_text(base + "num_generation = 4\n")
    with pytest.raises(ConfigError, match=r"grpo.toml: unknown setting 'num_generation'.*accepted keys"):
        load_config(GRPOTeacherConfig, bad)
    bad.write_text(base + "[images]\nmin_pixels = 3.5\n")
    with pytest.raises(ConfigError, match=r"grpo.toml: images.min_pixels: expected an integer, got float 3.5"):
        load_config(GRPOTeacherConfig, bad)
    yml = tmp_path / "ract.yaml"
    yml.write_text("output_dir: o\nimage_root: r\ntriplets: [t.jsonl]\nlearning_rate: 1e-6\n")
    with pytest.raises(ConfigError, match=r"ract.yaml: learning_rate: expected a number, got str '1e-6'"):
        load_config(RACTConfig, yml)


def test_quantize_config_rejects_unknown_key_and_wrong_type_naming_file():
    from rali_edge.quantize.config import config_from_dict

    where = "model.onnx.quant.json"
    with pytest.raises(ConfigError, match=r"model.onnx.quant.json \(onnx_int8\): unknown setting 'profil'"):
        config_from_dict({"kind": "onnx_int8", "profil": "cpu"}, where)
    with pytest.raises(ConfigError, match=r"\(onnx_int8\): calibration_batch: expected an integer, got str '8'"):
        config_from_dict({"kind": "onnx_int8", "calibration_batch": "8"}, where)
    with pytest.raises(ConfigError, match=r"\(coreml_w8a8\): weights.nbits: expected an integer, got bool True"):
        config_from_dict({"kind": "coreml_w8a8", "weights": {"nbits": True}}, where)
