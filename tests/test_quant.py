"""The reference quantizer and packing: bit-exact round trips, the scale/2 error bound, edge groups."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from kivi_core.quant import (
    dequantize_keys_ref,
    dequantize_values_ref,
    pack,
    quantize_keys_ref,
    quantize_values_ref,
    unpack,
)

# Extra error allowed on top of scale/2, in units of the dtype's epsilon times the value's magnitude:
# scale, min and the dequantized value are each rounded to the model dtype once.
ROUNDING = {torch.float32: 4 * 2**-23, torch.float16: 4 * 2**-10, torch.bfloat16: 4 * 2**-7}


@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("dim", [0, 1, 2, -1])
def test_pack_unpack_bit_exact(bits, dim):
    shape = [32, 48, 16, 64]
    codes = torch.randint(0, 1 << bits, shape, dtype=torch.uint8)
    words = pack(codes, bits, dim)
    assert words.dtype == torch.int32
    assert words.shape[dim] == shape[dim] * bits // 32
    assert torch.equal(unpack(words, bits, dim), codes)


def test_pack_layout_is_little_end_first():
    codes = torch.tensor([1, 2, 3, 0] + [0] * 11 + [3], dtype=torch.uint8)
    (word,) = pack(codes, 2, 0).tolist()
    assert word & 0xFF == 0b00111001  # codes 1, 2, 3, 0 from the low bits up
    assert word < 0  # code 15 = 3 sets bit 31


def test_pack_rejects_partial_words():
    with pytest.raises(ValueError, match="multiple of 16"):
        pack(torch.zeros(10, dtype=torch.uint8), 2, 0)


def _check_bound(x, xhat, scale, mn, expand, dtype):
    s = expand(scale.float())
    err = (x.float() - xhat.float()).abs()
    slack = ROUNDING[dtype] * (x.float().abs() + expand(mn.float()).abs() + 1e-6)
    bad = err > s / 2 * (1 + 1e-5) + slack + 1e-7
    assert not bad.any(), f"{int(bad.sum())} elements over scale/2; worst excess {(err - s / 2 - slack).max().item():.3g}"


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("G", [16, 32, 64])
def test_keys_per_channel_error_bound(dtype, bits, G):
    B, H, T, D = 2, 3, 4 * G, 64
    k = (torch.randn(B, H, T, D) * torch.linspace(0.1, 8, D)).to(dtype)  # outlier-ish channels
    codes, scale, mn = quantize_keys_ref(k, bits, G)
    assert codes.shape == (B, H, T * bits // 32, D) and scale.shape == (B, H, T // G, D)
    assert scale.dtype == dtype and mn.dtype == dtype
    khat = dequantize_keys_ref(codes, scale, mn, bits, G)

    def expand(t):  # [B, H, T/G, D] -> [B, H, T, D]
        return t.repeat_interleave(G, dim=2)

    _check_bound(k, khat, scale, mn, expand, dtype)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("bits", [2, 4])
@pytest.mark.parametrize("G,D", [(32, 64), (32, 128), (64, 128), (128, 256)])
def test_values_per_token_error_bound(dtype, bits, G, D):
    B, H, T = 2, 2, 37
    v = torch.randn(B, H, T, D).to(dtype)
    codes, scale, mn = quantize_values_ref(v, bits, G)
    assert codes.shape == (B, H, T, D * bits // 32) and scale.shape == (B, H, T, D // G)
    vhat = dequantize_values_ref(codes, scale, mn, bits, G)

    def expand(t):
        return t.repeat_interleave(G, dim=3)

    _check_bound(v, vhat, scale, mn, expand, dtype)


@pytest.mark.parametrize("bits", [2, 4])
def test_constant_group_gives_exactly_min(bits):
    k = torch.full((1, 1, 32, 16), 0.3125)
    k[..., 1] = -7.0
    codes, scale, mn = quantize_keys_ref(k, bits, 32)
    assert torch.all(scale == 0)
    out = dequantize_keys_ref(codes, scale, mn, bits, 32)
    assert torch.isfinite(out).all() and torch.equal(out, k)
    v = torch.full((1, 1, 3, 64), -2.5, dtype=torch.float16)
    vout = dequantize_values_ref(*quantize_values_ref(v, bits, 32), bits, 32)
    assert torch.equal(vout, v)


def test_padding_does_not_widen_key_groups():
    G = 32
    k = torch.randn(2, 2, G, 8)
    valid = torch.ones(2, G, dtype=torch.bool)
    valid[0, :5] = False
    k_pad = k.clone()
    k_pad[0, :, :5] = 1e4  # garbage padding states
    _, scale_pad, mn_pad = quantize_keys_ref(k_pad, 2, G, valid)
    real = k[0, :, 5:]
    assert torch.allclose(mn_pad[0, :, 0], real.amin(dim=1))
    assert torch.allclose(scale_pad[0, :, 0], (real.amax(dim=1) - real.amin(dim=1)) / 3)
    # An all-padding group stores scale 0 and min 0.
    valid[1] = False
    _, scale, mn = quantize_keys_ref(k, 2, G, valid)
    assert torch.all(scale[1] == 0) and torch.all(mn[1] == 0)


def test_round_half_to_even_ties():
    # x - min = 1.5 * scale exactly: round-half-even gives code 2.
    k = torch.tensor([0.0, 3.0, 1.5] + [0.0] * 29).view(1, 1, 32, 1)
    codes, scale, mn = quantize_keys_ref(k, 2, 32)
    from kivi_core.quant import unpack as up

    assert up(codes, 2, 2)[0, 0, 2, 0].item() == 2


@settings(max_examples=60, deadline=None)
@given(
    bits=st.sampled_from([2, 4]),
    groups=st.integers(1, 3),
    D=st.sampled_from([16, 32, 64]),
    scale=st.floats(1e-3, 1e3),
    offset=st.floats(-100, 100),
    seed=st.integers(0, 2**16),
)
def test_property_keys_and_values_round_trip(bits, groups, D, scale, offset, seed):
    g = torch.Generator().manual_seed(seed)
    G = 16
    x = torch.randn(1, 2, groups * G, D, generator=g) * scale + offset
    codes, s, m = quantize_keys_ref(x, bits, G)
    q = unpack(codes, bits, 2)
    assert int(q.max()) <= (1 << bits) - 1
    xhat = dequantize_keys_ref(codes, s, m, bits, G)
    _check_bound(x, xhat, s, m, lambda t: t.repeat_interleave(G, dim=2), torch.float32)
    # Requantizing the reconstruction is a fixed point (codes unchanged).
    codes2, _, _ = quantize_keys_ref(xhat, bits, G)
    assert (unpack(codes2, bits, 2).int() - q.int()).abs().max() <= 1
    vc, vs, vm = quantize_values_ref(x, bits, G)
    vhat = dequantize_values_ref(vc, vs, vm, bits, G)
    _check_bound(x, vhat, vs, vm, lambda t: t.repeat_interleave(G, dim=3), torch.float32)
