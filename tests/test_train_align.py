"""Contrastive alignment: what trains, what stays frozen, checkpoints and exact resumption."""

from __future__ import annotations

import json

import pytest
import torch

from rali_edge.errors import ConfigError
from rali_edge.train.align import AlignConfig, align, contrastive_loss, lr_at


@pytest.fixture(autouse=True)
def _one_thread():
    # Two cores shared by many processes: one thread is several times faster for these tiny models.
    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@pytest.fixture(scope="module")
def tiny_data(tmp_path_factory):
    from rali_edge.data.meta import read_meta
    from rali_edge.data.synth import synthesize
    from rali_edge.teacher.template import describe_with_template
    from rali_edge.teacher.triplets import read_triplets

    root = tmp_path_factory.mktemp("align_data")
    ds = synthesize(root / "synth", seed=0, sources=2, size=32, progress=False)
    records = read_meta(ds.train_meta, ds.root)
    describe_with_template(records, [0, 1], root / "triplets.jsonl", progress=False)
    return ds.root, read_triplets(root / "triplets.jsonl")


def _backbone(library: str = "open_clip"):
    from rali_edge.model.backbone import build_backbone
    from rali_edge.model.tiny import tiny_backbone_config

    torch.manual_seed(0)
    return build_backbone(tiny_backbone_config(library, 32))


CFG = AlignConfig(lr=1e-3, batch_size=8, max_steps=4, checkpoint_every=100, warmup_fraction=0.25)


@pytest.mark.parametrize("library", ["open_clip", "hf"])
def test_align_trains_the_image_tower_and_leaves_the_text_tower_alone(tiny_data, tmp_path, library):
    root, triplets = tiny_data
    bb = _backbone(library)
    image_before = {k: v.clone() for k, v in bb.image_encoder().state_dict().items()}
    text_before = [p.detach().clone() for p in bb.text_parameters()]
    result = align(bb, triplets, root, CFG, tmp_path, progress=False)
    assert result.steps == 4 and not result.halted
    changed = [k for k, v in bb.image_encoder().state_dict().items() if not torch.equal(v, image_before[k])]
    assert len(changed) > len(image_before) // 2
    assert all(torch.equal(a, b) for a, b in zip(text_before, bb.text_parameters()))
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    assert [row["step"] for row in log] == [1, 2, 3, 4]
    assert all(row["loss"] > 0 and row["lr"] > 0 for row in log)
    assert (tmp_path / "encoder.safetensors").is_file()
    assert (tmp_path / "text_embeddings.safetensors").is_file()


def test_resume_after_a_kill_gives_the_same_weights(tiny_data, tmp_path):
    root, triplets = tiny_data
    straight = _backbone()
    align(straight, triplets, root, CFG, tmp_path / "straight", progress=False)

    killed = _backbone()
    first = align(killed, triplets, root, CFG, tmp_path / "resumed", progress=False, halt_after=2)
    assert first.halted and first.steps == 2
    assert not (tmp_path / "resumed" / "encoder.safetensors").exists()
    fresh = _backbone()  # a new process: same initial weights, state comes from the checkpoint
    second = align(fresh, triplets, root, CFG, tmp_path / "resumed", progress=False)
    assert second.steps == 4 and not second.halted
    a, b = straight.state_dict(), fresh.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    log_a = (tmp_path / "straight" / "log.jsonl").read_text()
    assert log_a == (tmp_path / "resumed" / "log.jsonl").read_text()


def test_resume_refuses_a_changed_config(tiny_data, tmp_path):
    root, triplets = tiny_data
    align(_backbone(), triplets, root, CFG, tmp_path, progress=False, halt_after=1)
    changed = AlignConfig(**{**CFG.__dict__, "lr": 2e-3})
    with pytest.raises(ConfigError, match="lr"):
        align(_backbone(), triplets, root, changed, tmp_path, progress=False)


def test_text_embeddings_are_cached(tiny_data, tmp_path, monkeypatch):
    from rali_edge.train.text_cache import text_embeddings

    bb = _backbone()
    texts = sorted({t.text for t in tiny_data[1]})[:5]
    first = text_embeddings(bb, texts, tmp_path / "cache.safetensors", progress=False)
    monkeypatch.setattr(bb, "encode_text", lambda *_: pytest.fail("cache not used"))
    again = text_embeddings(bb, list(reversed(texts)), tmp_path / "cache.safetensors", progress=False)
    assert torch.equal(again, first.flip(0))
    torch.testing.assert_close(first.norm(dim=1), torch.ones(5))


def test_contrastive_loss_treats_identical_texts_as_positives():
    txt = torch.eye(3, 8)  # orthogonal unit texts
    ids = torch.tensor([0, 0, 1])
    # images exactly on their texts: rows 0 and 1 share a text, so both columns are right for them
    good = contrastive_loss(txt[ids] * 5, txt[ids], ids, 0.05)
    bad = contrastive_loss(txt[torch.tensor([1, 1, 0])], txt[ids], ids, 0.05)
    assert float(good) < float(bad)
    assert float(good) == pytest.approx(2 / 3 * torch.log(torch.tensor(2.0)).item(), abs=1e-3)


def test_schedule_warms_up_then_decays():
    cfg = AlignConfig(lr=1.0, warmup_fraction=0.2, schedule="cosine")
    lrs = [lr_at(s, 10, cfg) for s in range(10)]
    assert lrs[0] == pytest.approx(0.5) and lrs[1] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(lrs[1:], lrs[2:])) and lrs[-1] < 0.1
    with pytest.raises(ConfigError, match="schedule"):
        AlignConfig(schedule="step")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU refusal of bf16")
def test_bf16_is_refused_on_a_cpu_without_native_bf16(monkeypatch):
    from rali_edge.train import align as align_module

    monkeypatch.setattr(align_module, "cpu_has_native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="native bf16"):
        align_module._accelerator(AlignConfig(mixed_precision="bf16"))


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks bf16 autocast on the CPU")
def test_bf16_on_a_cpu_with_native_bf16_autocasts_and_trains_close_to_float(tiny_data, tmp_path):
    from rali_edge.train.align import cpu_has_native_bf16

    if not cpu_has_native_bf16():
        pytest.skip("this CPU has no native bf16 (AVX512-BF16 or AMX)")
    root, triplets = tiny_data
    dtypes = []
    trained = {}
    for precision in ("bf16", "no"):
        bb = _timm_backbone()
        hook = bb.image_encoder().register_forward_hook(
            lambda module, args, out: dtypes.append((precision, out.dtype)) if module.training else None)
        align(bb, triplets, root, AlignConfig(**{**CFG.__dict__, "mixed_precision": precision}),
              tmp_path / precision, progress=False)
        hook.remove()
        trained[precision] = bb.image_encoder().state_dict()
    assert {d for p, d in dtypes if p == "bf16"} == {torch.bfloat16}  # the tower really ran in bf16
    assert {d for p, d in dtypes if p == "no"} == {torch.float32}
    a, b = trained["bf16"], trained["no"]
    assert all(v.dtype == b[k].dtype for k, v in a.items())  # master weights stay float32
    start = _timm_backbone().image_encoder().state_dict()
    moved = sum(float((b[k].float() - start[k].float()).norm()) for k in b)
    apart = sum(float((a[k].float() - b[k].float()).norm()) for k in b)
    assert 0 < apart < 0.25 * moved  # bf16 rounding, not a different training run


def test_unreadable_training_images_are_named(tmp_path):
    from rali_edge.bundle import PreprocessConfig
    from rali_edge.errors import DataError
    from rali_edge.train.embeddings import PixelSource

    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(DataError, match="broken.png"):
        PixelSource([tmp_path / "broken.png"], PreprocessConfig(image_size=32, resize=32), progress=False)


def test_flip_rotate_gives_dihedral_copies_and_is_seeded():
    import numpy as np

    from rali_edge.train.augment import flip_rotate

    batch = torch.arange(16 * 3 * 5 * 5, dtype=torch.float32).reshape(16, 3, 5, 5)
    out = flip_rotate(batch, np.random.default_rng(0))
    assert torch.equal(out, flip_rotate(batch, np.random.default_rng(0)))
    seen = set()
    for x, y in zip(batch, out):
        copies = [torch.rot90(x, k, dims=(-2, -1)) for k in range(4)]
        copies += [c.flip(-1) for c in copies]
        matches = [i for i, c in enumerate(copies) if torch.equal(c, y)]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) > 3  # the draws vary over the batch
    with pytest.raises(ConfigError, match="square"):
        flip_rotate(torch.zeros(2, 3, 4, 6), np.random.default_rng(0))


def _check_augmented_resume_is_exact(make_backbone, changes: dict, tiny_data, tmp_path):
    """Train with `changes` straight and with a halt + resume (same weights), and without them (other
    weights: the augmentation did change training). Returns the straight-trained backbone."""
    root, triplets = tiny_data
    cfg = AlignConfig(**{**CFG.__dict__, **changes})
    straight = make_backbone()
    align(straight, triplets, root, cfg, tmp_path / "straight", progress=False)
    plain = make_backbone()
    align(plain, triplets, root, CFG, tmp_path / "plain", progress=False)
    align(make_backbone(), triplets, root, cfg, tmp_path / "resumed", progress=False, halt_after=2)
    fresh = make_backbone()
    align(fresh, triplets, root, cfg, tmp_path / "resumed", progress=False)
    a, b, c = straight.state_dict(), fresh.state_dict(), plain.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)
    return straight


def test_resume_is_exact_with_flip_rotate(tiny_data, tmp_path):
    _check_augmented_resume_is_exact(_backbone, {"flip_rotate": True}, tiny_data, tmp_path)


def test_channels_last_trains_the_same_resnet_tower_as_the_default_layout(tiny_data, tmp_path):
    """NHWC is a layout change only: the weights after a few steps match NCHW training up to rounding."""
    from rali_edge.model.backbone import build_backbone
    from rali_edge.model.tiny import tiny_resnet_backbone_config

    root, triplets = tiny_data
    trained = {}
    for layout in (True, False):
        torch.manual_seed(0)
        backbone = build_backbone(tiny_resnet_backbone_config(32, 16, context=16))
        cfg = AlignConfig(**{**CFG.__dict__, "channels_last": layout})
        align(backbone, triplets, root, cfg, tmp_path / str(layout), progress=False)
        trained[layout] = backbone.image_encoder().state_dict()
        assert all(v.is_contiguous() for v in trained[layout].values())  # back in the default layout
    torch.manual_seed(0)  # the same initial weights both runs started from
    start = build_backbone(tiny_resnet_backbone_config(32, 16, context=16)).image_encoder().state_dict()
    a, b = trained[True], trained[False]
    assert any(not torch.equal(a[k], start[k]) for k in a)  # it did train
    assert all(torch.allclose(a[k], b[k], atol=1e-4, rtol=1e-3) for k in a)


def test_random_crop_cuts_seeded_squares_at_varied_positions():
    import numpy as np

    from rali_edge.train.augment import random_crop

    batch = torch.arange(16 * 3 * 8 * 8, dtype=torch.float32).reshape(16, 3, 8, 8)
    out = random_crop(batch, 5, np.random.default_rng(0))
    assert out.shape == (16, 3, 5, 5)
    assert torch.equal(out, random_crop(batch, 5, np.random.default_rng(0)))
    offsets = set()
    for x, y in zip(batch, out):
        found = [(i, j) for i in range(4) for j in range(4) if torch.equal(x[:, i:i + 5, j:j + 5], y)]
        assert len(found) == 1
        offsets.add(found[0])
    assert len(offsets) > 3  # each image gets its own position
    with pytest.raises(ConfigError, match="larger"):
        random_crop(batch, 9, np.random.default_rng(0))
    with pytest.raises(ConfigError, match="random_crop"):
        AlignConfig(random_crop=-1)


def _timm_backbone():
    from rali_edge.model.backbone import build_backbone
    from rali_edge.model.tiny import tiny_timm_backbone_config

    torch.manual_seed(0)
    return build_backbone(tiny_timm_backbone_config("test_resnet", image_size=32, context=16))


def test_resume_is_exact_with_random_crops_on_a_timm_tower(tiny_data, tmp_path):
    straight = _check_augmented_resume_is_exact(_timm_backbone, {"random_crop": 16}, tiny_data, tmp_path)
    emb = straight.image_encoder().eval()(torch.zeros(2, 3, 32, 32))  # and it still scores whole images
    assert emb.shape == (2, straight.config.embed_dim)


@pytest.mark.parametrize("tower", ["vit", "modified_resnet"])
def test_random_crop_is_refused_before_training_for_towers_of_one_input_size(tiny_data, tmp_path, tower):
    from rali_edge.model.backbone import build_backbone
    from rali_edge.model.tiny import tiny_resnet_backbone_config

    root, triplets = tiny_data
    torch.manual_seed(0)
    bb = _backbone() if tower == "vit" else build_backbone(tiny_resnet_backbone_config(32, 8, context=16))
    before = {k: v.clone() for k, v in bb.image_encoder().state_dict().items()}
    cfg = AlignConfig(**{**CFG.__dict__, "random_crop": 16})
    with pytest.raises(ConfigError, match="does not take 16x16 input"):
        align(bb, triplets, root, cfg, tmp_path, progress=False)
    assert all(torch.equal(v, before[k]) for k, v in bb.image_encoder().state_dict().items())
    assert not (tmp_path / "log.jsonl").exists()


def test_full_input_fraction_ends_crop_training_on_whole_inputs(tiny_data, tmp_path):
    root, triplets = tiny_data
    bb = _timm_backbone()
    sizes = []
    bb.image_encoder().register_forward_hook(
        lambda module, args, out: sizes.append(args[0].shape[-1]) if module.training else None)
    cfg = AlignConfig(**{**CFG.__dict__, "random_crop": 16, "full_input_fraction": 0.5})
    align(bb, triplets, root, cfg, tmp_path, progress=False)
    assert sizes == [16, 16, 32, 32]
    with pytest.raises(ConfigError, match="random_crop"):
        AlignConfig(full_input_fraction=0.5)
    with pytest.raises(ConfigError, match="full_input_fraction"):
        AlignConfig(random_crop=16, full_input_fraction=1.0)


def test_ranking_loss_counts_only_pairs_apart_by_more_than_the_gap():
    from rali_edge.train.rank import ranking_loss

    targets = torch.tensor([1.0, 2.0, 2.05, 4.0])
    right = torch.tensor([0.0, 1.0, 5.0, 3.0])  # 4 of the 5 pairs apart by > 0.1 in order; 2.0 vs 2.05 not counted
    loss = ranking_loss(right, targets, min_gap=0.1)
    # the five counted pairs, each -log sigmoid(score gap)
    gaps = torch.tensor([1.0, 5.0, 3.0, 2.0, -2.0])
    assert float(loss) == pytest.approx(float(torch.nn.functional.softplus(-gaps).mean()), rel=1e-6)
    assert float(ranking_loss(-right, targets, 0.1)) > float(loss)
    scores = torch.zeros(3, requires_grad=True)
    none = ranking_loss(scores, torch.tensor([3.0, 3.0, 3.05]), min_gap=0.1)
    none.backward()
    assert float(none.detach()) == 0.0 and torch.equal(scores.grad, torch.zeros(3))


def test_ranking_options_are_validated_and_scores_must_agree(tiny_data):
    import dataclasses

    from rali_edge.errors import DataError
    from rali_edge.train.align_data import AlignData

    with pytest.raises(ConfigError, match="rank_weight"):
        AlignConfig(rank_weight=-1.0)
    with pytest.raises(ConfigError, match="rank_min_gap"):
        AlignConfig(rank_min_gap=-0.1)
    triplets = tiny_data[1]
    data = AlignData.from_triplets(triplets)
    assert data.scores == [next(t.gt_score_norm for t in triplets if t.image == i) for i in data.images]
    clash = dataclasses.replace(triplets[0], seed=99, gt_score_norm=triplets[0].gt_score_norm + 1.0)
    with pytest.raises(DataError, match="disagree on its gt_score_norm"):
        AlignData.from_triplets([*triplets, clash])


def test_ranking_trains_a_readout_the_final_encoder_leaves_out(tiny_data, tmp_path):
    from safetensors.torch import load_file

    root, triplets = tiny_data
    bb = _timm_backbone()
    cfg = AlignConfig(**{**CFG.__dict__, "rank_weight": 1.0, "max_steps": 40, "lr": 3e-3, "checkpoint_every": 40})
    align(bb, triplets, root, cfg, tmp_path, progress=False)
    log = [json.loads(line) for line in (tmp_path / "log.jsonl").read_text().splitlines()]
    rank = [row["rank_loss"] for row in log]
    assert rank[0] == pytest.approx(torch.log(torch.tensor(2.0)).item(), abs=1e-4)  # zero read-out: sigmoid(0)
    # the read-out learns to order the training images (measured: 0.60 over the last 10 steps, from ln 2 = 0.69)
    assert sum(rank[-10:]) / 10 < 0.92 * rank[0]
    final = load_file(str(tmp_path / "encoder.safetensors"))
    assert set(final) == set(bb.image_encoder().state_dict())  # the encoder only, no read-out
    (ckpt,) = (tmp_path / "checkpoints").iterdir()
    assert "rank_w" in load_file(str(ckpt / "model.safetensors"))  # but a resume needs it


def test_resume_is_exact_with_ranking(tiny_data, tmp_path):
    _check_augmented_resume_is_exact(_timm_backbone, {"rank_weight": 1.0}, tiny_data, tmp_path)


def test_checkpoints_from_before_a_new_option_resume_with_its_default(tiny_data, tmp_path):
    root, triplets = tiny_data
    align(_backbone(), triplets, root, CFG, tmp_path, progress=False, halt_after=2)
    (ckpt,) = (tmp_path / "checkpoints").iterdir()
    state = json.loads((ckpt / "state.json").read_text())
    for name in ("rank_weight", "rank_min_gap"):  # as written before the ranking options existed
        del state["meta"]["config"][name]
    (ckpt / "state.json").write_text(json.dumps(state))
    ranked = AlignConfig(**{**CFG.__dict__, "rank_weight": 1.0})
    with pytest.raises(ConfigError, match="rank_weight"):
        align(_backbone(), triplets, root, ranked, tmp_path, progress=False)
    assert align(_backbone(), triplets, root, CFG, tmp_path, progress=False).steps == 4
