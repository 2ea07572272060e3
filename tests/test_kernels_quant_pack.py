"""quantize_keys_triton / quantize_values_triton vs their torch twins: bit-exact (torch.equal).

Without CUDA the kernels run under Triton's CPU interpreter (small shapes); with CUDA the `gpu` tests
add larger shapes on the device.
"""

from __future__ import annotations

import pytest
import torch

import kivi_kernels.quant_pack as qp
from kivi_core.quant import quantize_keys_ref, quantize_values_ref

# tests/conftest.py sets TRITON_INTERPRET=1 without CUDA before anything imports triton (triton reads it
# when a function is decorated), so the kernels below run in the CPU interpreter.

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
DTYPES = [torch.float32, torch.float16, torch.bfloat16]


def _keys_out(B, H, T, D, bits, G, dtype, device, offset=1, spare=3):
    """(codes, scale, min) views at token offset `offset` of larger capacity buffers, poisoned."""
    cpw = 32 // bits
    cap_g = T // G + offset + spare
    codes = torch.full((B, H, cap_g * G // cpw, D), -123456, dtype=torch.int32, device=device)
    scale = torch.full((B, H, cap_g, D), -7.0, dtype=dtype, device=device)
    mn = torch.full((B, H, cap_g, D), -7.0, dtype=dtype, device=device)
    w0, g0 = offset * G // cpw, offset
    return (codes[:, :, w0 : w0 + T // cpw], scale[:, :, g0 : g0 + T // G], mn[:, :, g0 : g0 + T // G])


def _values_out(B, H, T, D, bits, G, dtype, device, offset=5, spare=11):
    cpw = 32 // bits
    cap = T + offset + spare
    codes = torch.full((B, H, cap, D // cpw), -123456, dtype=torch.int32, device=device)
    scale = torch.full((B, H, cap, D // G), -7.0, dtype=dtype, device=device)
    mn = torch.full((B, H, cap, D // G), -7.0, dtype=dtype, device=device)
    return (codes[:, :, offset : offset + T], scale[:, :, offset : offset + T], mn[:, :, offset : offset + T])


def _assert_equal(got, ref, what):
    for name, g, r in zip(("codes", "scale", "min"), got, ref):
        if not torch.equal(g, r):
            bad = (g != r).nonzero()
            i = tuple(bad[0].tolist())
            raise AssertionError(f"{what} {name}: {len(bad)} of {r.numel()} differ; first at {i}: {g[i]} vs {r[i]}")


def _strided(x: torch.Tensor) -> torch.Tensor:
    """Same values, non-contiguous: a token-axis slice of a bigger buffer with heads and tokens swapped."""
    B, H, T, D = x.shape
    buf = torch.randn(B, T + 3, H, D, dtype=x.dtype, device=x.device)
    view = buf[:, 2 : 2 + T].transpose(1, 2)
    view.copy_(x)
    return view


def _run_keys(B, H, T, D, bits, G, dtype, with_valid, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    k = (torch.randn(B, H, T, D, generator=gen) * 2 + 0.5).to(dtype).to(device)
    k = _strided(k)
    valid = None
    if with_valid:
        valid = torch.rand(B, T, generator=gen) > 0.3
        valid[0, : min(T, G + 3)] = False  # one all-padding group, one partly padded
        valid = valid.to(device)
    out = _keys_out(B, H, T, D, bits, G, dtype, device)
    qp.quantize_keys_triton(k, bits, G, valid, out)
    _assert_equal(out, quantize_keys_ref(k, bits, G, valid), f"keys b={bits} G={G} {dtype}")


def _run_values(B, H, T, D, bits, G, dtype, device, seed=0):
    gen = torch.Generator().manual_seed(seed)
    v = (torch.randn(B, H, T, D, generator=gen) * 3 - 1).to(dtype).to(device)
    v = _strided(v)
    out = _values_out(B, H, T, D, bits, G, dtype, device)
    qp.quantize_values_triton(v, bits, G, out)
    _assert_equal(out, quantize_values_ref(v, bits, G), f"values b={bits} G={G} {dtype}")


# -- CPU (interpreter) and GPU: small shapes --------------------------------------------------------


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("G,D,T", [(32, 32, 64), (16, 32, 48), (48, 48, 48)])  # 48: G not a power of 2
@pytest.mark.parametrize("with_valid", [False, True])
def test_quantize_keys_bit_exact(dtype, bits, G, D, T, with_valid):
    _run_keys(2, 1, T, D, bits, G, dtype, with_valid, DEVICE)


@pytest.mark.parametrize("dtype", DTYPES, ids=str)
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("G,D,T", [(32, 64, 1), (32, 64, 37), (16, 32, 5), (48, 96, 7)])  # T=1: a decode step
def test_quantize_values_bit_exact(dtype, bits, G, D, T):
    _run_values(2, 1, T, D, bits, G, dtype, DEVICE)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("bits", [2, 4])
def test_round_half_to_even_ties(dtype, bits):
    """(x - min) / scale lands exactly on k + 0.5: torch.round goes to even, so must the kernel."""
    qmax = (1 << bits) - 1
    G, D = 32, 32
    # Values: per group min 0 and max qmax (scale exactly 1), the rest all the half-integers and integers.
    ramp = torch.arange(G, dtype=torch.float32) * (qmax / (G - 1))
    ramp = torch.round(ramp * 2) / 2  # multiples of 0.5 in [0, qmax]: many exact ties
    ramp[0], ramp[-1] = 0.0, float(qmax)
    k = ramp.view(1, 1, G, 1).expand(1, 1, G, D).to(dtype).to(DEVICE).contiguous()
    out = _keys_out(1, 1, G, D, bits, G, dtype, DEVICE)
    qp.quantize_keys_triton(k, bits, G, None, out)
    _assert_equal(out, quantize_keys_ref(k, bits, G), "key ties")
    v = ramp.view(1, 1, 1, G).expand(1, 1, 3, D).to(dtype).to(DEVICE).contiguous()
    out = _values_out(1, 1, 3, D, bits, G, dtype, DEVICE)
    qp.quantize_values_triton(v, bits, G, out)
    _assert_equal(out, quantize_values_ref(v, bits, G), "value ties")


def test_constant_and_all_padding_groups():
    G, D = 32, 32
    k = torch.full((1, 2, 2 * G, D), 1.25, dtype=torch.float16, device=DEVICE)
    valid = torch.ones(1, 2 * G, dtype=torch.bool, device=DEVICE)
    valid[0, G:] = False  # second group: padding only
    out = _keys_out(1, 2, 2 * G, D, 2, G, torch.float16, DEVICE)
    qp.quantize_keys_triton(k, 2, G, valid, out)
    codes, scale, mn = out
    assert torch.all(codes == 0) and torch.all(scale == 0)
    assert torch.all(mn[:, :, 0] == 1.25) and torch.all(mn[:, :, 1] == 0)
    _assert_equal(out, quantize_keys_ref(k, 2, G, valid), "constant/padding")


def test_launcher_rejects_bad_arguments():
    k = torch.randn(1, 1, 32, 32, device=DEVICE)
    good = _keys_out(1, 1, 32, 32, 2, 32, torch.float32, DEVICE)
    with pytest.raises(ValueError, match="bits=3"):
        qp.quantize_keys_triton(k, 3, 32, None, good)
    with pytest.raises(ValueError, match="group_size=24"):
        qp.quantize_keys_triton(k, 2, 24, None, good)
    with pytest.raises(ValueError, match="T=48"):
        qp.quantize_keys_triton(torch.randn(1, 1, 48, 32, device=DEVICE), 2, 32, None, good)
    with pytest.raises(ValueError, match="shape"):
        qp.quantize_keys_triton(k, 4, 32, None, good)  # 4-bit codes need T // 8 word rows
    with pytest.raises(ValueError, match="head_dim=48"):
        qp.quantize_values_triton(torch.randn(1, 1, 2, 48, device=DEVICE), 2, 32, good)
    with pytest.raises(ValueError, match="dtype"):
        qp.quantize_values_triton(torch.randn(1, 1, 2, 32, device=DEVICE).double(), 2, 32, good)


# -- GPU only: real sizes -----------------------------------------------------------------------------


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("G", [32, 64, 128])
@pytest.mark.parametrize("D", [64, 128, 256])
def test_quantize_gpu_shapes(dtype, bits, G, D):
    if D % G:
        pytest.skip("G must divide D")
    _run_keys(3, 8, 4 * 128, D, bits, G, dtype, True, "cuda", seed=G + D)
    _run_keys(2, 4, 128, D, bits, G, dtype, False, "cuda", seed=G + D + 1)
    _run_values(3, 8, 517, D, bits, G, dtype, "cuda", seed=G + D)
    _run_values(4, 8, 1, D, bits, G, dtype, "cuda", seed=G + D + 1)
