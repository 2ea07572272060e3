"""KiviLayer against an independent, slow re-implementation of the KIVI rules (issue: exact semantics).

The slow model keeps the whole full-precision history and replays the rules token by token with
plain counters; the expected cache is that history with the quantized spans passed through the
reference quantizer. The layer must match it bit for bit after every step.
"""

import pytest
import torch

from kivi_core import KiviConfig, KiviLayer
from kivi_core.attention_ref import dequantize_state
from kivi_core.quant import fake_quantize_partial_keys, dequantize_keys_ref, dequantize_values_ref, quantize_keys_ref, quantize_values_ref


class SlowKivi:
    def __init__(self, cfg: KiviConfig):
        self.cfg = cfg
        self.k, self.v = [], []  # per token: [B, H, D]
        self.n_kq = self.n_vq = 0
        self.valid = []  # per token: [B] bool

    def add(self, k, v, valid=None):
        """Returns what attention must see at this step: (keys, values) before the step settles (R > 0),
        or after it with the incomplete key group fake-quantized (R = 0: nothing is seen in full precision)."""
        q = k.shape[2]
        for t in range(q):
            self.k.append(k[:, :, t])
            self.v.append(v[:, :, t])
            self.valid.append(torch.ones(k.shape[0], dtype=torch.bool) if valid is None else valid[:, len(self.k) - 1])
        cfg, L = self.cfg, len(self.k)
        if cfg.residual_length == 0:
            self._settle(q, L)
            return self.expected(partial_fake=True)
        seen = self.expected()
        self._settle(q, L)
        return seen

    def _settle(self, q, L):
        cfg = self.cfg
        if q > 1 and self.n_kq == 0 and self.n_vq == 0 and L == q:  # prefill rules
            self.n_kq = L - L % cfg.key_flush
            self.n_vq = max(0, L - cfg.residual_length)
        else:  # token by token: the tail flushes when it holds F tokens; the window keeps R
            while L - self.n_kq >= cfg.key_flush:
                self.n_kq += cfg.key_flush
            while L - self.n_vq > cfg.residual_length:
                self.n_vq += 1

    def expected(self, partial_fake=False):
        cfg = self.cfg
        K = torch.stack(self.k, dim=2)
        V = torch.stack(self.v, dim=2)
        valid = torch.stack(self.valid, dim=1)
        K = K.clone()
        V = V.clone()
        if self.n_kq:
            c, s, m = quantize_keys_ref(K[:, :, : self.n_kq], cfg.k_bits, cfg.group_size, valid[:, : self.n_kq])
            K[:, :, : self.n_kq] = dequantize_keys_ref(c, s, m, cfg.k_bits, cfg.group_size)
        if self.n_vq:
            c, s, m = quantize_values_ref(V[:, :, : self.n_vq], cfg.v_bits, cfg.group_size)
            V[:, :, : self.n_vq] = dequantize_values_ref(c, s, m, cfg.v_bits, cfg.group_size)
        if partial_fake and self.n_kq < K.shape[2]:
            K[:, :, self.n_kq :] = fake_quantize_partial_keys(K[:, :, self.n_kq :], cfg.k_bits, valid[:, self.n_kq :])
        return K, V


def _assert_same(name, got, want):
    if not torch.equal(got, want):
        diff = (got.float() - want.float()).abs()
        idx = tuple(int(i) for i in (diff == diff.max()).nonzero()[0])
        raise AssertionError(f"{name}: {int((diff > 0).sum())} elements differ, max {diff.max():.3g} at {idx}")


def _run(cfg, prefill, steps, dtype=torch.float32, B=2, H=2, D=32, fused=False, valid=None):
    layer = KiviLayer(cfg)
    slow = SlowKivi(cfg)
    L_total = prefill + steps
    ks = torch.randn(B, H, L_total, D).to(dtype) * torch.linspace(0.5, 4, D).to(dtype)
    vs = torch.randn(B, H, L_total, D).to(dtype)
    chunks = ([(0, prefill)] if prefill else []) + [(t, t + 1) for t in range(prefill, L_total)]
    for a, b in chunks:
        want_k, want_v = slow.add(ks[:, :, a:b], vs[:, :, a:b], valid)
        layer.update(ks[:, :, a:b], vs[:, :, a:b])
        if fused:  # the kernel's view: the packed storage itself (dequantized here to compare)
            got_k, got_v = dequantize_state(layer.state(), dtype)
        else:  # the dequantize path's view
            got_k, got_v = layer.materialize()
        layer.settle(None if valid is None else valid[:, :b])  # after attention, as the cache drives it
        _assert_same(f"keys seen by attention after token {b}", got_k, want_k)
        _assert_same(f"values seen by attention after token {b}", got_v, want_v)
        assert (layer.n_kq, layer.n_vq, layer.length) == (slow.n_kq, slow.n_vq, b), f"counters after token {b}"
        st_k, st_v = dequantize_state(layer.state(), dtype)
        want_k, want_v = slow.expected(partial_fake=cfg.residual_length == 0)
        _assert_same(f"stored keys after token {b}", st_k, want_k)
        _assert_same(f"stored values after token {b}", st_v, want_v)
    return layer


G, R = 16, 32
LENGTHS = [0, 1, G - 1, G, R - 1, R, R + 1, 3 * R + 5]


@pytest.mark.parametrize("prefill", LENGTHS)
@pytest.mark.parametrize("bits", [(2, 2), (4, 4), (2, 4)])
def test_prefill_then_decode_across_flushes(prefill, bits):
    cfg = KiviConfig(k_bits=bits[0], v_bits=bits[1], group_size=G, residual_length=R)
    _run(cfg, prefill, steps=2 * R + 3)


@pytest.mark.parametrize("prefill", [0, 5, G, 2 * G + 3])
def test_no_window_r0(prefill):
    cfg = KiviConfig(group_size=G, residual_length=0)
    layer = _run(cfg, prefill, steps=G + 7)
    assert layer.n_vq == layer.length  # every value is quantized once its step is over


@pytest.mark.parametrize("prefill", [R - 1, 3 * R + 5])
def test_fused_protocol_same_state(prefill):
    _run(KiviConfig(group_size=G, residual_length=R), prefill, steps=R + 2, fused=True)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_dtypes(dtype):
    _run(KiviConfig(group_size=G, residual_length=R), 2 * R + 1, steps=R, dtype=dtype)


def test_paper_defaults_long_prefill():
    _run(KiviConfig(), 3 * 128 + 5, steps=130, D=64, B=1, H=1)


def test_left_padding_excluded_from_key_groups():
    L = 3 * R + 5
    valid = torch.ones(2, L + R, dtype=torch.bool)
    valid[1, :21] = False  # row 1 is left-padded by 21 tokens
    _run(KiviConfig(group_size=G, residual_length=R), L, steps=R, valid=valid, fused=True)


def test_bad_head_dim_is_reported():
    layer = KiviLayer(KiviConfig(group_size=32))
    with pytest.raises(ValueError, match="does not divide the model's head_dim=48"):
        layer.update(torch.randn(1, 1, 4, 48), torch.randn(1, 1, 4, 48))


def test_crop_refuses():
    layer = KiviLayer(KiviConfig(group_size=G, residual_length=R))
    layer.update(torch.randn(1, 1, 4, 32), torch.randn(1, 1, 4, 32))
    with pytest.raises(NotImplementedError, match="cannot be cropped"):
        layer.crop(-1)


def test_reorder_follows_beams():
    cfg = KiviConfig(group_size=G, residual_length=R)
    layer = KiviLayer(cfg)
    k, v = torch.randn(3, 2, 2 * R + 7, 32), torch.randn(3, 2, 2 * R + 7, 32)
    layer.update(k, v)
    layer.settle()
    before_k, before_v = dequantize_state(layer.state())
    idx = torch.tensor([2, 0, 0])
    layer.reorder_cache(idx)
    after_k, after_v = dequantize_state(layer.state())
    assert torch.equal(after_k, before_k[idx]) and torch.equal(after_v, before_v[idx])


def test_sinks_stay_full_precision_and_out_of_group_ranges():
    cfg = KiviConfig(group_size=G, residual_length=R, sink_tokens=3)
    layer = KiviLayer(cfg)
    B, H, L, D = 2, 2, 3 * R + 5, 32
    k, v = torch.randn(B, H, L, D), torch.randn(B, H, L, D)
    k[:, :, :3] *= 50  # outlier-sized sink keys
    valid = torch.ones(B, L, dtype=torch.bool)
    valid[1, :7] = False  # row 1 is left-padded: its sinks are positions 7, 8, 9
    layer.update(k, v)
    layer.settle(valid)
    assert layer.sink_pos.tolist() == [[0, 1, 2], [7, 8, 9]]
    keys, values = layer.materialize()
    for b, pos in enumerate(([0, 1, 2], [7, 8, 9])):
        assert torch.equal(keys[b][:, pos], k[b][:, pos]) and torch.equal(values[b][:, pos], v[b][:, pos])
    # The group holding the sinks is quantized from the other tokens' range only.
    ref_valid = valid.clone()
    ref_valid[0, :3] = False
    ref_valid[1, 7:10] = False
    c, s, m = quantize_keys_ref(k[:, :, : 3 * R], cfg.k_bits, G, ref_valid[:, : 3 * R])
    assert torch.equal(layer.k_scale[:, :, : 3 * R // G], s)
    mine = layer.memory().residual
    assert mine >= 2 * B * H * 3 * D * 4  # the sinks are counted


def test_rotated_keys_round_trip_and_quantize_in_the_rotated_basis():
    from kivi_core.quant import hadamard

    cfg = KiviConfig(group_size=G, residual_length=R, rotate_keys=True)
    layer = KiviLayer(cfg)
    k, v = torch.randn(1, 2, 2 * R + 3, 32), torch.randn(1, 2, 2 * R + 3, 32)
    layer.update(k, v)
    layer.settle()
    keys, _ = layer.materialize()
    h = hadamard(32)
    c, s, m = quantize_keys_ref(k[:, :, : 2 * R] @ h, cfg.k_bits, G)
    want = torch.cat([dequantize_keys_ref(c, s, m, cfg.k_bits, G), k[:, :, 2 * R :] @ h], dim=2) @ h
    torch.testing.assert_close(keys, want, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="power-of-two head_dim"):
        KiviLayer(cfg).update(torch.randn(1, 1, 2, 48), torch.randn(1, 1, 2, 48))


def test_reset_then_reuse_matches_a_fresh_layer():
    cfg = KiviConfig(group_size=G, residual_length=R, sink_tokens=2)
    a, b = KiviLayer(cfg), KiviLayer(cfg)
    k, v = torch.randn(1, 2, 2 * R + 9, 32), torch.randn(1, 2, 2 * R + 9, 32)
    a.update(torch.randn(1, 2, 40, 32), torch.randn(1, 2, 40, 32))
    a.reset()
    for layer in (a, b):
        layer.update(k, v)
        layer.settle()
    for x, y in zip(dequantize_state(a.state()), dequantize_state(b.state())):
        assert torch.equal(x, y)
    assert a.get_seq_length() == b.get_seq_length() == 2 * R + 9
