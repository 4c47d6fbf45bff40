"""ONNX pieces of bench_perf.py: ORT sessions, GEMM-peak graphs, and the FP32/INT8 scorer files."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def session_options(threads: int):
    """The options every timing uses: `threads` intra-op threads, one inter-op, all graph optimisations."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return opts


def ort_session(path: Path, threads: int):
    import onnxruntime as ort

    return ort.InferenceSession(str(path), session_options(threads), providers=["CPUExecutionProvider"])


def _gemm_model(n: int, int8: bool):
    """One MatMul (FP32) or MatMulInteger (u8 activations x s8 weights, as the INT8 scorer runs)."""
    from onnx import TensorProto, helper, numpy_helper

    rng = np.random.default_rng(0)
    if int8:
        b = numpy_helper.from_array(rng.integers(-127, 128, (n, n), dtype=np.int8), "B")
        azp = numpy_helper.from_array(np.array(128, dtype=np.uint8), "a_zp")
        node = helper.make_node("MatMulInteger", ["A", "B", "a_zp"], ["Y"])
        inits, a_type, y_type = [b, azp], TensorProto.UINT8, TensorProto.INT32
    else:
        b = numpy_helper.from_array(rng.standard_normal((n, n), dtype=np.float32), "B")
        node = helper.make_node("MatMul", ["A", "B"], ["Y"])
        inits, a_type, y_type = [b], TensorProto.FLOAT, TensorProto.FLOAT
    graph = helper.make_graph([node], "gemm", [helper.make_tensor_value_info("A", a_type, [n, n])],
                              [helper.make_tensor_value_info("Y", y_type, [n, n])], inits)
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])


def gemm_calls(threads: int, size: int = 2048) -> dict[str, tuple]:
    """{name: (callable, ops per call)}: an n x n x n matmul in torch FP32, ORT MatMul FP32 and ORT
    MatMulInteger (u8 x s8, the INT8 scorer's kernel). Timed by the caller, beside the models."""
    import onnxruntime as ort
    import torch

    ops = 2.0 * size**3
    a = torch.randn(size, size)
    b = torch.randn(size, size)
    calls = {"torch_fp32": (lambda: torch.mm(a, b), ops)}
    rng = np.random.default_rng(1)
    feeds = {False: rng.standard_normal((size, size), dtype=np.float32),
             True: rng.integers(0, 256, (size, size), dtype=np.uint8)}
    for int8, key in ((False, "ort_fp32"), (True, "ort_int8")):
        sess = ort.InferenceSession(_gemm_model(size, int8).SerializeToString(), session_options(threads),
                                    providers=["CPUExecutionProvider"])
        feed = {"A": feeds[int8]}
        calls[key] = (lambda sess=sess, feed=feed: sess.run(None, feed), ops)
    return calls


# ---------------------------------------------------------------- scorer files


def shipped_available() -> tuple[bool, str]:
    """Whether rali_edge's own exporter and quantizer are importable (they are written in parallel)."""
    import importlib

    for module, name in (("rali_edge.export.api", "export_bundle"), ("rali_edge.quantize.api", "quantize"),
                         ("rali_edge.calibration", "from_pixels")):
        if importlib.util.find_spec(module) is None:
            return False, f"{module} is not there yet"
        if not hasattr(importlib.import_module(module), name):
            return False, f"{module}.{name} is not there yet"
    return True, ""


def make_artifacts(scorer, preprocess, image_size: int, out_dir: Path, pipeline: str, calib_images: int,
                   log, calib_batch: int = 8, reuse: bool = False) -> dict:
    """{"pipeline", "fp32": Path, "int8": Path}: ONNX FP32 (uint8 input, dynamic batch) and INT8 (cpu profile)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    ok, why = shipped_available()
    if pipeline == "shipped" and not ok:
        raise SystemExit(f"--pipeline shipped: {why}")
    use_shipped = pipeline == "shipped" or (pipeline == "auto" and ok)
    rng = np.random.default_rng(123)
    calib = rng.integers(0, 256, (calib_images, 3, image_size, image_size), dtype=np.uint8)
    if use_shipped:
        return _shipped(scorer, preprocess, out_dir, calib, log, calib_batch, reuse)
    log(f"standalone export ({why or 'asked for'})")
    return _standalone(scorer, preprocess, image_size, out_dir, calib, log)


def _shipped(scorer, preprocess, out_dir: Path, calib: np.ndarray, log, calib_batch: int, reuse: bool) -> dict:
    from rali_edge.bundle import Provenance
    from rali_edge.calibration import from_pixels
    from rali_edge.export.api import export_bundle
    from rali_edge.quantize.api import quantize
    from rali_edge.quantize.config import OnnxInt8Config

    previous = sorted((out_dir / "onnx").glob("*.onnx")) if reuse else []
    if previous:   # --reuse: the FP32 export of an earlier run in the same --workdir (same seed, same model)
        fp32 = previous[0]
        log(f"reusing {fp32}")
    else:
        log("saving the random-weight bundle")
        bundle = scorer.save(out_dir / "bundle", preprocess,
                             Provenance.now(seeds=[0], notes={"random_weights": True, "made_by": "bench_perf"}))
        log("exporting ONNX FP32 (rali_edge.export)")
        fp32 = Path(export_bundle(bundle, "onnx", "fp32", out_dir=out_dir / "onnx").path)
    log("quantizing INT8 cpu profile (rali_edge.quantize)")
    int8 = out_dir / "int8.onnx"
    # calibration_batch: ORT holds every intermediate tensor of a calibration batch; ViT-L/14@336 at
    # batch 8 needed > 22 GB here (OOM-killed), so the big model calibrates in smaller batches.
    quantize(OnnxInt8Config(profile="cpu", calibration_batch=calib_batch), fp32, int8,
             from_pixels(calib, "random uint8 pixels", seed=123))
    return {"pipeline": "shipped (rali_edge.export + rali_edge.quantize)", "fp32": fp32, "int8": int8}


def _standalone(scorer, preprocess, image_size: int, out_dir: Path, calib: np.ndarray, log) -> dict:
    import onnx
    import torch
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    from rali_edge.export.fold import fold_scorer
    from rali_edge.export.spec import ExportSpec
    from rali_edge.quantize.patterns import find_float_nodes

    folded = fold_scorer(scorer, preprocess, ExportSpec(image_size=image_size))
    fp32 = out_dir / "fp32.onnx"
    log("exporting ONNX FP32 (torch.onnx.export, dynamo)")
    example = torch.randint(0, 256, (2, 3, image_size, image_size), dtype=torch.uint8)
    torch.onnx.export(folded, (example,), str(fp32), dynamo=True, opset_version=18, input_names=["pixels"],
                      output_names=["score"], dynamic_shapes={"pixels": {0: torch.export.Dim("batch", max=1024)}},
                      external_data=False)
    model = onnx.load(str(fp32))
    plan = find_float_nodes(model)   # head, LayerNorm, Softmax, GELU stay float; names nodes in place
    named = out_dir / "fp32_named.onnx"
    onnx.save(model, str(named))

    class Reader:
        def __init__(self):
            self.it = iter([{"pixels": calib[i : i + 8]} for i in range(0, len(calib), 8)])

        def get_next(self):
            return next(self.it, None)

    int8 = out_dir / "int8.onnx"
    log("quantizing INT8 (quantize_static QDQ, u8 activations, s8 per-channel weights)")
    quantize_static(str(named), str(int8), Reader(), quant_format=QuantFormat.QDQ,
                    op_types_to_quantize=["Conv", "MatMul", "Gemm"], per_channel=True, reduce_range=False,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
                    nodes_to_exclude=plan.all(), calibrate_method=CalibrationMethod.MinMax,
                    extra_options={"ActivationSymmetric": False, "WeightSymmetric": True})
    named.unlink()
    return {"pipeline": "standalone (torch.onnx.export + quantize_static)", "fp32": fp32, "int8": int8}


def fuse_for_cpu(source: Path, out: Path, num_heads: int, hidden: int) -> dict:
    """onnxruntime.transformers' ViT fusions (BiasGelu, LayerNorm; Attention when its pattern matches).
    An experiment beside the shipped graph, not what rali-edge ships: returns the fusion counts."""
    from onnxruntime.transformers.fusion_options import FusionOptions
    from onnxruntime.transformers.optimizer import optimize_model

    model = optimize_model(str(source), model_type="vit", num_heads=num_heads, hidden_size=hidden,
                           optimization_options=FusionOptions("vit"), opt_level=0, use_gpu=False)
    model.save_model_to_file(str(out))
    return {k: v for k, v in model.get_fused_operator_statistics().items() if v}


def profile_ops(path: Path, threads: int, feed: np.ndarray, runs: int = 2) -> dict[str, float]:
    """ms per run spent in each op type (ORT's own profiler, after one warm-up run), largest first."""
    import json

    import onnxruntime as ort

    opts = session_options(threads)
    opts.enable_profiling = True
    opts.profile_file_prefix = str(Path(path).with_suffix("")) + "-profile"
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    sess.run(None, {name: feed})   # warm-up, also profiled: subtracted below by keeping the last `runs`
    for _ in range(runs):
        sess.run(None, {name: feed})
    trace = Path(sess.end_profiling())
    events = json.loads(trace.read_text())
    trace.unlink()
    runs_seen = [e for e in events if e.get("cat") == "Session" and e.get("name") == "model_run"]
    last_start = runs_seen[-runs]["ts"] if len(runs_seen) >= runs else 0
    per_op: dict[str, float] = {}
    for e in events:
        if e.get("cat") == "Node" and e.get("name", "").endswith("_kernel_time") and e["ts"] >= last_start:
            op = e.get("args", {}).get("op_name", "?")
            per_op[op] = per_op.get(op, 0.0) + e["dur"] / 1000.0 / runs
    return dict(sorted(per_op.items(), key=lambda kv: -kv[1]))
