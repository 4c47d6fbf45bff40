"""The FP16 variant of an ExecuTorch program: the image encoder in float16 except its LayerNorms,
the head in float32 (why: `half_encoder`).

torch is imported inside the functions: `import rali_edge` stays light.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch
    from torch import nn


def cast_module(dtype: torch.dtype) -> nn.Module:
    """A module that casts its input to `dtype` (built here: torch is imported lazily)."""
    from torch import nn

    class Cast(nn.Module):
        def forward(self, x):
            return x.to(dtype)

    return Cast()


def float32_layer_norm(norm: nn.LayerNorm) -> nn.Module:
    """`norm` computed in float32 on float16 input, its output cast back to float16."""
    import copy

    import torch
    import torch.nn.functional as F
    from torch import nn

    class Float32LayerNorm(nn.Module):
        def __init__(self):
            super().__init__()
            self.norm = copy.deepcopy(norm).float()

        def forward(self, x):
            n = self.norm
            return F.layer_norm(x.to(torch.float32), n.normalized_shape, n.weight, n.bias, n.eps).to(x.dtype)

    return Float32LayerNorm()


def half_encoder(folded: nn.Module) -> nn.Module:
    """FP16 here: the image encoder (the trunk: patch conv with the folded normalisation, the
    transformer, the pooling) runs in float16, weights and activations, except its LayerNorms; its
    input is cast from the uint8 pixels and its pooled output back to float32. LayerNorm stays
    float32 because ExecuTorch runs it outside XNNPACK, in portable kernels whose float16 LayerNorm
    is wrong at ViT-B width (score off by 1.3 on a ViT-B/16; exact in float32). The head (PCA
    projection, cosine similarity, softmax, weighted sum) stays float32: a few small matmuls, and the
    softmax over 1/tau-scaled logits is where float16 would lose most. Input uint8, score float32."""
    import torch
    from torch import nn

    trunk = folded.trunk.half()
    for name, module in list(trunk.named_modules()):
        if isinstance(module, nn.LayerNorm):
            parent, _, attr = name.rpartition(".")
            setattr(trunk.get_submodule(parent) if parent else trunk, attr, float32_layer_norm(module))
    folded.trunk = nn.Sequential(cast_module(torch.float16), trunk, cast_module(torch.float32))
    return folded
