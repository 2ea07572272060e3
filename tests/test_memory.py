"""Byte accounting: what the cache holds equals its tensors' storage and stays near the analytic size."""

import pytest
import torch

from kivi_core import KiviConfig, KiviLayer, analytic_cache_bytes


def _fill(cfg, L, steps, B=1, H=2, D=128, dtype=torch.float16):
    layer = KiviLayer(cfg)  # a step: update, attention (reads storage), settle
    layer.update(torch.randn(B, H, L, D, dtype=dtype), torch.randn(B, H, L, D, dtype=dtype))
    layer.settle()
    for _ in range(steps):
        layer.update(torch.randn(B, H, 1, D, dtype=dtype), torch.randn(B, H, 1, D, dtype=dtype))
        layer.settle()
    return layer


@pytest.mark.parametrize("G", [32, 128])
@pytest.mark.parametrize("L,steps", [(4096, 0), (4000, 96), (4096, 1), (4096, 127), (8000, 300)])
def test_held_bytes_within_5_percent_of_analytic(G, L, steps):
    cfg = KiviConfig(k_bits=2, v_bits=2, group_size=G, residual_length=128)
    layer = _fill(cfg, L, steps)
    held = layer.memory().total
    tensors = sum(getattr(layer, n).numel() * getattr(layer, n).element_size() for n in KiviLayer._STORAGE)
    assert held == tensors
    analytic = analytic_cache_bytes(cfg, 1, 2, 128, 1, L + steps, torch.float16)
    assert analytic <= held <= 1.05 * analytic, f"held {held} vs analytic {analytic} ({held / analytic - 1:+.1%})"


@pytest.mark.parametrize("G,expected", [(32, 4.9), (128, 6.4)])
def test_ratio_vs_fp16_at_4096(G, expected):
    cfg = KiviConfig(k_bits=2, v_bits=2, group_size=G, residual_length=128)
    held = _fill(cfg, 4096, 0).memory().total
    fp16 = analytic_cache_bytes(None, 1, 2, 128, 1, 4096, torch.float16)
    assert fp16 / held == pytest.approx(expected, rel=0.05)


def test_analytic_formula_counts_segments():
    cfg = KiviConfig(k_bits=2, v_bits=4, group_size=32, residual_length=128)
    L, D = 1000, 64
    n_kq, n_vq = 1000 - 1000 % 128, 1000 - 128
    keys = n_kq * D // 4 + (n_kq // 32) * D * 4 + (L - n_kq) * D * 2
    values = n_vq * D // 2 + n_vq * (D // 32) * 4 + 128 * D * 2
    assert analytic_cache_bytes(cfg, 3, 5, D, 7, L, torch.bfloat16) == (keys + values) * 3 * 5 * 7
    assert analytic_cache_bytes(None, 1, 1, D, 1, L, torch.float32) == 2 * L * D * 4
