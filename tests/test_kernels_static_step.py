"""The lean engine's step kernels (kivi_kernels.static_step) vs their torch twins: exact.

Without CUDA they run under Triton's CPU interpreter (tests/conftest.py)."""

from __future__ import annotations

import pytest
import torch

from kivi_core.quant import quantize_values_ref
from kivi_kernels.static_step import static_append, static_slide

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("bits,G", [(2, 32), (4, 64)])
def test_slide_quantizes_the_ring_slot_into_row_n_vq(dtype, bits, G):
    B, H, W, D = 2, 3, 9, 128
    gen = torch.Generator().manual_seed(bits + G)
    win = (torch.randn(B, H, W, D, generator=gen) * 3).to(dtype).to(DEVICE)
    cpw = 32 // bits
    codes = torch.zeros(B, H, 40, D // cpw, dtype=torch.int32, device=DEVICE)
    scale = torch.zeros(B, H, 40, D // G, dtype=dtype, device=DEVICE)
    mn = torch.zeros_like(scale)
    for n_vq in (0, 13, 31):
        lens = torch.tensor([n_vq + 8, 0, n_vq], dtype=torch.int32, device=DEVICE)
        static_slide(win, codes, scale, mn, lens, bits, G)
        c, s, m = quantize_values_ref(win[:, :, n_vq % W : n_vq % W + 1], bits, G)
        assert torch.equal(codes[:, :, n_vq : n_vq + 1], c)
        assert torch.equal(scale[:, :, n_vq : n_vq + 1], s) and torch.equal(mn[:, :, n_vq : n_vq + 1], m)
    assert int((codes != 0).any(-1).any(0).any(0).sum()) == 3  # no other row written


def test_append_writes_tail_row_and_ring_slot():
    B, H, R, D = 2, 2, 16, 64
    W = R + 1
    tail = torch.zeros(B, H, R, D, device=DEVICE)
    win = torch.zeros(B, H, W, D, device=DEVICE)
    k = torch.randn(B, H, 1, D, device=DEVICE)
    v = torch.randn(B, H, 1, D, device=DEVICE)
    lens = torch.tensor([37, 32, 21], dtype=torch.int32, device=DEVICE)  # L=37: tail row 5, slot 37 % 17 = 3
    static_append(k, v, tail, win, lens)
    assert torch.equal(tail[:, :, 5:6], k) and torch.equal(win[:, :, 3:4], v)
    assert int(tail.ne(0).sum()) == int(k.ne(0).sum()) and int(win.ne(0).sum()) == int(v.ne(0).sum())
