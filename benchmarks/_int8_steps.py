"""The ORT steps bench_int8.py can time beside the defaults (`--steps`), one function each: what each
change to the INT8 graph or its session gives, measured in the same interleaved run as the defaults.
benchmarks/RESULTS_int8.md records what each gave. Every step starts from the default FP32 export."""

from __future__ import annotations

from pathlib import Path

from _bench_variants import Variant, ort_int8

NO_SPINNING = (("session.intra_op.allow_spinning", "0"),)


def _config(**changes):
    from rali_edge.quantize import OnnxInt8Config

    return OnnxInt8Config(**changes)


def _int8(name: str, fp32: Path, workdir: Path, calibration, **changes) -> Variant:
    return Variant(name, "ort", "int8", ort_int8(fp32, workdir, calibration, _config(**changes), name))


def int8_previous(fp32: Path, workdir: Path, calibration) -> Variant:
    """The default before 2026-12-06 (issue 31): neither of the two changes below."""
    return _int8("ort-int8-prev", fp32, workdir, calibration, signed_attention_operands=False,
                 quantize_before_transpose=False)


def int8_unsigned(fp32: Path, workdir: Path, calibration) -> Variant:
    """The attention's k and v operands u8 as before (u8 x u8 MLAS kernel), the rest as the default."""
    return _int8("ort-int8-unsigned", fp32, workdir, calibration, signed_attention_operands=False)


def int8_late_quantize(fp32: Path, workdir: Path, calibration) -> Variant:
    """QuantizeLinear left after the head-split Transpose/Reshape (float transposes), the rest as the default."""
    return _int8("ort-int8-late-q", fp32, workdir, calibration, quantize_before_transpose=False)


def int8_attention_float(fp32: Path, workdir: Path, calibration) -> Variant:
    """q @ k and attn @ v in float (only the weight GEMMs in INT8)."""
    return _int8("ort-int8-attn-float", fp32, workdir, calibration, quantize_attention_matmuls=False)


def int8_nobias(fp32: Path, workdir: Path, calibration) -> Variant:
    """Without the MatMul + bias Add fusion (ort_fusions.fuse_matmul_bias)."""
    return _int8("ort-int8-nobias", fp32, workdir, calibration, fuse_bias=False)


def int8_stem(fp32: Path, workdir: Path, calibration) -> Variant:
    """The patch-embedding convolution in INT8 too (keep_stem_float=False; kept float by default for
    accuracy: its 8-bit input loses pixel-level cues)."""
    return _int8("ort-int8-stem", fp32, workdir, calibration, keep_stem_float=False)


def _mha(fp32: Path) -> Path:
    import onnx

    from _mha_rewrite import fuse_attention

    target = fp32.with_name(f"{fp32.stem}-mha.onnx")
    if not target.is_file():
        model = onnx.load(str(fp32))
        if not fuse_attention(model):
            raise SystemExit(f"{fp32}: no attention matched the MultiHeadAttention pattern")
        onnx.save(model, str(target))
    return target


def fp32_mha(fp32: Path, workdir: Path, calibration) -> Variant:
    """FP32 with ORT's fused MultiHeadAttention (_mha_rewrite.py): what the fusion gives FP32 alone."""
    return Variant("ort-fp32-mha", "ort", "fp32", _mha(fp32))


def int8_mha(fp32: Path, workdir: Path, calibration) -> Variant:
    """The fused float MultiHeadAttention, the projections around it INT8 (default quantization)."""
    return Variant("ort-int8-mha", "ort", "int8", ort_int8(_mha(fp32), workdir, calibration, tag="int8"))


def fp32_nospin(fp32: Path, workdir: Path, calibration) -> Variant:
    """ORT's worker threads sleep between ops instead of spinning (the project's runner spins)."""
    return Variant("ort-fp32-nospin", "ort", "fp32", fp32, NO_SPINNING)


def int8_nospin(fp32: Path, workdir: Path, calibration) -> Variant:
    return Variant("ort-int8-nospin", "ort", "int8", ort_int8(fp32, workdir, calibration), NO_SPINNING)


STEPS = {"ort-int8-prev": int8_previous, "ort-int8-unsigned": int8_unsigned, "ort-int8-late-q": int8_late_quantize,
         "ort-int8-attn-float": int8_attention_float, "ort-int8-nobias": int8_nobias, "ort-int8-stem": int8_stem,
         "ort-fp32-mha": fp32_mha, "ort-int8-mha": int8_mha, "ort-fp32-nospin": fp32_nospin,
         "ort-int8-nospin": int8_nospin}
