"""The export's batch-first attention (export/attention.py): exact, lean in ONNX, quantized by INT8."""

from __future__ import annotations

import copy

import numpy as np
import onnx
import pytest
import torch
from onnx import helper
from torch import nn

from rali_edge.errors import ExportError
from rali_edge.export.attention import BatchFirstAttention, batch_first_attention
from rali_edge.export.fold import fold_scorer
from rali_edge.export.onnx import reference_outputs, to_onnx_model
from rali_edge.export.spec import ExportSpec
from rali_edge.model.tiny import TINY_LAYERS, make_random_scorer, tiny_resnet_backbone_config


def _randomize_biases(module: nn.Module, seed: int) -> None:
    """Random init leaves the attention biases at 0; make them count in the comparisons."""
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in module.named_parameters():
            if name.endswith("bias"):
                p.copy_(0.5 * torch.randn(p.shape, generator=gen, dtype=torch.float64).to(p.dtype))


def _rel(got: torch.Tensor, want: torch.Tensor) -> float:
    return float((got - want).abs().max() / want.abs().max())


@pytest.mark.parametrize("library,implementation", [("open_clip", None), ("hf", "sdpa"), ("hf", "eager")])
def test_rewritten_tower_equals_original_float64(library, implementation):
    scorer, pre = make_random_scorer(library, seed=7)
    if implementation is not None:
        scorer.backbone.model.set_attn_implementation(implementation)
    tower = copy.deepcopy(scorer.backbone.image_encoder()).double().eval()
    _randomize_biases(tower, 0)
    new = copy.deepcopy(tower)
    assert len(batch_first_attention(new)) == TINY_LAYERS
    assert sum(isinstance(m, BatchFirstAttention) for m in new.modules()) == TINY_LAYERS
    x = torch.randn(3, 3, pre.image_size, pre.image_size, dtype=torch.float64)
    with torch.no_grad():
        want, got = tower(x), new(x)
    assert got.dtype == torch.float64
    # HF eager computes the softmax in float32 even for a float64 model, hence a tolerance, not 1e-12
    assert _rel(got, want) < 1e-6


@pytest.mark.parametrize("batch_first", [True, False])
@pytest.mark.parametrize("bias", [True, False])
def test_open_clip_block_either_layout_float64(batch_first, bias):
    from open_clip.transformer import ResidualAttentionBlock

    torch.manual_seed(0)
    block = ResidualAttentionBlock(24, 3, batch_first=batch_first)  # head dim 8: the folded scale is inexact
    block.attn = nn.MultiheadAttention(24, 3, bias=bias, batch_first=batch_first)
    block = block.double().eval()
    _randomize_biases(block, 1)
    new = copy.deepcopy(block)
    assert batch_first_attention(new) == ["attn"]
    x = torch.randn((2, 5, 24) if batch_first else (5, 2, 24), dtype=torch.float64)
    with torch.no_grad():
        assert _rel(new(x), block(x)) < 1e-6
    assert (new.attn.q_proj.bias is None) == (not bias)


def test_unknown_attention_modules_are_left_alone():
    from open_clip.transformer import ResidualAttentionBlock, Transformer

    custom = Transformer(16, 1, 2, qk_norm=True)  # open_clip's CustomResidualAttentionBlock / Attention
    cross = ResidualAttentionBlock(16, 2, is_cross_attention=True)
    bias_kv = ResidualAttentionBlock(16, 2)
    bias_kv.attn = nn.MultiheadAttention(16, 2, add_bias_kv=True, batch_first=True)
    for module in (custom, cross, bias_kv, nn.MultiheadAttention(16, 2)):
        before = [type(m) for m in module.modules()]
        assert batch_first_attention(module) == []
        assert [type(m) for m in module.modules()] == before


def test_resnet_attention_pool_is_untouched_and_the_fold_stays_exact():
    from open_clip.modified_resnet import AttentionPool2d

    cfg = tiny_resnet_backbone_config(image_size=32, width=8)
    scorer, pre = make_random_scorer(seed=3, backbone_config=cfg)
    scorer = scorer.double()
    folded = fold_scorer(scorer, pre, ExportSpec(image_size=pre.image_size, input_kind="normalized"))
    assert not any(isinstance(m, BatchFirstAttention) for m in folded.modules())
    assert any(isinstance(m, AttentionPool2d) for m in folded.modules())
    x = torch.randn(3, 3, pre.image_size, pre.image_size, dtype=torch.float64)
    with torch.no_grad():
        assert _rel(folded(x), scorer.head(scorer.backbone.encode_image(x))) < 1e-6


def test_masks_and_cross_attention_calls_are_refused():
    from open_clip.transformer import ResidualAttentionBlock

    block = ResidualAttentionBlock(16, 2).eval()
    batch_first_attention(block)
    x = torch.randn(2, 4, 16)
    with pytest.raises(ExportError, match="mask"):
        block(x, attn_mask=torch.zeros(4, 4))
    with pytest.raises(ExportError, match="self-attention"):
        block.attn(x, x.clone(), x, need_weights=False)
    with pytest.raises(ExportError, match="weights"):
        block.attn(x, x, x)  # nn.MultiheadAttention's default need_weights=True


# ---------------------------------------------------------------- ONNX graph and INT8


def _perms(model: onnx.ModelProto) -> list[list[int]]:
    return sorted(list(helper.get_attribute_value(a)) for n in model.graph.node if n.op_type == "Transpose"
                  for a in n.attribute if a.name == "perm")


@pytest.fixture(scope="module", params=["open_clip", "hf"])
def exported(request):
    scorer, pre = make_random_scorer(request.param, seed=3)
    _randomize_biases(scorer.backbone, 2)
    spec = ExportSpec(image_size=pre.image_size, with_embedding=True)
    model = to_onnx_model(fold_scorer(scorer, pre, spec), spec, 18)
    before = to_onnx_model(fold_scorer(scorer, pre, spec, attention_rewrite=False), spec, 18)
    return {"library": request.param, "scorer": scorer, "pre": pre, "model": model, "before": before}


def _ort(model: onnx.ModelProto, pixels: np.ndarray) -> list[np.ndarray]:
    import onnxruntime as ort

    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    return sess.run(None, {"pixels": pixels})


def test_onnx_runs_and_matches_pytorch_and_the_unrewritten_export(exported):
    pixels = np.random.default_rng(0).integers(0, 256, (5, 3, 32, 32), dtype=np.uint8)
    want = reference_outputs(exported["scorer"], exported["pre"], pixels)
    score, emb = _ort(exported["model"], pixels)
    old_score, old_emb = _ort(exported["before"], pixels)
    np.testing.assert_allclose(score, want["score"], atol=1e-4)
    np.testing.assert_allclose(emb, want["embedding"], atol=1e-4)
    np.testing.assert_allclose(score, old_score, atol=1e-5)
    np.testing.assert_allclose(emb, old_emb, atol=1e-5)
    assert np.ptp(want["score"]) > 1e-4  # scores differ between images: not a constant comparison


def test_onnx_layout_one_transpose_per_tensor(exported):
    """Per block: q and v to [B,H,L,D], k to [B,H,D,L], the output back; plus the patch embedding's one."""
    model = exported["model"]
    want = sorted([[0, 2, 1]] + [[0, 2, 1, 3]] * 3 * TINY_LAYERS + [[0, 2, 3, 1]] * TINY_LAYERS)
    assert _perms(model) == want
    ops = [n.op_type for n in model.graph.node]
    assert "Split" not in ops and "Squeeze" not in ops and ops.count("Gather") <= 1  # the class token only
    # the softmax scale is folded into q_proj: the only Muls left are QuickGELU's two per block
    assert ops.count("Mul") == 2 * TINY_LAYERS
    if exported["library"] == "open_clip":  # what the rewrite removes: the seq-first transposes
        assert [1, 0, 2] in _perms(exported["before"])


def test_qkv_matmuls_are_quantized(exported, tmp_path):
    from rali_edge.calibration import from_pixels
    from rali_edge.quantize import OnnxInt8Config, quantize

    source = tmp_path / "fp32.onnx"
    onnx.save(exported["model"], str(source))
    pixels = np.random.default_rng(1).integers(0, 256, (16, 3, 32, 32), dtype=np.uint8)
    result = quantize(OnnxInt8Config(), source, tmp_path / "int8.onnx", from_pixels(pixels, "random (test)", 0))
    model = onnx.load(str(result.path))
    int8_weights = {t.name for t in model.graph.initializer if t.data_type == onnx.TensorProto.INT8}
    consumers = {i: n for n in model.graph.node for i in n.input}
    def next_after_quantize(name):   # the head split may read the GEMM's output re-quantized first
        node = consumers.get(name)
        return consumers.get(node.output[0]) if node is not None and node.op_type == "QuantizeLinear" else node

    # a Q/K/V projection: an int8-weight GEMM whose output is split into heads (Reshape -> Transpose)
    qkv = [n for n in model.graph.node if n.op_type == "MatMulIntegerToFloat" and n.input[1] in int8_weights
           and (head := next_after_quantize(n.output[0])) is not None and head.op_type == "Reshape"
           and consumers[head.output[0]].op_type == "Transpose"]
    assert len(qkv) == 3 * TINY_LAYERS
    assert result.details["qkv_splits"] == 0  # nothing packed left to split
    onnx.save(exported["before"], str(tmp_path / "before.onnx"))  # without the rewrite open_clip's QKV is packed
    before = quantize(OnnxInt8Config(), tmp_path / "before.onnx", tmp_path / "before-int8.onnx",
                      from_pixels(pixels, "random (test)", 0))
    assert before.details["qkv_splits"] == (TINY_LAYERS if exported["library"] == "open_clip" else 0)
    score = _ort(model, pixels[:4])[0]
    want = _ort(exported["model"], pixels[:4])[0]
    assert np.all(np.isfinite(score)) and np.max(np.abs(score - want)) < 0.1
