"""Both backbone adapters: tiny random models build offline, encode images and texts, rebuild from config."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from rali_edge.errors import ConfigError
from rali_edge.model.backbone import BACKBONES, build_backbone, clip_tokenizer, load_pretrained_backbone
from rali_edge.model.tiny import tiny_backbone_config

LIBRARIES = sorted(BACKBONES)


@pytest.fixture(params=LIBRARIES)
def backbone(request):
    torch.manual_seed(0)
    return build_backbone(tiny_backbone_config(request.param, image_size=32))


def test_every_registered_backbone_is_tested():
    assert set(LIBRARIES) == {"hf", "open_clip"}


def test_encodes_images_and_texts(backbone):
    px = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        feats = backbone.encode_image(px)
        texts = backbone.encode_text(["a sharp, well exposed photo", "heavy blur and noise", ""])
    d = backbone.config.embed_dim
    assert feats.shape == (3, d) and texts.shape == (3, d)
    assert not torch.allclose(feats[0], feats[1])
    assert not torch.allclose(texts[0], texts[1])
    # NOT L2-normalised, as in the official code
    assert not torch.allclose(feats.norm(dim=1), torch.ones(3))


def test_image_embedding_is_the_library_projected_pooled_output(backbone):
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        ours = backbone.encode_image(px)
        if backbone.config.library == "hf":
            ref = backbone.model.get_image_features(pixel_values=px)
            ref = ref if isinstance(ref, torch.Tensor) else ref.pooler_output
        else:
            ref = backbone.model.encode_image(px, normalize=False)
    torch.testing.assert_close(ours, ref, rtol=0, atol=0)


def test_image_encoder_patch_embedding_and_text_params(backbone):
    enc = backbone.image_encoder()
    conv = dict(enc.named_modules())[backbone.patch_embedding_name()]
    assert isinstance(conv, nn.Conv2d) and conv.stride == conv.kernel_size and conv.padding == (0, 0)
    visual = {id(p) for p in enc.parameters()}
    text = list(backbone.text_parameters())
    assert text and not any(id(p) in visual for p in text)
    assert len(visual) + len(text) == len(list(backbone.parameters()))


def test_rebuild_from_config_and_state_dict(backbone):
    cfg = backbone.config
    json.dumps(cfg.model_config)  # must be JSON for config.json
    again = build_backbone(cfg)
    again.load_state_dict(backbone.state_dict(), strict=True)
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(again.encode_image(px), backbone.encode_image(px), rtol=0, atol=0)
    pp = backbone.default_preprocess()
    assert pp.image_size == 32 and pp.resize == 32 and pp.interpolation == "bicubic"


def test_hf_tokenizer_matches_open_clip_bpe():
    from open_clip import SimpleTokenizer

    texts = ["A blurry photo, with JPEG artifacts!", "well-exposed; sharp details 123"]
    ours = clip_tokenizer(77)(texts, padding="max_length", max_length=77)["input_ids"]
    ref = SimpleTokenizer(context_length=77)(texts)
    for ids, r in zip(ours, ref):
        r = r.tolist()
        n = r.index(49407) + 1
        assert ids[:n] == r[:n]
        assert ids[0] == 49406 and ids[n - 1] == 49407


def test_load_pretrained_hf_from_local_folder(tmp_path):
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel

    cfg = tiny_backbone_config("hf", image_size=32)
    torch.manual_seed(0)
    model = CLIPModel(CLIPConfig.from_dict(cfg.model_config)).eval()
    model.save_pretrained(tmp_path / "clip")
    CLIPImageProcessor(size={"shortest_edge": 36}, crop_size={"height": 32, "width": 32},
                       image_mean=[0.5, 0.5, 0.5], image_std=[0.25, 0.25, 0.25]).save_pretrained(tmp_path / "clip")
    bb = load_pretrained_backbone("hf", str(tmp_path / "clip"))
    assert bb.config.library == "hf" and bb.config.name == str(tmp_path / "clip") and bb.config.embed_dim == 32
    pp = bb.default_preprocess()
    assert (pp.resize, pp.image_size, pp.mean, pp.std) == (36, 32, (0.5, 0.5, 0.5), (0.25, 0.25, 0.25))
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb.encode_image(px), model.get_image_features(pixel_values=px).pooler_output)


def test_unknown_names_are_clear_errors(tmp_path):
    with pytest.raises(ConfigError, match="unknown backbone library"):
        load_pretrained_backbone("timm", "x")
    with pytest.raises(ConfigError, match="unknown open_clip model"):
        load_pretrained_backbone("open_clip", "no-such-model")
    with pytest.raises(ConfigError, match="cannot load Hugging Face"):
        load_pretrained_backbone("hf", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="unknown backbone library"):
        tiny_backbone_config("timm")


def test_load_pretrained_open_clip_from_local_dir(tmp_path):
    from safetensors.torch import save_file

    cfg = tiny_backbone_config("open_clip", image_size=32)
    torch.manual_seed(1)
    src = build_backbone(cfg)
    folder = tmp_path / "oc"
    folder.mkdir()
    pcfg = dict(cfg.model_config["preprocess_cfg"], mean=[0.5, 0.5, 0.5], std=[0.5, 0.5, 0.5])
    (folder / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg.model_config["model_cfg"],
                                                             "preprocess_cfg": pcfg}))
    with pytest.raises(ConfigError, match="cannot load open_clip"):  # no weights: refused, never random
        load_pretrained_backbone("open_clip", f"local-dir:{folder}")
    save_file({k: v.contiguous() for k, v in src.model.state_dict().items()}, str(folder / "open_clip_model.safetensors"))
    bb = load_pretrained_backbone("open_clip", f"local-dir:{folder}")
    px = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(bb.encode_image(px), src.encode_image(px), rtol=0, atol=0)
        assert bb.encode_text(["sharp"]).shape == (1, 32)
    assert bb.default_preprocess().mean == (0.5, 0.5, 0.5)
    rebuilt = build_backbone(bb.config)  # what a bundle does: config + state dict, offline
    rebuilt.load_state_dict(bb.state_dict(), strict=True)
    with torch.no_grad():
        torch.testing.assert_close(rebuilt.encode_image(px), src.encode_image(px), rtol=0, atol=0)
    with pytest.raises(ConfigError, match="cannot load open_clip"):  # a builtin name with no weights
        load_pretrained_backbone("open_clip", "ViT-B-32", None)
