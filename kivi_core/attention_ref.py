"""Reference decode attention over a KIVI layer: the spec and oracle for `decode_attention_triton`.

It dequantizes into fp32 temporaries, so it is for CPU runs and tests, not for speed.
"""

from __future__ import annotations

import torch

from .quant import dequantize_keys_ref, dequantize_values_ref
from .state import KiviState


def dequantize_state(state: KiviState, dtype: torch.dtype | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """All L keys and values of a layer as dense [B, H, L, D] tensors (quantized parts dequantized)."""
    s = state
    cpw_k = 32 // s.k_bits
    G = s.group_size
    keys = dequantize_keys_ref(
        s.k_codes[:, :, : s.n_kq // cpw_k], s.k_scale[:, :, : s.n_kq // G], s.k_min[:, :, : s.n_kq // G],
        s.k_bits, G,
    )
    values = dequantize_values_ref(
        s.v_codes[:, :, : s.n_vq], s.v_scale[:, :, : s.n_vq], s.v_min[:, :, : s.n_vq], s.v_bits, G
    )
    dtype = dtype or s.k_tail.dtype
    k = torch.cat([keys.to(dtype), s.k_tail.to(dtype)], dim=2)
    v = torch.cat([values.to(dtype), s.v_win.to(dtype)], dim=2)
    return k, v


def decode_attention_ref(
    query: torch.Tensor, state: KiviState, valid: torch.Tensor | None, scaling: float
) -> torch.Tensor:
    """Attention of the last q_len positions over all L positions of a KIVI layer.

    query [B, Hq, q, D] (Hq a multiple of the kv heads H: grouped-query attention); valid [B, L] bool or
    None (False = left padding); query i sits at position L - q + i and sees keys up to it (causal).
    Returns [B, q, Hq, D] in query's dtype (transformers' attention-output layout). A row with no valid
    key gives zeros.
    """
    B, Hq, q, D = query.shape
    k, v = dequantize_state(state, torch.float32)  # [B, H, L, D]
    H, L = k.shape[1], k.shape[2]
    qf = query.float().view(B, H, Hq // H, q, D)  # [B, H, group, q, D]
    scores = torch.einsum("bhgqd,bhld->bhgql", qf, k) * scaling
    pos_q = torch.arange(L - q, L, device=query.device).view(q, 1)
    allowed = torch.arange(L, device=query.device).view(1, L) <= pos_q  # [q, L]
    allowed = allowed.view(1, 1, 1, q, L)
    if valid is not None:
        allowed = allowed & valid.to(torch.bool).view(B, 1, 1, 1, L)
    scores = scores.masked_fill(~allowed, -torch.inf)
    p = torch.softmax(scores, dim=-1).nan_to_num(0.0)
    out = torch.einsum("bhgql,bhld->bhgqd", p, v)  # [B, H, group, q, D]
    return out.reshape(B, Hq, q, D).transpose(1, 2).to(query.dtype)
