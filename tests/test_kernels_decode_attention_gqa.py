"""The shared-dequantization GQA kernel (kernels/decode_attention_gqa.py) against the torch oracle.

CPU: under TRITON_INTERPRET=1 (conftest), small shapes; GPU: larger ones. Not picked by "auto" yet."""

from __future__ import annotations

import pytest
import torch

import kivi_kernels.decode_attention_gqa as dg
from kivi_core.attention_ref import decode_attention_ref
from test_kernels_decode_attention import DEVICE, TOL, kivi_split, make_state


@pytest.mark.parametrize("Hq,H,L,D,bits,pad", [(4, 1, 700, 64, 2, True), (8, 2, 700, 64, 2, False),
                                              (4, 2, 1029, 128, 4, True), (4, 1, 300, 64, 2, False),
                                              (2, 1, 513, 64, 2, True)])
def test_gqa_kernel_matches_oracle(Hq, H, L, D, bits, pad):
    n_kq, n_vq = kivi_split(L, 32, 64)
    state = make_state(2, H, L, D, n_kq, n_vq, bits, bits, 32, torch.float16, DEVICE, 7)
    q = torch.randn(2, Hq, 1, D, generator=torch.Generator().manual_seed(8)).half().to(DEVICE)
    valid = None
    if pad:
        valid = torch.ones(2, L, dtype=torch.bool)
        valid[1, :45] = False
        valid = valid.to(DEVICE)
    ref = decode_attention_ref(q, state, valid, D**-0.5)
    out = dg.decode_attention_gqa(q, state, valid, D**-0.5, block_w=8, num_splits=2)
    err = (out.float() - ref.float()).abs().max().item()
    assert err <= TOL[torch.float16], f"GQA {Hq}/{H} L={L} D={D} k{bits}: max |err| {err:.3g}"


def test_gqa_kernel_refuses_what_it_cannot_run():
    n_kq, n_vq = kivi_split(300, 32, 64)
    state = make_state(1, 1, 300, 64, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    assert dg.unsupported_gqa(torch.empty(1, 4, 1, 64, dtype=torch.float16), state) is None
    assert "2 or 4" in dg.unsupported_gqa(torch.empty(1, 8, 1, 64, dtype=torch.float16), state)
    assert "2 or 4" in dg.unsupported_gqa(torch.empty(1, 4, 2, 64, dtype=torch.float16), state)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("L", [4133, 32 * 1024 + 77])
def test_gpu_gqa_kernel(L):
    n_kq, n_vq = kivi_split(L, 32, 128)
    state = make_state(2, 8, L, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cuda", L)
    q = torch.randn(2, 32, 1, 128, generator=torch.Generator().manual_seed(L)).half().cuda()
    ref = decode_attention_ref(q, state, None, 128**-0.5)
    out = dg.decode_attention_gqa(q, state, None, 128**-0.5)
    err = (out.float() - ref.float()).abs().max().item()
    assert err <= TOL[torch.float16], f"L={L}: max |err| {err:.3g}"
