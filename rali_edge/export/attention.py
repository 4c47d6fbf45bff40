"""Swap the image tower's self-attention for an exactly equivalent batch-first form before export.

Why: the dynamo exporter lowers open_clip's nn.MultiheadAttention seq-first: a [1,0,2] Transpose in
and out of every block, the packed QKV projection unpacked by a 5-D Transpose + Gathers, per-head
Reshape/Transposes, then SDPA decomposed with two Muls by sqrt(scale) and one more K Transpose (HF's
CLIPAttention gets the last part too). INT8 does not make these float passes faster (~95 ms of
Transposes + ~20 ms of Split per batch-8 ViT-B/16 run, benchmarks/RESULTS_int8.md). The
replacement computes the same function with one layout transform per tensor:

    q = x @ (scale * Wq).T + scale * bq,  k = Linear_k(x),  v = Linear_v(x)          x: [B, L, C]
    q, v -> [B, H, L, D] and k -> [B, H, D, L]         (one Reshape + one Transpose each)
    out = Linear_o(softmax(q @ k) @ v -> [B, L, C])     (one Transpose + one Reshape)

The separate Q/K/V Linears export as plain MatMul + Add, which the INT8 quantizer quantizes per
channel. Only module types known here are replaced (dispatch on exact types): nn.MultiheadAttention
as the `attn` of open_clip's ResidualAttentionBlock (self-attention, either layout) and transformers'
CLIPAttention as the `self_attn` of a CLIPEncoderLayer. Anything else (open_clip's CustomResidual-
AttentionBlock and AttentionalPooler, ModifiedResNet's AttentionPool2d, timm towers) stays as it is.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from rali_edge.errors import ExportError

# (q/v permutation, k permutation, output permutation) from [B, L, H, D] (batch-first input) or
# [L, B, H, D] (seq-first input) to [B, H, L, D] / [B, H, D, L], and back.
_PERMS = {False: ((0, 2, 1, 3), (0, 2, 3, 1), (0, 2, 1, 3)),
          True: ((1, 2, 0, 3), (1, 2, 3, 0), (2, 0, 1, 3))}


class BatchFirstAttention(nn.Module):
    """Multi-head self-attention as explicit MatMul + Softmax; the softmax scale lives in q_proj."""

    def __init__(self, q_proj: nn.Linear, k_proj: nn.Linear, v_proj: nn.Linear, out_proj: nn.Linear,
                 num_heads: int, seq_first: bool = False, dropout: float = 0.0):
        super().__init__()
        self.q_proj, self.k_proj, self.v_proj, self.out_proj = q_proj, k_proj, v_proj, out_proj
        self.num_heads = num_heads
        self.seq_first = seq_first
        self.dropout = dropout

    def attend(self, x: torch.Tensor) -> torch.Tensor:
        """x [B, L, C] ([L, B, C] when seq_first) -> same shape."""
        perm_qv, perm_k, perm_out = _PERMS[self.seq_first]
        heads = (self.num_heads, -1)
        q = self.q_proj(x).unflatten(-1, heads).permute(perm_qv)
        k = self.k_proj(x).unflatten(-1, heads).permute(perm_k)
        v = self.v_proj(x).unflatten(-1, heads).permute(perm_qv)
        weights = F.dropout(torch.softmax(torch.matmul(q, k), dim=-1), self.dropout, self.training)
        return self.out_proj(torch.matmul(weights, v).permute(perm_out).flatten(-2))


class OpenClipSelfAttention(BatchFirstAttention):
    """Drop-in for nn.MultiheadAttention as open_clip's ResidualAttentionBlock calls it (self-attention)."""

    def forward(self, query, key, value, key_padding_mask=None, need_weights=True, attn_mask=None,
                average_attn_weights=True, is_causal=False):
        if key is not query or value is not query:
            raise ExportError("the export attention rewrite handles self-attention only (key and value are the query)")
        if key_padding_mask is not None or attn_mask is not None or is_causal or need_weights:
            raise ExportError("the export attention rewrite takes no mask and returns no attention weights")
        return self.attend(query), None


class HFSelfAttention(BatchFirstAttention):
    """Drop-in for transformers' CLIPAttention in a vision encoder layer (no attention mask)."""

    def forward(self, hidden_states, attention_mask=None, **kwargs):
        # kwargs: transformers' per-call flags for its attention backends; none changes this math
        if attention_mask is not None:
            raise ExportError("the export attention rewrite takes no attention mask (image towers have none)")
        return self.attend(hidden_states), None


def _linear(weight: torch.Tensor, bias: torch.Tensor | None, scale: float = 1.0) -> nn.Linear:
    """An nn.Linear holding scale * (weight, bias), scaled in float64 and cast back."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None, dtype=weight.dtype,
                      device=weight.device)
    with torch.no_grad():
        layer.weight.copy_((weight.detach().to(torch.float64) * scale).to(weight.dtype))
        if bias is not None:
            layer.bias.copy_((bias.detach().to(torch.float64) * scale).to(bias.dtype))
    return layer


def _copy(linear: nn.Linear, scale: float = 1.0) -> nn.Linear:
    return _linear(linear.weight, linear.bias, scale)


def _from_open_clip(block: nn.Module, mha: nn.Module) -> nn.Module | None:
    """open_clip ResidualAttentionBlock.attn -> OpenClipSelfAttention, or None when not plain self-attention."""
    plain = (type(mha) is nn.MultiheadAttention and mha._qkv_same_embed_dim and mha.in_proj_weight is not None
             and mha.bias_k is None and mha.bias_v is None and not mha.add_zero_attn
             and type(mha.out_proj) in (nn.Linear, nn.modules.linear.NonDynamicallyQuantizableLinear))
    if not plain or hasattr(block, "ln_1_kv"):  # ln_1_kv: a cross-attention block
        return None
    c, heads = mha.embed_dim, mha.num_heads
    w, b = mha.in_proj_weight, mha.in_proj_bias
    parts = [(w[i * c:(i + 1) * c], None if b is None else b[i * c:(i + 1) * c]) for i in range(3)]
    scale = float(mha.head_dim) ** -0.5  # what SDPA applies inside nn.MultiheadAttention
    return OpenClipSelfAttention(_linear(*parts[0], scale), _linear(*parts[1]), _linear(*parts[2]),
                                 _copy(mha.out_proj), heads, seq_first=not mha.batch_first, dropout=mha.dropout)


# Attention implementations that compute plain softmax(q k^T * scale) v (no other HF backend is assumed equal).
HF_IMPLEMENTATIONS = ("eager", "sdpa")


def _from_hf(layer: nn.Module, attn: nn.Module) -> nn.Module | None:
    """transformers CLIPEncoderLayer.self_attn -> HFSelfAttention, or None when it is not the plain form."""
    from transformers.models.clip.modeling_clip import CLIPAttention

    if (type(attn) is not CLIPAttention or attn.is_causal
            or attn.config._attn_implementation not in HF_IMPLEMENTATIONS
            or any(type(p) is not nn.Linear for p in (attn.q_proj, attn.k_proj, attn.v_proj, attn.out_proj))):
        return None
    return HFSelfAttention(_copy(attn.q_proj, attn.scale), _copy(attn.k_proj), _copy(attn.v_proj),
                           _copy(attn.out_proj), attn.num_heads, dropout=attn.dropout)


def _rules() -> dict[type, tuple[str, Callable[[nn.Module, nn.Module], nn.Module | None]]]:
    """Parent block type -> (attribute holding its attention, converter).

    A library not imported yet cannot have built an instance of its types, so it is not imported here.
    """
    rules = {}
    if "open_clip.transformer" in sys.modules:
        from open_clip.transformer import ResidualAttentionBlock

        rules[ResidualAttentionBlock] = ("attn", _from_open_clip)
    if "transformers.models.clip.modeling_clip" in sys.modules:
        from transformers.models.clip.modeling_clip import CLIPEncoderLayer

        rules[CLIPEncoderLayer] = ("self_attn", _from_hf)
    return rules


def batch_first_attention(tower: nn.Module) -> list[str]:
    """Replace, in place, every known self-attention module of `tower`; returns the replaced names."""
    rules = _rules()
    replaced = []
    for name, block in list(tower.named_modules()):
        rule = rules.get(type(block))
        if rule is None:
            continue
        attr, convert = rule
        old = getattr(block, attr)
        new = convert(block, old)
        if new is not None:
            setattr(block, attr, new.train(old.training))
            replaced.append(f"{name}.{attr}" if name else attr)
    return replaced
