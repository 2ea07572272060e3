"""A read-only view of one layer's KIVI storage: what a decode-attention implementation reads."""

from __future__ import annotations

from typing import NamedTuple

import torch


class KiviState(NamedTuple):
    """Token positions 0..L-1 of one layer, split as KIVI keeps them.

    keys:   [0, n_kq) packed per channel (see kivi_core.quant), [n_kq, L) in `k_tail` (full precision)
    values: [0, n_vq) packed per token,                          [n_vq, L) in `v_win`  (full precision)
    n_kq >= n_vq always holds, so every position is in one of three segments:
    [0, n_vq) K and V packed; [n_vq, n_kq) K packed, V full; [n_kq, L) both full.

    The packed tensors are the cache's preallocated storage (capacity >= what is used along the token
    axis, stride as allocated); `k_tail` and `v_win` are views of exactly n_kt / n_vw tokens.
    """

    k_codes: torch.Tensor  # [B, H, cap_k // cpw_k, D] int32
    k_scale: torch.Tensor  # [B, H, cap_k // G, D] model dtype
    k_min: torch.Tensor  # [B, H, cap_k // G, D]
    n_kq: int
    k_tail: torch.Tensor  # [B, H, L - n_kq, D]
    v_codes: torch.Tensor  # [B, H, cap_v, D // cpw_v] int32
    v_scale: torch.Tensor  # [B, H, cap_v, D // G]
    v_min: torch.Tensor  # [B, H, cap_v, D // G]
    n_vq: int
    v_win: torch.Tensor  # [B, H, L - n_vq, D]
    k_bits: int
    v_bits: int
    group_size: int

    @property
    def length(self) -> int:
        return self.n_kq + self.k_tail.shape[2]
