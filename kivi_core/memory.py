"""KV-cache byte accounting: what a cache really holds, and the analytic size it should have."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .config import KiviConfig


@dataclass(frozen=True, slots=True)
class CacheBytes:
    """Bytes held by a cache's tensors (allocated capacity, not just the used part), by component."""

    codes: int = 0  # packed key and value codes
    scales: int = 0  # per-group scales and mins (model dtype)
    residual: int = 0  # full-precision key tail and value window

    @property
    def total(self) -> int:
        return self.codes + self.scales + self.residual

    def __add__(self, other: "CacheBytes") -> "CacheBytes":
        return CacheBytes(self.codes + other.codes, self.scales + other.scales, self.residual + other.residual)

    def as_dict(self) -> dict[str, int]:
        return {"codes": self.codes, "scales": self.scales, "residual": self.residual, "total": self.total}


def analytic_cache_bytes(
    config: KiviConfig | None,
    batch: int,
    kv_heads: int,
    head_dim: int,
    layers: int,
    seq_len: int,
    dtype: torch.dtype = torch.float16,
) -> int:
    """Live bytes of a settled cache after `seq_len` tokens; `config=None` gives the full-precision cache.

    KIVI: keys [0, L - L % F) packed (F = R, or G when R = 0) and the rest in full precision; values
    [0, L - R) packed and the last min(L, R) in full precision; b/8 bytes per code, two dtype values
    (scale, min) per group of G.
    """
    db = torch.empty((), dtype=dtype).element_size()
    L, D = seq_len, head_dim
    if config is None:
        per_head = 2 * L * D * db
    else:
        G, R, F = config.group_size, config.residual_length, config.key_flush
        n_kq = L - L % F
        n_vq = max(0, L - R)
        keys = n_kq * D * config.k_bits // 8 + (n_kq // G) * D * 2 * db + (L - n_kq) * D * db
        values = n_vq * D * config.v_bits // 8 + n_vq * (D // G) * 2 * db + (L - n_vq) * D * db
        per_head = keys + values
    return per_head * batch * kv_heads * layers
