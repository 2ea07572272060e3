"""The shared-dequantization GQA kernel (kernels/decode_attention_gqa.py) against the torch oracle.

CPU: under TRITON_INTERPRET=1 (conftest), small shapes; the fp16x2 pair path runs there with its fp32 twins
(`_kpairs_ref` / `_vpairs_ref`: same tiles, thread mapping and joins). GPU: larger shapes, the pairs in PTX."""

from __future__ import annotations

import pytest
import torch

import kivi_kernels.decode_attention_gqa as dg
from kivi_core.attention_ref import decode_attention_ref
from kivi_core.state import KiviState
from test_kernels_decode_attention import DEVICE, TOL, kivi_split, make_state, sparse_values


def check(Hq, H, L, D, bits, pad, packed, device, B=2, R=64, sparse=False, q_scale=1.0, **kw):
    n_kq, n_vq = kivi_split(L, 32, R)
    state = make_state(B, H, L, D, n_kq, n_vq, bits, bits, 32, torch.float16, device, L)
    if sparse:
        state = sparse_values(state)
    q = (q_scale * torch.randn(B, Hq, 1, D, generator=torch.Generator().manual_seed(8))).half().to(device)
    valid = None
    if pad:
        valid = torch.ones(B, L, dtype=torch.bool)
        valid[1, : pad] = False
        valid = valid.to(device)
    ref = decode_attention_ref(q, state, valid, D**-0.5)
    out = dg.decode_attention_gqa(q, state, valid, D**-0.5, packed=packed, **kw)
    err = (out.float() - ref.float()).abs().max().item()
    # scores are q . k with q * scale rounded to fp16: their error, and the output's, grow with |q|
    assert err <= TOL[torch.float16] * max(1.0, q_scale), \
        f"GQA {Hq}/{H} L={L} D={D} k{bits} packed={packed}: max |err| {err:.3g}"


@pytest.mark.parametrize("Hq,H,L,D,bits,pad", [(4, 1, 700, 64, 2, 45), (8, 2, 700, 64, 2, 0),
                                              (4, 2, 1029, 128, 4, 45), (4, 1, 300, 64, 2, 0),
                                              (2, 1, 513, 64, 2, 45), (16, 2, 700, 64, 2, 45)])
def test_gqa_kernel_matches_oracle(Hq, H, L, D, bits, pad):
    check(Hq, H, L, D, bits, pad, False, DEVICE, block_w=8, num_splits=2)


@pytest.mark.parametrize("H,L,D,pad,bw,sparse", [(1, 700, 64, 45, 8, False), (2, 1029, 128, 0, 16, False),
                                                 (1, 300, 64, 0, 8, True), (1, 2100, 64, 300, 16, False)])
def test_gqa_pairs_path_matches_oracle(H, L, D, pad, bw, sparse):
    # the pair path's tiles with the fp32 twins (CPU) or the PTX (GPU): several tiles a split, a masked
    # value step, the straddling tile, left padding across a whole tile, non-dense value rows
    check(4 * H, H, L, D, 2, pad, True, DEVICE, block_w=bw, num_splits=2, sparse=sparse)


@pytest.mark.parametrize("H,pad", [(1, 45), pytest.param(2, 0, marks=pytest.mark.slow)])  # 27 s interpreted
def test_gqa_pairs_path_eight_heads_a_kv_head(H, pad):
    # 8 query heads a kv head: two programs a kv head, 4 query heads each (their rows of the output interleave)
    check(8 * H, H, 700, 64, 2, pad, True, DEVICE, block_w=8, num_splits=2)


@pytest.mark.parametrize("Hq,H,L,pad", [(8, 1, 1100, 300), (8, 2, 700, 45),
                                         pytest.param(16, 2, 300, 0, marks=pytest.mark.slow)])
def test_gqa_mma_bulk_matches_oracle(Hq, H, L, pad):
    # the tensor-core bulk with its asm twins (CPU) or the PTX (GPU): 8 and 4 query heads a kv head (the
    # B columns past 4 zero), a last tile past the bulk's end, left padding over whole groups
    check(Hq, H, L, 128, 2, pad, None, DEVICE, R=128, mma=True, num_splits=2)


def test_gqa_mma_prefetch_matches_oracle():
    # the bulk's L2 prefetch lanes (their addresses are built here too; the prefetch itself is PTX, a no-op in
    # the interpreter), 3 tiles ahead, so the split's last tiles repeat its last
    check(8, 1, 500, 128, 2, 45, None, DEVICE, R=128, mma=True, num_splits=2, mma_prefetch=3)


@pytest.mark.parametrize("pf,mma,msg", [(-1, True, "tiles ahead to prefetch are an integer >= 0 (0: none)"),
                                        (1.0, True, "tiles ahead to prefetch are an integer >= 0 (0: none)"),
                                        (2, False, "only the tensor-core bulk prefetches; pass mma=True or drop it")])
def test_gqa_refuses_bad_prefetch(pf, mma, msg):
    n_kq, n_vq = kivi_split(300, 32, 64)
    st = make_state(1, 1, 300, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    q = torch.zeros(1, 8, 1, 128, dtype=torch.float16)
    with pytest.raises(ValueError, match=f"^mma_prefetch={pf!r}: " + msg.replace("(", r"\(").replace(")", r"\)")):
        dg.decode_attention_gqa(q, st, None, 0.1, mma=mma, mma_prefetch=pf)


def test_gqa_refuses_a_window_launch_off_the_tensor_core_bulk():
    n_kq, n_vq = kivi_split(300, 32, 64)
    st = make_state(1, 1, 300, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    with pytest.raises(ValueError, match=r"^window_launch=True splits the tensor-core bulk's launch; pass mma=True"):
        dg.decode_attention_gqa(torch.zeros(1, 8, 1, 128, dtype=torch.float16), st, None, 0.1, mma=False,
                                window_launch=True)


@pytest.mark.parametrize("w", [0, "2", 1.5])
def test_gqa_refuses_bad_window_splits(w):
    n_kq, n_vq = kivi_split(300, 32, 64)
    st = make_state(1, 1, 300, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    q = torch.zeros(1, 8, 1, 128, dtype=torch.float16)
    with pytest.raises(ValueError, match=f"^win_splits={w!r}: the window's programs a kv head are an integer >= 1$"):
        dg.decode_attention_gqa(q, st, None, 0.1, win_splits=w)


@pytest.mark.parametrize("mma,W,B,pad", [(True, 3, 2, 45), (True, 20, 1, 0), (False, 4, 1, 0)])
def test_gqa_window_splits_match_oracle(mma, W, B, pad):
    # the value window and the key tail (R = 128: 128-143 tokens) shared by W programs a kv head in whole 16-token
    # tiles (20: more programs than tiles, so one tile each), on the tensor-core bulk and on the pair path
    check(8, 1, 333, 128, 2, pad, None if mma else True, DEVICE, B=B, R=128, mma=mma, num_splits=2, win_splits=W,
          **({} if mma else dict(block_w=16)))


@pytest.mark.parametrize("W,pad", [(None, 45), (20, 0)])
def test_gqa_window_launch_matches_oracle(W, pad):
    # the window's splits on a launch of their own (the bulk's launch then ends at whole tensor-core tiles, so
    # the window region is 128-159 tokens at R = 128), default programs and more programs than tiles
    check(8, 1, 333, 128, 2, pad, None, DEVICE, R=128, mma=True, num_splits=2, win_splits=W, window_launch=True)


def test_gqa_window_split_rule():
    # a window program no longer than a bulk one, counting a window token as WIN_TOKEN_COST bulk tokens
    assert dg.window_splits(256, 136, True) == -(-dg.WIN_TOKEN_COST * 136 // 256)
    assert dg.window_splits(1024, 130, True) == 1
    assert dg.window_splits(256, 136, False) == 1


def test_gqa_mma_refuses_sparse_value_rows():
    # value rows inside wider buffers: the tensor-core bulk loads them at constant strides, so it refuses them
    # (on the GPU, other strides faulted: h200_round27), and "auto" runs the pair path, which matches the oracle
    n_kq, n_vq = kivi_split(700, 32, 128)
    st = sparse_values(make_state(1, 2, 700, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu"))
    q = torch.zeros(1, 8, 1, 128, dtype=torch.float16)
    why = dg.unmappable_gqa_mma(q, st, 0.1)
    assert why.startswith("it takes dense value rows (v_codes rows 8 elements apart, here 11"), why
    assert not dg.default_gqa_mma(q, st, 0.1)
    with pytest.raises(ValueError, match="mma=True cannot run this call: it takes dense value rows"):
        dg.decode_attention_gqa(q, st, None, 0.1, mma=True)
    check(8, 2, 700, 128, 2, 45, None, DEVICE, R=128, sparse=True)


def test_gqa_mma_refuses_what_it_cannot_map():
    n_kq, n_vq = kivi_split(300, 32, 64)
    st64 = make_state(1, 1, 300, 64, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    st = make_state(1, 1, 300, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    q = torch.zeros(1, 4, 1, 128, dtype=torch.float16)
    with pytest.raises(ValueError, match="mma=True cannot run this call: it maps k2v2 fp16, head_dim 128"):
        dg.decode_attention_gqa(torch.zeros(1, 4, 1, 64, dtype=torch.float16), st64, None, 0.125, mma=True)
    with pytest.raises(ValueError, match=r"scaling must be > 0 \(here -0.125\)"):
        dg.decode_attention_gqa(q, st, None, -0.125, mma=True)
    with pytest.raises(ValueError, match="block_w=8: the tensor-core bulk takes a key group a warp"):
        dg.decode_attention_gqa(q, st, None, 0.125, mma=True, block_w=8)
    with pytest.raises(ValueError, match="packed=True and mma=True name two different bulks"):
        dg.decode_attention_gqa(q, st, None, 0.125, mma=True, packed=True)
    assert dg.unmappable_gqa_mma(q, st, 0.125) is None
    assert dg.unmappable_gqa_mma(torch.zeros(1, 2, 1, 128, dtype=torch.float16), st, 0.125) is not None
    assert dg.default_gqa_mma(q, st, 0.125) == dg.GQA_MMA and not dg.default_gqa_mma(q, st, 0.0)


def test_gqa_mma_split_rule():
    # sqrt(L / 2) splits in one wave of MMA_WAVE_PROGRAMS (8 kv heads: 1x32K 128, 1x4096 45, 2x16K 64, 8x32K 16,
    # 16x16K 8), at least MMA_MIN_SPLITS (64x4096: 4), and at most 2048 programs (128x4096: 2; 1x300: 10 tiles)
    assert [dg.mma_splits(bh, L) for bh, L in [(8, 32768), (8, 4096), (16, 16384), (64, 32768), (128, 16384),
                                               (512, 4096), (1024, 4096)]] == [128, 45, 64, 16, 8, 4, 2]
    assert dg.mma_splits(8, 300) == 10
    # with the window on its own launch, whole waves of MMA_WAVE_PROGRAMS_SEP, the fewest giving 2 splits a kv head:
    # one at 8x32K 24, 16x16K 12, 32x8192 6, 64x4096 3, 96x4096 2; two at 128x4096 (3); at most sqrt(L / 2) and a
    # tile a split
    assert [dg.mma_splits(bh, L, True) for bh, L in [(64, 32768), (128, 16384), (256, 8192), (512, 4096), (768, 4096),
                                                     (1024, 4096), (64, 512), (64, 40)]] == [24, 12, 6, 3, 2, 3, 16, 2]


def test_gqa_window_launch_rule():
    # taken where there are >= 64 (batch, kv head) pairs, with whole waves of splits (test_gqa_mma_split_rule): not at
    # batch 1-4 (a launch more costs ~4 us there, with PDL too)
    pays = [dg.window_launch_pays(bh, L) for bh, L in [(64, 32768), (128, 16384), (256, 8192), (512, 4096),
                                                        (1024, 4096), (8, 32768), (16, 16384), (32, 32768)]]
    assert pays == [dg.WINDOW_LAUNCH] * 5 + [False] * 3


def test_gqa_kernel_refuses_what_it_cannot_run():
    n_kq, n_vq = kivi_split(300, 32, 64)
    state = make_state(1, 1, 300, 64, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    assert dg.unsupported_gqa(torch.empty(1, 4, 1, 64, dtype=torch.float16), state) is None
    assert dg.unsupported_gqa(torch.empty(1, 8, 1, 64, dtype=torch.float16), state) is None
    assert "2, 4 or 8" in dg.unsupported_gqa(torch.empty(1, 16, 1, 64, dtype=torch.float16), state)
    assert "2, 4 or 8" in dg.unsupported_gqa(torch.empty(1, 4, 2, 64, dtype=torch.float16), state)
    assert dg.packable_gqa(torch.empty(1, 4, 1, 64, dtype=torch.float16), state)
    assert dg.packable_gqa(torch.empty(1, 8, 1, 64, dtype=torch.float16), state)
    assert dg.gqa_beats_v3(64, 8, 4096, 8) and dg.gqa_beats_v3(1, 8, 32768, 8)  # 8 query heads a kv head
    assert not dg.gqa_beats_v3(1, 8, 16384, 8) and not dg.gqa_beats_v3(64, 8, 4096, 2)
    assert not dg.packable_gqa(torch.empty(1, 2, 1, 64, dtype=torch.float16), state)
    assert not dg.packable_gqa(torch.empty(1, 4, 1, 64, dtype=torch.bfloat16), state)
    with pytest.raises(ValueError, match="packed=True computes k2v2 fp16 with 4 or 8 query heads"):
        dg.decode_attention_gqa(torch.zeros(1, 2, 1, 64, dtype=torch.float16), state, None, 0.125, packed=True)
    with pytest.raises(ValueError, match="block_w=4 must be at least 8"):
        dg.decode_attention_gqa(torch.zeros(1, 4, 1, 64, dtype=torch.float16), state, None, 0.125, packed=True,
                                block_w=4)


@pytest.mark.parametrize("Hq,H,L,pad", [(8, 1, 700, 45), pytest.param(8, 2, 300, 0, marks=pytest.mark.slow)])
def test_gqa_mma_rest_on_tensor_cores_matches_oracle(Hq, H, L, pad):
    # rest_dot: the window's split (a partial packed tile, keys packed with values in the window, the fp16 tail)
    # on tensor cores, 16 query rows of which 8 or 4 are heads
    check(Hq, H, L, 128, 2, pad, None, DEVICE, R=128, mma=True, num_splits=2, rest_dot=True)


def test_gqa_mma_sharp_scores_match_oracle():
    # q x 8: tile maxima ~14 apart in log2 units (the running max moves by up to 2^20 a tile)
    check(8, 1, 600, 128, 2, 0, None, DEVICE, B=1, R=128, mma=True, num_splits=1, q_scale=8.0)


@pytest.mark.parametrize("tau", [0.0, 2.0, 8.0])
def test_gqa_mma_lazy_rescale_matches_oracle(monkeypatch, tau):
    # the bulk moves a head's running max only where a tile's passes it by more than MMA_LAZY_RESCALE (0: every
    # tile): one key group's scales x 6 make its scores jump far past the running max in the middle of a split (the
    # rescaling branch taken there, skipped on the tiles around it), against the oracle
    monkeypatch.setattr(dg, "MMA_LAZY_RESCALE", tau)
    L, D = 600, 128
    n_kq, n_vq = kivi_split(L, 32, 128)
    st = make_state(1, 1, L, D, n_kq, n_vq, 2, 2, 32, torch.float16, DEVICE, L)
    st.k_scale[:, :, 9] *= 6
    q = torch.randn(1, 8, 1, D, generator=torch.Generator().manual_seed(8)).half().to(DEVICE)
    ref = decode_attention_ref(q, st, None, D**-0.5)
    out = dg.decode_attention_gqa(q, st, None, D**-0.5, mma=True, num_splits=1)
    assert (out.float() - ref.float()).abs().max().item() <= TOL[torch.float16]


def test_gqa_mma_refuses_unaligned_key_scales():
    # the bulk loads key scale and min rows as fp16 pairs: a row stride that is odd in halves is refused
    n_kq, n_vq = kivi_split(300, 32, 128)
    st = make_state(1, 1, 300, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu", 300)
    wide = torch.zeros(*st.k_scale.shape[:3], 129, dtype=torch.float16)
    wide[..., :128] = st.k_scale
    odd = KiviState(st.k_codes, wide[..., :128], st.k_min, st.n_kq, st.k_tail, st.v_codes, st.v_scale, st.v_min,
                    st.n_vq, st.v_win, 2, 2, 32)
    q = torch.zeros(1, 8, 1, 128, dtype=torch.float16)
    assert dg.unmappable_gqa_mma(q, st, 0.1) is None
    with pytest.raises(ValueError, match="k_scale rows as fp16 pairs, which must start on 4-byte boundaries"):
        dg.decode_attention_gqa(q, odd, None, 0.1, mma=True)
    assert not dg.default_gqa_mma(q, odd, 0.1)


def test_gqa_mma_refuses_unaligned_query():
    # the bulk loads the query as fp16 pairs: a head row that starts off a 4-byte boundary is refused, and a call
    # without tuning keywords takes another path
    n_kq, n_vq = kivi_split(300, 32, 128)
    st = make_state(1, 1, 300, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu", 300)
    q = torch.zeros(1, 8, 1, 129, dtype=torch.float16)[..., 1:]
    with pytest.raises(ValueError, match=r"query's head rows as fp16 pairs, which must start on 4-byte boundaries "
                                         r"\(here strides \(1032, 129\)"):
        dg.decode_attention_gqa(q, st, None, 0.1, mma=True)
    assert not dg.default_gqa_mma(q, st, 0.1)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("L,D,pad,sparse", [(4133, 128, 0, False), (32 * 1024 + 77, 128, 0, False),
                                            (5000, 128, 1500, False), (3001, 64, 17, False),
                                            (4133, 128, 0, True), (700, 128, 0, False)])
def test_gpu_gqa_kernel(packed, L, D, pad, sparse):
    check(32, 8, L, D, 2, pad, packed, "cuda", R=128, sparse=sparse)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("L,pad", [(4133, 0), (9000, 300)])
def test_gpu_gqa_kernel_eight_heads_a_kv_head(packed, L, pad):
    check(64, 8, L, 128, 2, pad, packed, "cuda", R=128)  # Llama-3.1-70B's 64 / 8 heads


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("Hq", [32, 64])
@pytest.mark.parametrize("L,pad,kw", [(4133, 0, {}), (32 * 1024 + 77, 0, {}),
                                      (5000, 1500, {}), (700, 0, {}),
                                      (9000, 300, dict(num_warps=4)),
                                      (9000, 300, dict(maxnreg=128, num_splits=3)),
                                      (9000, 300, dict(q_scale=8.0)),
                                      (4133, 0, dict(mma_early=True)),
                                      (5000, 1500, dict(maxnreg=255, mma_early=True)),
                                      (4133, 0, dict(rest_dot=False)),
                                      (9000, 300, dict(rest_dot=False, maxnreg=255)),
                                      (9000, 300, dict(win_splits=9)),
                                      (4133, 0, dict(win_splits=3, num_splits=40)),
                                      (32 * 1024 + 77, 0, dict(win_splits=2, rest_dot=False)),
                                      (4133, 0, dict(mma_prefetch=0)),
                                      (9000, 300, dict(mma_prefetch=8, num_splits=3)),
                                      (32 * 1024 + 77, 0, dict(mma_prefetch=4)),
                                      (5000, 1500, dict(mma_prefetch=16, rest_dot=False, maxnreg=128)),
                                      (4133, 0, dict(window_launch=True)),
                                      (9000, 300, dict(window_launch=True, maxnreg=128)),
                                      (32 * 1024 + 77, 0, dict(window_launch=True, win_splits=9)),
                                      (5000, 1500, dict(window_launch=True, rest_dot=False, num_splits=3)),
                                      (4133, 45, dict(window_launch=False)),
                                      (4133, 45, dict(window_launch=True, num_splits=3)),
                                      (5000, 1500, dict(window_launch=True, num_splits=2, win_splits=2))])
def test_gpu_gqa_mma(Hq, L, pad, kw):
    check(Hq, 8, L, 128, 2, pad, None, "cuda", R=128, mma=True, **kw)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("Hq", [32, 64])
@pytest.mark.parametrize("L,pad", [(9000, 300), (4133, 0)])
def test_gpu_gqa_sparse_value_rows_take_the_pair_path(Hq, L, pad):
    # h200_round27: the tensor-core bulk faulted ("misaligned address") on these rows at 9,000 tokens; "auto" now
    # leaves them to the pair path (at 64 query heads: two pair programs a kv head)
    check(Hq, 8, L, 128, 2, pad, None, "cuda", R=128, sparse=True)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("Hq,L,B", [(32, 4133, 2), (64, 9000, 2), (32, 4133, 8)])
def test_gpu_gqa_mma_on_the_static_path(Hq, L, B, monkeypatch):
    """The lean engine's launch (decode_attention_static: lengths read on the device, the value window as a
    ring, the grid over the capacity) through "auto", which picks the GQA kernel's tensor-core bulk (at batch 8,
    with the window's splits on their own launch)."""
    import kivi_kernels.decode_attention as da

    monkeypatch.setattr(dg, "MIN_TILES_GQA", 0)
    monkeypatch.setattr(da, "SHORT_TILES", 0)
    picks = []
    real = dg.default_gqa_mma
    monkeypatch.setattr(dg, "default_gqa_mma", lambda q, s, sc: picks.append(real(q, s, sc)) or picks[-1])
    H, D, W, max_len = 8, 128, 160, L + 300
    assert dg.window_launch_pays(B * H, max_len) == (dg.WINDOW_LAUNCH and B == 8)
    n_kq, n_vq = kivi_split(L, 32, 128)
    state = make_state(B, H, L, D, n_kq, n_vq, 2, 2, 32, torch.float16, "cuda", L)
    ring = torch.zeros(B, H, W, D, device="cuda", dtype=torch.float16)
    ring[:, :, torch.arange(n_vq, L, device="cuda") % W] = state.v_win  # position t in slot t % W
    tail = torch.zeros(B, H, max_len - n_kq, D, device="cuda", dtype=torch.float16)
    tail[:, :, : L - n_kq] = state.k_tail
    static = KiviState(state.k_codes, state.k_scale, state.k_min, 0, tail, state.v_codes, state.v_scale,
                       state.v_min, 0, ring, 2, 2, 32)
    lens = torch.tensor([L - 1, n_kq, n_vq], dtype=torch.int32, device="cuda")  # before the step's token
    q = torch.randn(B, Hq, 1, D, generator=torch.Generator().manual_seed(3)).half().cuda()
    out = da.decode_attention_static(q, static, lens, W, max_len, D**-0.5)
    ref = decode_attention_ref(q, state, None, D**-0.5)
    err = (out.float() - ref.float()).abs().max().item()
    assert picks and all(picks), picks
    assert err <= TOL[torch.float16], f"static GQA {Hq}/{H} L={L}: max |err| {err:.3g}"


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("Hq,L,pad", [(32, 4133, 45), (64, 9000, 0)])
def test_gpu_gqa_mma_window_launch_by_default(Hq, L, pad):
    # 8 x 8 (batch, kv head) pairs and a one-wave grid: the default call puts the window on its own launch
    assert dg.window_launch_pays(8 * 8, L) == dg.WINDOW_LAUNCH
    check(Hq, 8, L, 128, 2, pad, None, "cuda", B=8, R=128)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("Hq,pad", [(32, 45), (64, 0)])
def test_gpu_gqa_mma_two_waves(Hq, pad):
    # 64 x 8 (batch, kv head) pairs at 4133 tokens: by default the window's own launch, the bulk's at 3 splits (one
    # whole wave)
    assert dg.window_launch_pays(64 * 8, 4133) == dg.WINDOW_LAUNCH and dg.mma_splits(64 * 8, 4133, True) == 3
    check(Hq, 8, 4133, 128, 2, pad, None, "cuda", B=64, R=128)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("kw", [dict(block_w=128, num_warps=8), dict(maxnreg=168), dict(num_splits=3)])
def test_gpu_gqa_pairs_options(kw):
    check(32, 8, 9000, 128, 2, 100, True, "cuda", R=128, **kw)
