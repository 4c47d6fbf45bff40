"""Bundle format: round trip, tamper and truncation detection, schema versions, atomic writes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rali_edge import bundle as bundle_mod
from rali_edge.bundle import (
    CLIP_MEAN,
    SUPPORTED_SCHEMA_VERSIONS,
    BackboneConfig,
    BundleConfig,
    HeadConfig,
    PreprocessConfig,
    Provenance,
    build_manifest,
    bundle_tensors_with_prefix,
    load_bundle,
    save_bundle,
)
from rali_edge.errors import BundleError

D, M, K = 16, 8, 6


def make_config(**head_overrides) -> BundleConfig:
    head = {"embed_dim": D, "pca_dim": M, "num_basis": K, "temperature": 0.01, **head_overrides}
    return BundleConfig(
        backbone=BackboneConfig(library="open_clip", name="tiny-test", pretrained=None,
                                model_config={"embed_dim": D, "vision_cfg": {"width": 8}}, embed_dim=D,
                                image_size=32),
        preprocess=PreprocessConfig(image_size=32, resize=32, interpolation="bilinear"),
        head=HeadConfig(**head),
        provenance=Provenance.now(data=["synthetic/train.json"], seeds=[0, 1], notes={"why": "test"}),
    )


def make_tensors(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {
        "backbone.x": torch.randn(4, 3, generator=g),
        "head.pca_mean": torch.randn(D, generator=g),
        "head.pca_scale": torch.rand(D, generator=g) + 0.5,
        "head.pca_components": torch.randn(M, D, generator=g),
        "head.prototypes": torch.randn(K, M, generator=g),
        "head.proto_scores": torch.rand(K, generator=g) * 4 + 1,
        "head.logit_scale": torch.tensor(100.0),
    }


@pytest.fixture
def saved(tmp_path: Path) -> tuple[Path, BundleConfig, dict[str, torch.Tensor]]:
    config, tensors = make_config(), make_tensors()
    return save_bundle(tmp_path / "bundle", config, tensors), config, tensors


def resign(folder: Path) -> None:
    """Rewrite the manifest after an edit, as a careless tool would: checks beyond checksums must fire."""
    (folder / "manifest.json").write_text(json.dumps(build_manifest(folder)))


def test_round_trip_keeps_tensors_and_config(saved):
    path, config, tensors = saved
    assert sorted(p.name for p in path.iterdir()) == ["config.json", "manifest.json", "model.safetensors"]
    b = load_bundle(path)
    assert b.config == config
    assert b.config.preprocess.mean == CLIP_MEAN and isinstance(b.config.preprocess.mean, tuple)
    assert set(b.tensors) == set(tensors)
    for name, t in tensors.items():
        assert b.tensors[name].dtype == t.dtype
        assert torch.equal(b.tensors[name], t), name
    assert len(b.checksum) == 64 and b.checksum == load_bundle(path).checksum
    assert set(b.head_tensors()) == {"pca_mean", "pca_scale", "pca_components", "prototypes", "proto_scores",
                                     "logit_scale"}


def test_checksum_differs_between_bundles(tmp_path):
    a = load_bundle(save_bundle(tmp_path / "a", make_config(), make_tensors(0)))
    b = load_bundle(save_bundle(tmp_path / "b", make_config(), make_tensors(1)))
    assert a.checksum != b.checksum


def test_config_dict_round_trip_is_plain_json():
    config = make_config()
    d = config.to_dict()
    assert json.loads(json.dumps(d)) == d
    assert BundleConfig.from_dict(d) == config


def test_shared_views_and_non_contiguous_tensors_save(tmp_path):
    base = torch.randn(6, 5, requires_grad=True)
    tensors = make_tensors()
    tensors.update({"backbone.tied_a": base, "backbone.tied_b": base, "backbone.view": base[1:3],
                    "backbone.t": base.t()})
    b = load_bundle(save_bundle(tmp_path / "b", make_config(), tensors))
    assert torch.equal(b.tensors["backbone.tied_b"], base.detach())
    assert torch.equal(b.tensors["backbone.view"], base.detach()[1:3])
    assert torch.equal(b.tensors["backbone.t"], base.detach().t())


def test_flipped_byte_in_weights_is_refused(saved):
    path = saved[0]
    w = path / "model.safetensors"
    data = bytearray(w.read_bytes())
    data[-3] ^= 0xFF
    w.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="checksum mismatch for model.safetensors"):
        load_bundle(path)


def test_edited_config_is_refused(saved):
    path = saved[0]
    c = path / "config.json"
    d = json.loads(c.read_text())
    d["head"]["temperature"] = 0.5
    c.write_text(json.dumps(d, indent=2))
    with pytest.raises(BundleError, match="(checksum|size) mismatch"):
        load_bundle(path)


def test_truncated_weights_are_refused(saved):
    path = saved[0]
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-40])
    with pytest.raises(BundleError, match="truncated"):
        load_bundle(path)


def test_truncated_weights_with_rewritten_manifest_still_refused(saved):
    path = saved[0]
    w = path / "model.safetensors"
    w.write_bytes(w.read_bytes()[:-40])
    resign(path)
    with pytest.raises(BundleError, match="cannot read safetensors"):
        load_bundle(path)


def test_missing_manifest_is_refused(saved):
    path = saved[0]
    (path / "manifest.json").unlink()
    with pytest.raises(BundleError, match="no manifest.json"):
        load_bundle(path)


def test_missing_listed_file_is_refused(saved):
    path = saved[0]
    (path / "model.safetensors").unlink()
    with pytest.raises(BundleError, match="model.safetensors is missing"):
        load_bundle(path)


def test_manifest_must_list_required_files(saved):
    path = saved[0]
    m = json.loads((path / "manifest.json").read_text())
    del m["files"]["model.safetensors"]
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="does not list the required file model.safetensors"):
        load_bundle(path)


def test_manifest_cannot_point_outside_the_folder(saved):
    path = saved[0]
    m = json.loads((path / "manifest.json").read_text())
    m["files"]["../elsewhere"] = {"sha256": "0" * 64, "size": 1}
    (path / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="invalid file name"):
        load_bundle(path)


def test_garbled_manifest_is_refused(saved):
    path = saved[0]
    (path / "manifest.json").write_text("{not json")
    with pytest.raises(BundleError, match="manifest is not valid JSON"):
        load_bundle(path)


def test_missing_folder_and_file_instead_of_folder(tmp_path):
    with pytest.raises(BundleError, match="does not exist"):
        load_bundle(tmp_path / "nope")
    f = tmp_path / "file.bin"
    f.write_bytes(b"x")
    with pytest.raises(BundleError, match="is a folder"):
        load_bundle(f)


@pytest.mark.parametrize("where", ["config", "manifest"])
def test_unknown_schema_version_names_supported_versions(saved, where):
    path = saved[0]
    target = path / f"{where}.json"
    d = json.loads(target.read_text())
    d["schema_version"] = 99
    target.write_text(json.dumps(d))
    if where == "config":
        resign(path)
    supported = ", ".join(str(v) for v in SUPPORTED_SCHEMA_VERSIONS)
    expected = f"unsupported bundle schema version 99.*supports schema versions: {supported}"
    with pytest.raises(BundleError, match=expected):
        load_bundle(path)


def test_config_with_inconsistent_tensor_shapes_is_refused(saved):
    path = saved[0]
    c = path / "config.json"
    d = json.loads(c.read_text())
    d["head"]["num_basis"] = K + 1
    c.write_text(json.dumps(d))
    resign(path)
    with pytest.raises(BundleError, match=r"head.prototypes has shape \[6, 8\], expected \[7, 8\]"):
        load_bundle(path)


@pytest.mark.parametrize(
    ("section", "key", "value", "message"),
    [
        ("backbone", "library", "timm", "not one of"),
        ("preprocess", "interpolation", "nearest", "not one of"),
        ("head", "pca_dim", "8", "expected an integer"),
        ("head", "temperature", -1.0, "positive"),
        ("preprocess", "std", [0.2, 0.2], "3 numbers"),
        ("head", "typo_key", 1, "unknown keys"),
    ],
)
def test_config_validation_rejects_bad_values(section, key, value, message):
    d = make_config().to_dict()
    d[section][key] = value
    with pytest.raises(BundleError, match=message):
        BundleConfig.from_dict(d)


def test_config_missing_key_and_cross_field_checks():
    d = make_config().to_dict()
    del d["backbone"]["embed_dim"]
    with pytest.raises(BundleError, match="missing required keys \\['embed_dim'\\]"):
        BundleConfig.from_dict(d)
    d = make_config().to_dict()
    d["head"]["embed_dim"] = 32
    with pytest.raises(BundleError, match="backbone.embed_dim"):
        BundleConfig.from_dict(d)


def test_save_refuses_bad_head_tensors(tmp_path):
    tensors = make_tensors()
    tensors["head.pca_components"] = torch.randn(M + 1, D)
    with pytest.raises(BundleError, match="head.pca_components has shape"):
        save_bundle(tmp_path / "b", make_config(), tensors)
    tensors = make_tensors()
    del tensors["head.logit_scale"]
    with pytest.raises(BundleError, match="missing tensor head.logit_scale"):
        save_bundle(tmp_path / "b", make_config(), tensors)
    assert not (tmp_path / "b").exists()


def _crash(*args, **kwargs):
    raise RuntimeError("simulated crash while writing model.safetensors")


def test_crash_mid_write_leaves_no_bundle_and_no_leftovers(tmp_path, monkeypatch):
    import safetensors.torch

    monkeypatch.setattr(safetensors.torch, "save_file", _crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_bundle(tmp_path / "bundle", make_config(), make_tensors())
    assert list(tmp_path.iterdir()) == []


def test_crash_mid_write_keeps_old_bundle_intact(saved, monkeypatch):
    import safetensors.torch

    path = saved[0]
    before = {p.name: p.read_bytes() for p in path.iterdir()}
    monkeypatch.setattr(safetensors.torch, "save_file", _crash)
    with pytest.raises(RuntimeError, match="simulated crash"):
        save_bundle(path, make_config(), make_tensors(seed=5))
    assert {p.name: p.read_bytes() for p in path.iterdir()} == before
    assert [p.name for p in path.parent.iterdir()] == [path.name]
    load_bundle(path)


def test_overwrite_replaces_old_bundle_when_complete(saved):
    path = saved[0]
    old = load_bundle(path).checksum
    save_bundle(path, make_config(), make_tensors(seed=7))
    new = load_bundle(path)
    assert new.checksum != old
    assert torch.equal(new.tensors["head.prototypes"], make_tensors(seed=7)["head.prototypes"])
    assert [p.name for p in path.parent.iterdir()] == [path.name]


def test_bundle_tensors_with_prefix_strips_prefix():
    tensors = make_tensors()
    head = bundle_tensors_with_prefix(tensors, "head.")
    assert head == bundle_tensors_with_prefix(tensors, "head")
    assert set(head) == {"pca_mean", "pca_scale", "pca_components", "prototypes", "proto_scores", "logit_scale"}
    assert head["prototypes"] is tensors["head.prototypes"]
    assert set(bundle_tensors_with_prefix(tensors, "backbone")) == {"x"}


def test_provenance_now_stamps_version_and_utc_time():
    from rali_edge import __version__

    p = Provenance.now(data=["a.json"], seeds=[3], notes={"k": 1})
    assert p.package_version == __version__
    assert p.created.endswith("+00:00")
    assert p.seeds == [3] and p.data == ["a.json"] and p.notes == {"k": 1}


def test_module_exports_contract_names():
    for name in ("SCHEMA_VERSION", "SUPPORTED_SCHEMA_VERSIONS", "CLIP_MEAN", "CLIP_STD", "Bundle",
                 "save_bundle", "load_bundle"):
        assert hasattr(bundle_mod, name)
