"""Fold a RaliScorer and its preprocessing into ONE torch module: pixels in, score out.

Inside the folded graph, in order:
1. pixels -> float (uint8 0..255, float in [0, 1], or already normalised: see ExportSpec.input_kind);
2. the 1/255 scale and the per-channel mean/std folded into the patch-embedding convolution
   (exact because that convolution has no padding: W' = W * a / std_c, b' = b - sum W * mean_c / std_c);
3. the image encoder up to its pooled output, its known self-attention modules swapped for an exactly
   equivalent batch-first form (export/attention.py: fewer Transposes, quantizable Q/K/V MatMuls);
4. the visual projection and the PCA ((f - mean) / |scale| @ C.T) folded into ONE nn.Linear where the
   projection is a plain matrix at the end of the encoder (HF `visual_projection` without bias,
   open_clip `visual.proj`); otherwise only the PCA is folded;
5. L2 normalisation; cosine similarity with the pre-normalised basis vectors, 1/tau folded in;
6. softmax and the weighted sum of basis scores as a 2-D matmul (Core ML rejects the 1-D form).

All folding arithmetic runs in float64 and is cast to the scorer's dtype at the end, so a float64
scorer gives a float64 folded module (that is how the equality test checks it to 1e-5).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rali_edge.bundle import PreprocessConfig
from rali_edge.errors import UnsupportedOptionError
from rali_edge.export.attention import batch_first_attention
from rali_edge.export.spec import ExportSpec

# The factor that turns the input into [0, 1] before mean/std; None: the input is already normalised.
INPUT_SCALE: dict[str, float | None] = {"uint8": 1.0 / 255.0, "unit": 1.0, "normalized": None,
                                        "uint8_nhwc": 1.0 / 255.0}


class FoldedScorer(nn.Module):
    """pixels [B,3,H,W] -> score [B] (and the normalised PCA embedding [B, M] when asked)."""

    def __init__(self, trunk: nn.Module, affine: nn.Linear, basis: nn.Linear, scores: torch.Tensor,
                 with_embedding: bool):
        super().__init__()
        self.trunk = trunk
        self.affine = affine
        self.basis = basis
        self.register_buffer("scores", scores.reshape(-1, 1))  # [K, 1]: 2-D for Core ML
        self.with_embedding = with_embedding

    def forward(self, pixels: torch.Tensor):
        x = pixels.to(self.affine.weight.dtype)
        emb = F.normalize(self.affine(self.trunk(x)), dim=-1)
        weights = torch.softmax(self.basis(emb), dim=-1)
        score = torch.matmul(weights, self.scores).reshape(-1)
        if self.with_embedding:
            return score, emb
        return score


def fold_scorer(scorer: nn.Module, preprocess: PreprocessConfig, spec: ExportSpec,
                attention_rewrite: bool = True) -> FoldedScorer:
    """The folded module for `scorer` (a RaliScorer; left untouched: everything is deep-copied).

    attention_rewrite=False keeps the tower's own attention modules (for comparisons; same outputs).
    """
    backbone, head = scorer.backbone, scorer.head
    encoder = copy.deepcopy(backbone.image_encoder()).eval()
    if attention_rewrite:
        # Every backend (ONNX, ORT, Core ML, TensorRT) exports this module: the batch-first attention
        # removes the exporter's seq-first Transposes and packed-QKV unpacking (export/attention.py).
        batch_first_attention(encoder)
    scale = INPUT_SCALE[spec.input_kind]
    trunk, projection = split_projection(backbone, encoder)
    if scale is not None:
        conv_name = backbone.patch_embedding_name()
        if conv_name is not None:
            _fold_normalization(encoder, conv_name, scale, preprocess.mean, preprocess.std)
        else:  # no padding-free patch conv (e.g. a ResNet stem): normalise explicitly in the graph
            trunk = nn.Sequential(InputNormalization(scale, preprocess.mean, preprocess.std), trunk)
    if spec.channels_last:   # NHWC in (an Android bitmap's layout): one permute at the graph's input
        trunk = nn.Sequential(ChannelsLastInput(), trunk)
    dtype = head.pca_components.dtype
    affine = _pca_affine(head, projection, dtype)
    basis = _basis_linear(head, dtype)
    folded = FoldedScorer(trunk, affine, basis, head.proto_scores.detach().clone(), spec.with_embedding)
    return folded.eval().requires_grad_(False)


# ---------------------------------------------------------------- normalisation into the patch conv


class ChannelsLastInput(nn.Module):
    """[B, H, W, 3] -> [B, 3, H, W]."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.permute(0, 3, 1, 2)


class InputNormalization(nn.Module):
    """(x * scale - mean) / std per channel, as one multiply-add, for towers it cannot be folded into."""

    def __init__(self, scale: float, mean, std):
        super().__init__()
        m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
        s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
        self.register_buffer("mul", (scale / s).float())
        self.register_buffer("add", (-m / s).float())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.mul.to(x.dtype) + self.add.to(x.dtype)


def _fold_normalization(encoder: nn.Module, conv_name: str, scale: float, mean, std) -> None:
    conv = encoder.get_submodule(conv_name)
    if not isinstance(conv, nn.Conv2d):
        raise UnsupportedOptionError(f"{conv_name} is a {type(conv).__name__}, not the patch Conv2d")
    if any(p != 0 for p in _padding(conv)) or conv.groups != 1 or conv.in_channels != 3:
        raise UnsupportedOptionError(
            f"{conv_name}: normalisation folds exactly only into an unpadded, ungrouped 3-channel conv"
        )
    w = conv.weight.detach().to(torch.float64)
    m = torch.tensor(mean, dtype=torch.float64).view(1, 3, 1, 1)
    s = torch.tensor(std, dtype=torch.float64).view(1, 3, 1, 1)
    b = conv.bias.detach().to(torch.float64) if conv.bias is not None else torch.zeros(conv.out_channels, dtype=torch.float64)
    new = nn.Conv2d(3, conv.out_channels, conv.kernel_size, stride=conv.stride, bias=True,
                    device=conv.weight.device, dtype=conv.weight.dtype)  # HF's conv has no bias: add one
    with torch.no_grad():
        new.weight.copy_((w * scale / s).to(conv.weight.dtype))
        new.bias.copy_((b - (w * m / s).sum(dim=(1, 2, 3))).to(conv.weight.dtype))
    parent_name, _, attr = conv_name.rpartition(".")
    setattr(encoder.get_submodule(parent_name) if parent_name else encoder, attr, new)


def _padding(conv: nn.Conv2d) -> tuple[int, ...]:
    if isinstance(conv.padding, str):
        return (0,) if conv.padding == "valid" else (1,)
    return tuple(conv.padding)


# ---------------------------------------------------------------- projection split (type dispatch)


class _HFPooled(nn.Module):
    """HF vision tower up to the pooled output (before visual_projection)."""

    def __init__(self, vision_model: nn.Module):
        super().__init__()
        self.vision_model = vision_model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.vision_model(pixel_values=pixels).pooler_output


def _split_hf(encoder: nn.Module) -> tuple[nn.Module, torch.Tensor | None]:
    """HF image encoder = vision_model + visual_projection (CLIPModel.get_image_features)."""
    proj = encoder.visual_projection
    if not isinstance(proj, nn.Linear) or proj.bias is not None:
        return encoder, None
    return _HFPooled(encoder.vision_model), proj.weight.detach().T  # [width, D]


def _split_open_clip(encoder: nn.Module) -> tuple[nn.Module, torch.Tensor | None]:
    from open_clip.transformer import VisionTransformer

    if not isinstance(encoder, VisionTransformer) or not isinstance(encoder.proj, torch.Tensor):
        return encoder, None  # e.g. a timm tower: fold only the PCA
    matrix = encoder.proj.detach().clone()  # [width, D]; forward does `pooled @ proj` last
    encoder.proj = None  # open_clip skips the projection when proj is None
    return encoder, matrix


def _splitters() -> dict[type, Callable[[nn.Module], tuple[nn.Module, torch.Tensor | None]]]:
    from rali_edge.model.backbone import HFClipBackbone, OpenClipBackbone

    return {HFClipBackbone: _split_hf, OpenClipBackbone: _split_open_clip}


def split_projection(backbone: nn.Module, encoder: nn.Module) -> tuple[nn.Module, torch.Tensor | None]:
    """(trunk, projection matrix [width, D]) when the encoder ends in a plain matrix, else (encoder, None).

    `encoder` is a deep copy of `backbone.image_encoder()`; it may be modified.
    """
    splitter = _splitters().get(type(backbone))
    return splitter(encoder) if splitter is not None else (encoder, None)


# ---------------------------------------------------------------- head folding


def _pca_affine(head: nn.Module, projection: torch.Tensor | None, dtype: torch.dtype) -> nn.Linear:
    """x = ((h @ P - mean) / |scale|) @ C.T  ==  h @ W.T + b, computed in float64."""
    f64 = torch.float64
    comps = head.pca_components.detach().to(f64)  # [M, D]
    inv = 1.0 / head.pca_scale.detach().to(f64).abs()  # [D]
    weight = comps * inv  # [M, D]
    bias = -(weight @ head.pca_mean.detach().to(f64))  # [M]
    if projection is not None:
        weight = weight @ projection.to(f64).T  # [M, width]
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=True, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_(weight.to(dtype))
        layer.bias.copy_(bias.to(dtype))
    return layer


def _basis_linear(head: nn.Module, dtype: torch.dtype) -> nn.Linear:
    """Cosine similarity with the normalised prototypes, times 1/tau = logit_scale.clamp(min=1e-6)."""
    protos = F.normalize(head.prototypes.detach().to(torch.float64), dim=-1)
    logit = head.logit_scale.detach().to(torch.float64).clamp(min=1e-6)
    layer = nn.Linear(protos.shape[1], protos.shape[0], bias=False, dtype=dtype)
    with torch.no_grad():
        layer.weight.copy_((protos * logit).to(dtype))
    return layer
