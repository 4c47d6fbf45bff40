"""Official checkpoint import: a tiny official-format folder built here, scored by a direct
re-implementation of the official forward pass, must equal the imported bundle's scores."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image
from skimage import data
from typer.testing import CliRunner

from rali_edge.errors import ConfigError, DataError


def _photos():
    return [Image.fromarray(a) for a in (data.astronaut(), data.chelsea(), data.coffee(), data.rocket())]


@pytest.fixture(scope="module")
def official_dir(tmp_path_factory):
    """best/ (tiny CLIPModel + processor), pca.pkl (sklearn PCA via joblib), basis.npz, ckpt.pt."""
    import joblib
    from sklearn.decomposition import PCA
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    from rali_edge.model.tiny import tiny_backbone_config

    root = tmp_path_factory.mktemp("official")
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig.from_dict(tiny_backbone_config("hf", image_size=32).model_config)).eval()
    model.save_pretrained(root / "best")
    CLIPImageProcessor(size={"shortest_edge": 40}, crop_size={"height": 32, "width": 32}).save_pretrained(root / "best")
    d, m, k = 32, 12, 9
    rng = np.random.default_rng(0)
    pca = PCA(n_components=m).fit(rng.normal(size=(200, d)) + rng.normal(size=d))
    joblib.dump(pca, root / "pca.pkl")
    np.savez(root / "basis.npz", vectors=rng.normal(size=(k, m)).astype(np.float32),
             scores=rng.uniform(1, 5, size=k).astype(np.float32))
    # "Trained" values: differ from best/ and basis.npz, so the test sees which ones win.
    clip = {f"clip.{n}": t + 0.05 * torch.randn_like(t) if t.is_floating_point() else t
            for n, t in model.state_dict().items()}
    scorer = {
        "scorer.pca_scale": torch.tensor(rng.uniform(0.5, 2, size=d) * rng.choice([-1, 1], size=d), dtype=torch.float32),
        "scorer.pca_components": torch.tensor(pca.components_ + 0.05 * rng.normal(size=(m, d)), dtype=torch.float32),
        "scorer.prototypes": torch.tensor(rng.normal(size=(k, m)), dtype=torch.float32),
        "scorer.proto_scores": torch.tensor(rng.uniform(1, 5, size=k), dtype=torch.float32),
        "scorer.logit_scale": torch.tensor(11.0),
    }
    torch.save({"state_dict": {**clip, **scorer}}, root / "ckpt.pt")
    return root


def official_forward(folder, images) -> np.ndarray:
    """The released inference, re-implemented directly from REFERENCE section 1."""
    import joblib
    from transformers import CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    sd = torch.load(folder / "ckpt.pt", weights_only=True)["state_dict"]
    clip = CLIPModel.from_pretrained(folder / "best").eval()
    clip.load_state_dict({k[5:]: v for k, v in sd.items() if k.startswith("clip.")}, strict=True)
    pixel_values = CLIPImageProcessorPil.from_pretrained(folder / "best")(images=images, return_tensors="pt")["pixel_values"]
    pca_mean = torch.tensor(joblib.load(folder / "pca.pkl").mean_, dtype=torch.float32)
    with torch.no_grad():
        feats = clip.get_image_features(pixel_values=pixel_values).pooler_output
        x = ((feats - pca_mean) / sd["scorer.pca_scale"].abs()) @ sd["scorer.pca_components"].T
        x = torch.nn.functional.normalize(x, dim=-1)
        p = torch.nn.functional.normalize(sd["scorer.prototypes"], dim=-1)
        tau = 1 / sd["scorer.logit_scale"].clamp(min=1e-6)
        w = torch.softmax((x @ p.T) / tau, dim=-1)
        return (w @ sd["scorer.proto_scores"]).numpy()


def test_import_equals_official_forward(official_dir, tmp_path):
    from rali_edge.bundle import load_bundle
    from rali_edge.model.scorer import load_scorer
    from rali_edge.official import import_official

    out = import_official(official_dir, tmp_path / "bundle", trust_pickle=True)
    assert not any(p.suffix in (".pkl", ".pt") for p in out.iterdir())
    imgs = _photos()
    want = official_forward(official_dir, imgs)
    got = load_scorer(out).score(imgs)
    assert np.ptp(want) > 1e-3  # the images get different scores, so equality means something
    np.testing.assert_allclose(got, want, atol=1e-4)
    cfg = load_bundle(out).config
    assert (cfg.preprocess.resize, cfg.preprocess.image_size) == (40, 32)
    assert cfg.provenance.notes["head_tensors_from_ckpt"] == sorted(
        ["pca_scale", "pca_components", "prototypes", "proto_scores", "logit_scale"])
    assert cfg.head.temperature == pytest.approx(1 / 11.0)


def test_without_trust_pickle_refuses_and_explains(official_dir, tmp_path):
    from rali_edge.cli.app import app
    from rali_edge.official import import_official

    with pytest.raises(ConfigError, match="--trust-pickle") as e:
        import_official(official_dir, tmp_path / "b")
    assert "arbitrary code" in str(e.value) and "pca.npz" in str(e.value)
    assert not (tmp_path / "b").exists()
    res = CliRunner().invoke(app, ["import-official", str(official_dir), "--out", str(tmp_path / "b")])
    assert res.exit_code == 2 and "pickle" in res.output
    res = CliRunner().invoke(app, ["import-official", str(official_dir), "--out", str(tmp_path / "c"),
                                   "--trust-pickle"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "c" / "model.safetensors").is_file()


def test_pickle_free_pca_npz_gives_same_bundle(official_dir, tmp_path):
    import shutil

    import joblib

    from rali_edge.model.scorer import load_scorer
    from rali_edge.official import import_official

    folder = tmp_path / "nopickle"
    shutil.copytree(official_dir, folder)
    pca = joblib.load(folder / "pca.pkl")
    np.savez(folder / "pca.npz", mean=pca.mean_, components=pca.components_)
    (folder / "pca.pkl").unlink()
    out = import_official(folder, tmp_path / "bundle")
    imgs = _photos()[:2]
    np.testing.assert_allclose(load_scorer(out).score(imgs), official_forward(official_dir, imgs), atol=1e-4)


def test_bad_folders_are_clear(official_dir, tmp_path):
    import shutil

    from rali_edge.official import import_official

    with pytest.raises(DataError, match="does not exist"):
        import_official(tmp_path / "none", tmp_path / "b")
    folder = tmp_path / "broken"
    shutil.copytree(official_dir, folder)
    sd = torch.load(folder / "ckpt.pt", weights_only=True)
    sd["state_dict"]["optimizer.lr"] = torch.tensor(1.0)
    torch.save(sd, folder / "ckpt.pt")
    with pytest.raises(DataError, match="unexpected state dict keys"):
        import_official(folder, tmp_path / "b", trust_pickle=True)
    sd["state_dict"].pop("optimizer.lr")
    sd["state_dict"]["scorer.prototypes"] = torch.randn(9, 5)
    torch.save(sd, folder / "ckpt.pt")
    with pytest.raises(DataError, match="do not fit"):
        import_official(folder, tmp_path / "b", trust_pickle=True)
    (folder / "ckpt.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(DataError, match="ckpt.pt"):
        import_official(folder, tmp_path / "b", trust_pickle=True)


@pytest.mark.parametrize("fmt", ["litert", "executorch", "openvino"])
def test_official_checkpoint_runs_in_the_on_device_runtimes(official_dir, tmp_path, fmt):
    """The imported official checkpoint, exported FP32 to LiteRT / ExecuTorch / OpenVINO and run there,
    gives the official forward pass's scores on photographs to <= 1e-4."""
    from rali_edge.export.api import export_bundle
    from rali_edge.export.formats import caps
    from rali_edge.official import import_official
    from rali_edge.runtime import open_runner

    ok, why = caps(fmt).runnable_here()
    if not ok:
        pytest.skip(why)
    bundle = import_official(official_dir, tmp_path / "bundle", trust_pickle=True)
    batch = None if caps(fmt).dynamic_batch else 1
    result = export_bundle(bundle, fmt, "fp32", batch=batch, out_dir=tmp_path, name="m")
    runner = open_runner(result.path)
    from rali_edge.model.preprocess import uint8_batch

    imgs = _photos()
    got = runner.run(uint8_batch(imgs, runner.preprocess_config()).numpy())["score"]
    np.testing.assert_allclose(got, official_forward(official_dir, imgs), atol=1e-4)
