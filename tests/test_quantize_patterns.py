"""The float plan is found by graph pattern on graphs from BOTH exporters, whatever the node names."""

from __future__ import annotations

import warnings

import numpy as np
import onnx
import pytest

from rali_edge.errors import ConfigError
from rali_edge.quantize.patterns import find_float_nodes, transformer_blocks

LAYERS = 2


@pytest.fixture(scope="module")
def graphs(tmp_path_factory, make_scorer, export_onnx, rename_all_nodes):
    """{(exporter, gelu): renamed ONNX model} for dynamo/legacy x QuickGELU/erf-GELU."""
    tmp = tmp_path_factory.mktemp("patterns")
    out = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for quick in (True, False):
            scorer = make_scorer(quick_gelu=quick)
            for dynamo in (True, False):
                path = export_onnx(scorer, tmp / f"m_{dynamo}_{quick}.onnx", dynamo=dynamo)
                renamed = rename_all_nodes(path, tmp / f"r_{dynamo}_{quick}.onnx", seed=int(dynamo) * 2 + quick)
                out[("dynamo" if dynamo else "legacy", "quick" if quick else "erf")] = onnx.load(str(renamed))
    return out


def test_fixture_scorer_exports_and_matches(tmp_path, make_scorer, synthetic_pixels, export_onnx):
    import onnxruntime as ort
    import torch

    scorer = make_scorer()
    pixels, _ = synthetic_pixels(4)
    for dynamo in (False, True):
        path = export_onnx(scorer, tmp_path / f"m{dynamo}.onnx", dynamo=dynamo)
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
        got = sess.run(None, {"pixels": pixels})[0]
        want = scorer(torch.from_numpy(pixels)).detach().numpy()
        assert np.allclose(got, want, atol=1e-4)


def _ops(model, names):
    by_name = {n.name: n.op_type for n in model.graph.node}
    return [by_name[n] for n in names]


@pytest.mark.slow
@pytest.mark.parametrize("exporter", ["dynamo", "legacy"])
@pytest.mark.parametrize("gelu", ["quick", "erf"])
def test_float_plan_on_both_exporters(graphs, exporter, gelu):
    model = graphs[(exporter, gelu)]
    assert all(n.name.startswith("n") and len(n.name) == 13 for n in model.graph.node)  # names are random
    plan = find_float_nodes(model)
    assert len(plan.layernorm) == 2 * LAYERS + 2  # ln_pre, 2 per block, ln_post
    assert len(plan.softmax) == LAYERS + 1         # attention + the head's basis softmax
    head_ops = _ops(model, plan.head)
    # The head: projection, PCA, L2 normalise, basis MatMul, Softmax, score MatMul; no LayerNorm inside.
    assert "LayerNormalization" not in head_ops and "Softmax" in head_ops
    assert head_ops.count("MatMul") + head_ops.count("Gemm") >= 3
    producer = {o: n.name for n in model.graph.node for o in n.output}
    assert producer["score"] in plan.head
    gelu_ops = _ops(model, plan.gelu)
    if gelu == "quick":
        assert sorted(gelu_ops) == sorted(["Mul", "Sigmoid", "Mul"] * LAYERS)
    else:
        assert gelu_ops.count("Erf") == LAYERS and len(gelu_ops) == 5 * LAYERS  # Div, Erf, Add, Mul, Mul
    # Nothing in the trunk's attention/MLP matmuls is kept float by the plan.
    trunk_matmuls = [n.name for n in model.graph.node if n.op_type in ("MatMul", "Gemm") and n.name not in plan.head]
    assert trunk_matmuls and not set(trunk_matmuls) & set(plan.all())


@pytest.mark.slow
def test_transformer_blocks_split_the_trunk(graphs):
    model = graphs[("dynamo", "quick")]
    blocks = transformer_blocks(model)
    assert len(blocks) == LAYERS
    assert all(blocks) and not set(blocks[0]) & set(blocks[1])
    head = set(find_float_nodes(model).head)
    assert not head & {n for b in blocks for n in b}


def test_head_needs_the_scoring_softmax_and_a_score_output():
    from onnx import TensorProto, helper

    x = helper.make_tensor_value_info("pixels", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("score", TensorProto.FLOAT, [1, 4])
    model = helper.make_model(helper.make_graph([helper.make_node("Relu", ["pixels"], ["score"])], "g", [x], [y]))
    with pytest.raises(ConfigError, match="Softmax"):
        find_float_nodes(model)
    with pytest.raises(ConfigError, match="no output named"):
        find_float_nodes(model, output="embedding")
    plan = find_float_nodes(model, keep_head=False)
    assert plan.all() == [] and model.graph.node[0].name  # unnamed nodes got names


def test_quick_gelu_needs_the_1702_constant():
    from onnx import TensorProto, helper, numpy_helper

    def graph(alpha):
        nodes = [helper.make_node("Mul", ["x", "a"], ["xa"]), helper.make_node("Sigmoid", ["xa"], ["s"]),
                 helper.make_node("Mul", ["x", "s"], ["y"])]
        init = [numpy_helper.from_array(np.asarray(alpha, np.float32), "a")]
        g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [2])], init)
        return helper.make_model(g)

    assert len(find_float_nodes(graph(1.702), keep_head=False).gelu) == 3
    assert find_float_nodes(graph(1.0), keep_head=False).gelu == ()  # SiLU-like, not QuickGELU


@pytest.mark.slow
def test_head_found_on_a_resnet_tower(tmp_path):
    """No LayerNorm anywhere in a ResNet tower: the head is still found from the scoring softmax up."""
    import onnx

    from rali_edge.export.api import export_bundle
    from rali_edge.model.tiny import make_random_bundle, tiny_resnet_backbone_config

    bundle = make_random_bundle(tmp_path / "rn", backbone_config=tiny_resnet_backbone_config(image_size=32, width=8))
    model = onnx.load(export_bundle(bundle, "onnx", "fp32", out_dir=tmp_path / "x").path)
    assert not [n for n in model.graph.node if n.op_type == "LayerNormalization"]
    plan = find_float_nodes(model)
    head_ops = _ops(model, plan.head)
    assert head_ops.count("Softmax") == 1 and head_ops.count("MatMul") + head_ops.count("Gemm") >= 3
    producer = {o: n.name for n in model.graph.node for o in n.output}
    assert producer["score"] in plan.head
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert convs and not set(convs) & set(plan.head)


def _conv_graph(layers: list[tuple[str, int]]):
    """uint8 pixels -> Cast -> Mul -> Add (normalisation) -> the given (op, stride) chain -> out."""
    from onnx import TensorProto, helper, numpy_helper

    nodes = [helper.make_node("Cast", ["pixels"], ["f"], to=TensorProto.FLOAT),
             helper.make_node("Mul", ["f", "scale"], ["m"]), helper.make_node("Add", ["m", "shift"], ["x0"])]
    init = [numpy_helper.from_array(np.ones((1, 3, 1, 1), np.float32), "scale"),
            numpy_helper.from_array(np.zeros((1, 3, 1, 1), np.float32), "shift"),
            numpy_helper.from_array(np.ones((3, 3, 3, 3), np.float32), "w")]
    for i, (op, stride) in enumerate(layers):
        src, dst = f"x{i}", f"x{i + 1}"
        if op == "Conv":
            nodes.append(helper.make_node("Conv", [src, "w"], [dst], name=f"conv{i}", pads=[1, 1, 1, 1],
                                          strides=[stride, stride]))
        elif op == "MaxPool":
            nodes.append(helper.make_node("MaxPool", [src], [dst], kernel_shape=[2, 2], strides=[2, 2]))
        else:
            nodes.append(helper.make_node(op, [src], [dst]))
    nodes.append(helper.make_node("Identity", [f"x{len(layers)}"], ["out"]))
    g = helper.make_graph(nodes, "g", [helper.make_tensor_value_info("pixels", TensorProto.UINT8, [1, 3, 16, 16])],
                          [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)], init)
    return helper.make_model(g)


def test_stem_is_the_first_conv_and_the_stride_one_convs_on_its_grid():
    chain = [("Conv", 2), ("Relu", 1), ("Conv", 1), ("Relu", 1), ("Conv", 1), ("MaxPool", 2), ("Conv", 1),
             ("Conv", 2)]
    plan = find_float_nodes(_conv_graph(chain), keep_head=False)
    assert plan.stem == ("conv0", "conv2", "conv4")  # the pooled grid's convs are not the stem
    assert set(plan.stem) <= set(plan.all())
    # A strided conv ends the stem as a pooling layer does.
    assert find_float_nodes(_conv_graph([("Conv", 1), ("Conv", 2), ("Conv", 1)]), keep_head=False).stem == ("conv0",)
    assert find_float_nodes(_conv_graph(chain), keep_head=False, keep_stem=False).stem == ()


@pytest.mark.slow
def test_stem_of_a_vit_is_its_patch_convolution(graphs):
    for model in graphs.values():
        stem = find_float_nodes(model).stem
        assert _ops(model, stem) == ["Conv"]
        assert stem[0] == next(n.name for n in model.graph.node if n.op_type == "Conv")


@pytest.mark.slow
@pytest.mark.parametrize("tower", ["modified_resnet", "timm_resnet"])
def test_stem_of_resnet_towers_is_their_three_full_resolution_convs(tmp_path, tower):
    from rali_edge.export.api import export_bundle
    from rali_edge.model.tiny import make_random_bundle, tiny_resnet_backbone_config, tiny_timm_backbone_config

    cfg = (tiny_resnet_backbone_config(image_size=32, width=8) if tower == "modified_resnet"
           else tiny_timm_backbone_config("test_resnet", image_size=32))
    bundle = make_random_bundle(tmp_path / "rn", backbone_config=cfg)
    model = onnx.load(export_bundle(bundle, "onnx", "fp32", out_dir=tmp_path / "x").path)
    convs = [n.name for n in model.graph.node if n.op_type == "Conv"]
    assert find_float_nodes(model).stem == tuple(convs[:3])  # conv1 (stride 2), conv2, conv3; then a pool
