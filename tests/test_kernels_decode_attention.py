"""decode_attention_triton vs decode_attention_ref (the oracle), on hand-built KiviStates.

States are built from quantize_*_ref outputs placed into larger, garbage-filled capacity buffers, and
the fp tail / window are views into bigger buffers, so strides and capacity differ from what is used.
Without CUDA the kernels run under Triton's CPU interpreter on small shapes; `gpu` tests add real sizes.
"""

from __future__ import annotations

import pytest
import torch

import kivi_kernels.decode_attention as da
import kivi_kernels.decode_attention_gqa as dg
import kivi_kernels.decode_attention_v3 as da3
from kivi_core.attention_ref import decode_attention_ref
from kivi_core.quant import quantize_keys_ref, quantize_values_ref
from kivi_core.state import KiviState

# tests/conftest.py sets TRITON_INTERPRET=1 without CUDA before anything imports triton (triton reads it
# when a function is decorated), so the kernels below run in the CPU interpreter.

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
gpu = pytest.mark.gpu
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")

# Max abs error vs the fp32 oracle (outputs are O(1) averages of N(0,1) values). fp16/bf16 come from
# the probabilities being rounded to the dtype for the P @ V product (as in flash attention) and from
# the output rounding; fp32 runs with IEEE dots.
TOL = {torch.float32: 2e-5, torch.float16: 4e-3, torch.bfloat16: 3e-2}


def make_state(B, H, L, D, n_kq, n_vq, k_bits, v_bits, G, dtype, device, seed=0):
    """A KIVI layer state holding L random tokens split as (n_kq, n_vq), in oversized buffers."""
    gen = torch.Generator().manual_seed(seed)
    k = torch.randn(B, H, L, D, generator=gen).to(dtype)
    v = torch.randn(B, H, L, D, generator=gen).to(dtype)
    ck, cv = 32 // k_bits, 32 // v_bits
    cap_k, cap_v = n_kq + 2 * G, n_vq + 24

    def junk_int(*shape):
        return torch.randint(-(2**31), 2**31 - 1, shape, generator=gen, dtype=torch.int32)

    def junk(*shape):
        return (torch.randn(*shape, generator=gen) * 100).to(dtype)

    kc, ks, km = junk_int(B, H, cap_k // ck, D), junk(B, H, cap_k // G, D), junk(B, H, cap_k // G, D)
    vc, vs, vm = junk_int(B, H, cap_v, D // cv), junk(B, H, cap_v, D // G), junk(B, H, cap_v, D // G)
    if n_kq:
        c, s, m = quantize_keys_ref(k[:, :, :n_kq], k_bits, G)
        kc[:, :, : n_kq // ck], ks[:, :, : n_kq // G], km[:, :, : n_kq // G] = c, s, m
    if n_vq:
        c, s, m = quantize_values_ref(v[:, :, :n_vq], v_bits, G)
        vc[:, :, :n_vq], vs[:, :, :n_vq], vm[:, :, :n_vq] = c, s, m
    n_kt, n_vw = L - n_kq, L - n_vq
    kt_buf, vw_buf = junk(B, H, n_kt + 9, D), junk(B, H, n_vw + 9, D)
    kt_buf[:, :, 3 : 3 + n_kt] = k[:, :, n_kq:]
    vw_buf[:, :, 5 : 5 + n_vw] = v[:, :, n_vq:]
    to = lambda t: t.to(device)  # noqa: E731
    return KiviState(
        to(kc), to(ks), to(km), n_kq, to(kt_buf)[:, :, 3 : 3 + n_kt],
        to(vc), to(vs), to(vm), n_vq, to(vw_buf)[:, :, 5 : 5 + n_vw],
        k_bits, v_bits, G,
    )


def kivi_split(L, G, R):
    """KIVI's own split of L tokens: keys flushed R at a time, values a sliding window of R."""
    flush = R or G
    n_kq = (L // flush) * flush
    return n_kq, min(n_kq, max(0, L - R))


def sparse_values(s: KiviState) -> KiviState:
    """The same state with value rows (codes, scales, mins) inside wider buffers: strides a dense layout lacks."""
    def widen(t, extra):
        buf = torch.zeros(*t.shape[:3], t.shape[3] + extra, dtype=t.dtype, device=t.device)
        buf[..., : t.shape[3]] = t
        return buf[..., : t.shape[3]]
    return KiviState(s.k_codes, s.k_scale, s.k_min, s.n_kq, s.k_tail, widen(s.v_codes, 3), widen(s.v_scale, 1),
                     widen(s.v_min, 5), s.n_vq, s.v_win, s.k_bits, s.v_bits, s.group_size)


def check(B, Hq, H, q, L, D, n_kq, n_vq, k_bits, v_bits, G, dtype, pad, device=DEVICE, seed=0, **kw):
    state = make_state(B, H, L, D, n_kq, n_vq, k_bits, v_bits, G, dtype, device, seed)
    gen = torch.Generator().manual_seed(seed + 1)
    query = torch.randn(B, Hq, q, D, generator=gen).to(dtype).to(device)
    valid = None
    if pad:
        valid = torch.ones(B, L, dtype=torch.bool)
        valid[0, : min(L, 2 * G + 3)] = False  # left padding across a group boundary
        if B > 1:
            valid[-1, :] = False  # a row that sees no key at all -> zeros
        valid = valid.to(device)
    scaling = D**-0.5
    out = da.decode_attention_triton(query, state, valid, scaling, **kw)
    ref = decode_attention_ref(query, state, valid, scaling)
    assert out.shape == ref.shape == (B, q, Hq, D) and out.dtype == dtype
    err = (out.float() - ref.float()).abs()
    if not torch.isfinite(out).all() or err.max() > TOL[dtype]:
        i = tuple(torch.nonzero(err == err.max())[0].tolist()) if torch.isfinite(err).all() else "non-finite"
        raise AssertionError(
            f"max |err| {err.max().item():.3g} > {TOL[dtype]} at {i} (b, i, head, d); "
            f"L={L} n_kq={n_kq} n_vq={n_vq} k{k_bits}v{v_bits} G={G} {dtype} pad={pad} {kw}"
        )
    if pad and B > 1:
        assert torch.all(out[-1] == 0), "a fully masked row must give zeros"
    return state, query, valid, out


# -- CPU (interpreter) and GPU: small shapes ----------------------------------------------------------
# Every test below runs with impl "v1" (tensor-core tiles, any shape; these short calls take one tile a
# program) and "auto" with the short-call rule off (v3 or the GQA kernel where the call is one-token decode
# with head_dim 64/128, else v1); the v3 tests further down force v3 on shapes that reach its bulk.

IMPLS = ["v1", "auto"]


@pytest.fixture(params=IMPLS)
def impl(request):
    if request.param == "auto":
        request.getfixturevalue("monkeypatch").setattr(da, "SHORT_TILES", 0)
    return request.param

# G=16, R=32 keep the interpreter fast while every segment and boundary is still exercised.

G_SMALL, R_SMALL = 16, 32
LENGTHS = [1, 15, 16, 17, 31, 32, 33, 3 * R_SMALL + 5]  # 0, G-1, G, G+1, R-1, R, R+1, 3R+5


@pytest.mark.parametrize("L", LENGTHS)
def test_lengths_across_group_and_residual_boundaries(L, impl):
    n_kq, n_vq = kivi_split(L, G_SMALL, R_SMALL)
    check(2, 4, 2, 1, L, 32, n_kq, n_vq, 2, 2, G_SMALL, torch.float32, pad=False, num_splits=2,
          block_n=16, impl=impl)


@pytest.mark.parametrize(
    "L,n_kq,n_vq",
    [
        (40, 0, 0),  # nothing quantized yet
        (48, 48, 48),  # empty tail and empty window (R = 0)
        (48, 48, 0),  # keys packed, values all fp
        (50, 48, 20),  # n_vq inside a tile
        (80, 64, 64),  # n_vq == n_kq
        (97, 80, 13),
    ],
)
def test_segment_edges(L, n_kq, n_vq, impl):
    check(2, 2, 2, 1, L, 32, n_kq, n_vq, 4, 2, G_SMALL, torch.float32, pad=True, num_splits=3,
          block_n=32, impl=impl)


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16], ids=str)
@pytest.mark.parametrize("k_bits,v_bits", [(2, 2), (4, 4), (2, 4), (4, 2)])
def test_bits_and_dtypes(dtype, k_bits, v_bits, impl):
    check(2, 2, 1, 1, 90, 64, 64, 58, k_bits, v_bits, 32, dtype, pad=False, impl=impl)


@pytest.mark.parametrize("group", [1, 4, 8])
@pytest.mark.parametrize("q", [1, 3])
@pytest.mark.parametrize("pad", [False, True])
def test_gqa_query_len_and_padding(group, q, pad, impl):
    # L=50: the last q positions straddle the tail's start when q=3 (causal mask inside the tail).
    check(2, 2 * group, 2, q, 50, 32, 48, 18, 2, 2, G_SMALL, torch.float16, pad=pad, num_splits=2, impl=impl)


def test_causal_mask_reaches_packed_keys(impl):
    # Empty key tail: the last q-1 keys are packed, so the causal mask must apply to packed tiles too.
    check(1, 4, 2, 3, 64, 32, 64, 32, 2, 2, G_SMALL, torch.float32, pad=False, num_splits=1,
          block_n=64, impl=impl)


@pytest.mark.parametrize("num_splits", [1, 2, 7, 100])
def test_split_counts(num_splits, impl):
    check(1, 2, 1, 1, 150, 32, 128, 118, 2, 2, 32, torch.float32, pad=True, num_splits=num_splits,
          block_n=16, impl=impl)


@pytest.mark.parametrize("group,q", [(1, 1), (2, 1), (1, 2)])
@pytest.mark.parametrize("use_dot", [False, True])
def test_dot_and_dot_free_paths(group, q, use_dot):
    check(1, 2 * group, 2, q, 60, 32, 32, 28, 2, 2, G_SMALL, torch.float16, pad=True,
          use_dot=use_dot, impl="v1")


@pytest.mark.parametrize("L,k_bits,num_splits", [(300, 2, 2), (700, 4, 3), (1029, 2, 100)])
def test_long_contexts_split_across_tiles(L, k_bits, num_splits, impl):
    # several tiles, a split boundary inside the packed region and the tile straddling n_vq
    n_kq, n_vq = kivi_split(L, G_SMALL, R_SMALL)
    check(1, 2, 1, 1, L, 32, n_kq, n_vq, k_bits, 2, G_SMALL, torch.float16, pad=True, num_splits=num_splits,
          impl=impl)


# v3 (MHA decode): block_w 8 makes its bulk tiles 128 tokens at 2 bits (64 at 4), so these lengths run
# whole and partial bulk tiles, split starts inside the bulk, and v1's tiles for the value window / tail.
V3_CASES = [
    (300, 2, 2, 16, False, 1, torch.float32), (700, 2, 2, 32, True, 2, torch.float32),
    (1029, 4, 2, 16, True, 3, torch.float16), (600, 2, 4, 16, True, 1, torch.bfloat16),
    (130, 2, 2, 16, False, 1, torch.float32), (513, 4, 4, 32, True, 4, torch.float32),
]


@pytest.mark.parametrize("L,k_bits,v_bits,G,pad,num_splits,dtype", V3_CASES, ids=str)
def test_v3_bulk_tiles_match_oracle(L, k_bits, v_bits, G, pad, num_splits, dtype):
    n_kq, n_vq = kivi_split(L, G, 2 * G)
    check(2, 2, 2, 1, L, 64, n_kq, n_vq, k_bits, v_bits, G, dtype, pad=pad, num_splits=num_splits, block_w=8,
          impl="v3")


@pytest.mark.parametrize("L,n_kq,n_vq", [(200, 192, 192), (200, 192, 0), (200, 0, 0), (256, 256, 130)])
def test_v3_segment_edges(L, n_kq, n_vq):
    check(1, 2, 2, 1, L, 64, n_kq, n_vq, 2, 2, 32, torch.float32, pad=True, num_splits=2, block_w=8, impl="v3")


@pytest.mark.parametrize("packed", [True, False])
@pytest.mark.parametrize("Hq,H", [(4, 1), (8, 2)])
def test_v3_gqa_matches_oracle(Hq, H, packed):
    # v3 on GQA: a program a query head, its kv head = h // (Hq / H); "auto" picks it (measured faster)
    n_kq, n_vq = kivi_split(700, 32, 64)
    state = make_state(2, H, 700, 64, n_kq, n_vq, 2, 2, 32, torch.float16, DEVICE, 7)
    q = torch.randn(2, Hq, 1, 64, generator=torch.Generator().manual_seed(8)).half().to(DEVICE)
    valid = torch.ones(2, 700, dtype=torch.bool)
    valid[1, :45] = False
    valid = valid.to(DEVICE)
    ref = decode_attention_ref(q, state, valid, 64**-0.5)
    out = da3.decode_attention_v3(q, state, valid, 64**-0.5, packed=packed, block_w=8, num_splits=2)
    err = (out.float() - ref.float()).abs().max().item()
    assert err <= TOL[torch.float16], f"GQA {Hq}/{H} packed={packed}: max |err| {err:.3g}"
    # a call this small runs v1 (one tile a program) under "auto"; without that rule, v3 (larger 4:1 fp16 k2v2
    # calls run the GQA kernel: see below)
    assert da.pick_impl(q, state) == "v1" and da.pick_impl(q, state, "v3") == "v3"
    assert da.short_call(2 * H, 700, 64)
    assert da.pick_impl(q, state, "v1") == "v1"


def test_auto_picks_v3_for_one_token_decode_only(monkeypatch):
    st = make_state(1, 4, 512, 64, 512, 384, 2, 2, 32, torch.float16, "cpu")
    q = torch.empty(1, 4, 1, 64, dtype=torch.float16)
    # short calls (<= SHORT_TILES tiles of 64 tokens in all) run v1 with one tile a program
    assert da.pick_impl(q, st) == "v1" and da.short_call(4, 512, 64)
    assert da._num_splits(4, 512, 64, torch.device("cpu")) == 8
    assert not da.short_call(32, 4096, 64)
    monkeypatch.setattr(da, "SHORT_TILES", 0)
    assert da.pick_impl(q, st) == "v3"
    assert da.pick_impl(q, st, "v1") == "v1"
    assert da.pick_impl(torch.empty(1, 8, 1, 64, dtype=torch.float16), st) == "v3"  # GQA 8/4
    assert da.pick_impl(torch.empty(1, 4, 2, 64, dtype=torch.float16), st) == "v1"  # q_len 2
    # the shared-dequantization kernel where its pair path runs (4 query heads a kv head, fp16, k2v2) on calls
    # of at least MIN_TILES_GQA key tiles
    assert da.pick_impl(torch.empty(1, 16, 1, 64, dtype=torch.float16), st) == "v3"  # 4 tiles
    assert dg.gqa_beats_v3(8, 8, 4096) and dg.gqa_beats_v3(1, 8, 32768) and not dg.gqa_beats_v3(1, 8, 16384)
    monkeypatch.setattr(dg, "MIN_TILES_GQA", 4)
    assert da.pick_impl(torch.empty(1, 16, 1, 64, dtype=torch.float16), st) == "gqa"
    assert da.pick_impl(torch.empty(1, 16, 1, 64, dtype=torch.bfloat16), st) == "v3"
    assert da.pick_impl(torch.empty(1, 16, 2, 64, dtype=torch.float16), st) == "v1"
    assert da.pick_impl(torch.empty(1, 8, 1, 64, dtype=torch.float16), st, "gqa") == "gqa"  # its fp32 path
    with pytest.raises(ValueError, match="impl='gqa' cannot run this call: .*2, 4 or 8"):
        da.pick_impl(torch.empty(1, 4, 1, 64, dtype=torch.float16), st, "gqa")


def test_short_call_tiles(monkeypatch):
    # v1's tile on a short call: 64 tokens, halved where the one-tile programs then fit a wave of SHORT_PROGRAMS_SM an
    # SM (132 SMs on the H200: 8 kv heads at 512 and 1024 tokens; not 32 heads at 512 or 1024, nor 8 at 2048); longer
    # calls, head_dim 256 and the CPU keep theirs
    monkeypatch.setattr(da, "_num_sms", lambda i: 132)
    cuda = torch.device("cuda", 0)
    cases = {(8, 512, 128): 32, (8, 1024, 128): 32, (32, 512, 128): 64, (32, 1024, 128): 64, (8, 2048, 128): 64,
             (8, 8192, 128): 64, (4, 100, 256): 32}
    assert {k: da._short_block_n(*k, cuda) for k in cases} == cases
    assert da._short_block_n(8, 512, 128, torch.device("cpu")) == 64
    assert da._num_splits(8, 512, 32, cuda) == 16  # one tile a program


def test_one_tile_programs_take_one_pipelining_stage(monkeypatch):
    # one-tile programs (a short call's): 1 stage; programs of several tiles and the CPU: Triton's default; V1_STAGES
    # forces one (benchmarks)
    cuda = torch.device("cuda", 0)
    got = [da._v1_stages(s, L, bn, cuda) for s, L, bn in [(8, 512, 64), (16, 500, 32), (2, 512, 64), (1, 64, 64)]]
    assert got == [1, 1, None, 1]
    assert da._v1_stages(8, 512, 64, torch.device("cpu")) is None
    monkeypatch.setattr(da, "V1_STAGES", 2)
    assert da._v1_stages(2, 512, 64, cuda) == 2


def test_auto_picks_the_gqa_tensor_core_bulk_above_its_short_calls(monkeypatch):
    # head_dim 128, k2v2 fp16, 4 query heads a kv head: v1's one-tile programs up to SHORT_TILES_GQA_MMA tiles
    # of 64 tokens, the tensor-core bulk above (1x4096 at 8 kv heads: 512 tiles); other shapes keep SHORT_TILES
    n_kq, n_vq = kivi_split(4096, 32, 128)
    st = make_state(1, 8, 4096, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu")
    q = torch.empty(1, 32, 1, 128, dtype=torch.float16)
    assert 8 * 4096 // 64 > da.SHORT_TILES_GQA_MMA and da.pick_impl(q, st) == "gqa"
    assert da.pick_impl(q.bfloat16(), st) == "v1"  # the bulk maps fp16 only: 512 tiles is short for the others
    monkeypatch.setattr(da, "SHORT_TILES_GQA_MMA", 512)
    assert da.pick_impl(q, st) == "v1"
    monkeypatch.setattr(da, "SHORT_TILES", 0)  # no short calls at all
    assert da.pick_impl(q, st) == "gqa"


def test_v3_refuses_what_it_cannot_run_and_auto_falls_back():
    check(1, 4, 2, 2, 600, 32, 576, 300, 2, 2, G_SMALL, torch.float16, pad=True, num_splits=2, impl="auto")
    state = make_state(1, 1, 100, 96, 96, 40, 2, 2, 48, torch.float16, DEVICE)
    st2 = make_state(1, 2, 100, 64, 96, 40, 2, 2, 32, torch.float16, DEVICE)
    with pytest.raises(ValueError, match="impl='v3'.*q_len=2"):
        da.decode_attention_triton(torch.randn(1, 4, 2, 64, device=DEVICE, dtype=torch.float16), st2, None,
                                   1.0, impl="v3")
    with pytest.raises(ValueError, match="head_dim 64 or 128"):
        da.decode_attention_triton(torch.randn(1, 1, 1, 96, device=DEVICE, dtype=torch.float16), state, None,
                                   1.0, impl="v3")
    with pytest.raises(ValueError, match="impl='v2'"):
        da.decode_attention_triton(torch.randn(1, 1, 1, 96, device=DEVICE, dtype=torch.float16), state, None,
                                   1.0, impl="v2")
    check(1, 1, 1, 1, 100, 96, 96, 40, 2, 2, 48, torch.float16, pad=False, impl="auto")  # D=96: v1


def test_head_dim_not_power_of_two(impl):
    check(1, 2, 1, 2, 70, 96, 64, 38, 2, 4, 32, torch.float16, pad=False, impl=impl)


def test_launcher_rejects_bad_arguments(impl):
    state = make_state(1, 2, 40, 32, 32, 8, 2, 2, 16, torch.float32, DEVICE)
    q = torch.randn(1, 2, 1, 32, device=DEVICE)
    with pytest.raises(ValueError, match="q_len=9"):
        da.decode_attention_triton(torch.randn(1, 2, 9, 32, device=DEVICE), state, None, 1.0, impl=impl)
    with pytest.raises(ValueError, match="Hq=3"):
        da.decode_attention_triton(torch.randn(1, 3, 1, 32, device=DEVICE), state, None, 1.0, impl=impl)
    with pytest.raises(ValueError, match="dtype"):
        da.decode_attention_triton(q.half(), state, None, 1.0, impl=impl)
    with pytest.raises(ValueError, match="valid"):
        da.decode_attention_triton(q, state, torch.ones(1, 39, dtype=torch.bool, device=DEVICE), 1.0, impl=impl)
    with pytest.raises(ValueError, match="k_bits=3"):
        da.decode_attention_triton(q, state._replace(k_bits=3), None, 1.0, impl=impl)


# v3 packed (the default at k2v2 fp16): the per-code arithmetic in fp16x2 pairs (inline PTX) on the GPU. The
# interpreter runs its fp32 twin (_dot16_ref) in the same tiles, joins and thread mapping, so CI checks all
# but the pair arithmetic against the oracle; the GPU test allows for fp16 products and 8-term fp16 sums.
PACKED_TOL_GPU = 3e-2


def check_packed(B, H, L, D, G, pad, device=DEVICE, seed=0, **kw):
    n_kq, n_vq = kivi_split(L, G, 2 * G if device == "cpu" else 128)
    state = make_state(B, H, L, D, n_kq, n_vq, 2, 2, G, torch.float16, device, seed)
    query = torch.randn(B, H, 1, D, generator=torch.Generator().manual_seed(seed + 1)).half().to(device)
    valid = None
    if pad:
        valid = torch.ones(B, L, dtype=torch.bool)
        valid[0, : min(L, 2 * G + 3)] = False
        valid = valid.to(device)
    out = da3.decode_attention_v3(query, state, valid, D**-0.5, packed=True, **kw)
    ref = decode_attention_ref(query, state, valid, D**-0.5)
    err = (out.float() - ref.float()).abs().max().item()
    tol = TOL[torch.float16] if device == "cpu" else PACKED_TOL_GPU
    assert err <= tol, f"packed: max |err| {err:.3g} > {tol}; L={L} D={D} G={G} pad={pad} {kw}"


@pytest.mark.parametrize("L,D,G,pad,num_splits,block_w,kw", [
    (300, 64, 32, True, 1, 8, {}), (700, 128, 16, False, 2, 8, {}), (1500, 64, 32, True, 1, 32, {}),
    pytest.param(1500, 128, 16, False, 2, 32, {}, marks=pytest.mark.slow),  # 22 s interpreted
    (1500, 64, 16, True, 2, 32, {"ufold": 1}),
    (700, 128, 32, False, 1, 8, {"ufold": 8})], ids=str)
def test_v3_packed_tiles_match_oracle(L, D, G, pad, num_splits, block_w, kw):
    # block_w 32 with one warp: 512-token tiles, so 1500 tokens are 3 tiles in one program (the online
    # softmax rescales the value accumulators across tiles). ufold: the u fold's pass width (8 on a
    # 2-tile split: passes run past the tile's rows)
    check_packed(2, 2, L, D, G, pad, block_w=block_w, num_warps=1 if block_w == 32 else None,
                 num_splits=num_splits, **kw)


def test_v3_packed_strided_value_rows():
    # value code rows further apart than D / 16 words (a view into wider storage): the packed path takes
    # the row stride at run time instead of as a constant (VDENSE=False) and must give the same result
    B, H, L, D, G = 1, 2, 1100, 128, 32
    n_kq, n_vq = kivi_split(L, G, 2 * G)
    state = make_state(B, H, L, D, n_kq, n_vq, 2, 2, G, torch.float16, DEVICE, seed=3)
    wide = torch.zeros(*state.v_codes.shape[:3], 3 * D // 16, dtype=torch.int32, device=DEVICE)
    wide[..., : D // 16] = state.v_codes
    strided = state._replace(v_codes=wide[..., : D // 16])
    q = torch.randn(B, H, 1, D, generator=torch.Generator().manual_seed(4)).half().to(DEVICE)
    ref = decode_attention_ref(q, state, None, D**-0.5)
    for st in (state, strided):
        out = da3.decode_attention_v3(q, st, None, D**-0.5, packed=True, block_w=32, num_warps=1)
        err = (out.float() - ref.float()).abs().max().item()
        assert err <= TOL[torch.float16], f"v_codes stride {st.v_codes.stride()}: max |err| {err:.3g}"


# v3 with the tensor-core bulk (decode_attention_mma): mma.sync from packed codes on the GPU; the interpreter
# runs the twin (_mma8_ref) that computes each warp's products from the same lane fragments. One 2-warp
# program over three 256-token tiles with padding, and a 1-warp split of its own (~45 s interpreted).
@pytest.mark.parametrize("L,pad,num_splits,num_warps,mma", [
    (1100, True, 1, 2, 1), pytest.param(700, False, 2, 1, 1, marks=pytest.mark.slow),  # 23 s interpreted
    pytest.param(1500, True, 1, 1, 2, marks=pytest.mark.slow)], ids=str)  # mma=2 is an option, not a default
def test_v3_mma_tiles_match_oracle(L, pad, num_splits, num_warps, mma):
    # mma=2: two blocks of 8 word rows a warp a tile (512 tokens a tile with one warp: 3 tiles)
    check_packed(2, 2, L, 128, 32, pad, num_splits=num_splits, num_warps=num_warps, mma=mma)


def test_v3_mma_scratch_row_value_operand_matches_oracle():
    # mma=1 runs mma_shfl by default (the value B operand by shuffles from the key lanes, a running max a
    # warp): the scratch-row path (p and u through global memory, one max a program), two 2-warp tiles and
    # a masked third, with padding
    check_packed(2, 2, 700, 128, 32, True, num_splits=1, num_warps=2, mma=1, mma_shfl=False)


def test_v3_mma_refuses_what_it_cannot_map():
    state = make_state(1, 2, 200, 64, 192, 72, 2, 2, 32, torch.float16, DEVICE)
    with pytest.raises(ValueError, match="mma=1 cannot run this call: it maps head_dim 128 in groups of 32"):
        da3.decode_attention_v3(torch.randn(1, 2, 1, 64, device=DEVICE, dtype=torch.float16), state, None, 1.0,
                                mma=1)
    state = make_state(1, 2, 200, 128, 192, 72, 2, 2, 32, torch.bfloat16, DEVICE)
    with pytest.raises(ValueError, match="mma=3 must be 0 .off., 1 or 2"):
        da3.decode_attention_v3(torch.randn(1, 2, 1, 128, device=DEVICE, dtype=torch.float16),
                                make_state(1, 2, 200, 128, 192, 72, 2, 2, 32, torch.float16, DEVICE), None, 1.0, mma=3)
    with pytest.raises(ValueError, match="mma_shfl=True runs one block a warp: use mma=1 .here mma=2."):
        da3.decode_attention_v3(torch.randn(1, 2, 1, 128, device=DEVICE, dtype=torch.float16),
                                make_state(1, 2, 200, 128, 192, 72, 2, 2, 32, torch.float16, DEVICE), None, 1.0, mma=2,
                                mma_shfl=True)
    with pytest.raises(ValueError, match="it computes k2v2 fp16 only"):
        da3.decode_attention_v3(torch.randn(1, 2, 1, 128, device=DEVICE, dtype=torch.bfloat16), state, None, 1.0,
                                mma=1)
    with pytest.raises(ValueError, match=r"mma=1 cannot run this call: .*needs scaling > 0 \(here -0.5\)"):
        da3.decode_attention_v3(torch.randn(1, 2, 1, 128, device=DEVICE, dtype=torch.float16),
                                make_state(1, 2, 200, 128, 192, 72, 2, 2, 32, torch.float16, DEVICE), None, -0.5, mma=1)


def test_v3_mma_default_rule():
    # default v3 calls run the tensor-core bulk from MMA_MIN_PROGRAMS (batch x query heads) programs, where it
    # can map the call; tuning keywords keep the path they name
    st = make_state(1, 1, 64, 128, 32, 0, 2, 2, 32, torch.float16, DEVICE)
    q = lambda B, H, dt=torch.float16: torch.empty(B, H, 1, 128, dtype=dt)  # noqa: E731
    assert da3.default_mma(q(8, 32), st) and da3.default_mma(q(2, 128), st)
    assert not da3.default_mma(q(1, 32), st) and not da3.default_mma(q(4, 32), st)
    assert not da3.default_mma(q(8, 32, torch.bfloat16), st)
    st64 = make_state(1, 1, 64, 128, 64, 0, 2, 2, 64, torch.float16, DEVICE)
    assert not da3.default_mma(q(8, 32), st64)


def test_v3_default_call_launches_the_mma_bulk(monkeypatch):
    # a call without tuning keywords reaches the kernel with MMA on and MMA_WARPS warps where default_mma
    # says so (the launcher resolves `packed` after this choice: before, it never happened)
    seen = {}

    class Spy:
        def __getitem__(self, grid):
            def launch(*args, **kw):
                seen.update(mma=kw["MMA"], warps=kw["num_warps"])
                raise RuntimeError("spied")
            return launch

    monkeypatch.setattr(da3, "_decode_attn_v3_kernel", Spy())
    st = make_state(8, 32, 64, 128, 32, 0, 2, 2, 32, torch.float16, "cpu")
    for B, want in ((8, (1, da3.MMA_WARPS)), (1, (0, da3.DEFAULT_WARPS))):
        with pytest.raises(RuntimeError, match="spied"):
            da3.decode_attention_v3(torch.zeros(B, 32, 1, 128, dtype=torch.float16), st, None, 1.0)
        assert (seen["mma"], seen["warps"]) == want
    with pytest.raises(RuntimeError, match="spied"):
        da3.decode_attention_v3(torch.zeros(8, 32, 1, 128, dtype=torch.float16), st, None, 1.0, packed=True)
    assert seen["mma"] == 0


def test_v3_ufold_must_be_a_power_of_two():
    state = make_state(1, 2, 600, 64, 512, 472, 2, 2, 32, torch.float16, DEVICE)
    q = torch.randn(1, 2, 1, 64, device=DEVICE, dtype=torch.float16)
    with pytest.raises(ValueError, match="ufold=3 must be a power of two"):
        da3.decode_attention_v3(q, state, None, 1.0, packed=True, ufold=3)


@pytest.mark.parametrize("bh,L,want", [(256, 32768, 16), (512, 16384, 8), (2048, 4096, 2), (4096, 4096, 1),
                                       (32, 32768, 16), (32, 512, 1), (8896, 4096, 1), (3, 40000, 20)])
def test_v3_split_rule(bh, L, want):
    # the measured rule (decode_attention_v3.SPLIT_PROGRAMS): one-tile programs up to ~4096 programs a call,
    # then c tiles a program; splits never outnumber tiles and each split starts on a tile
    S = da3.num_splits_v3(bh, L, 2048)
    assert S == want
    n, chunk = da3.splits_v3(bh, L, 2048, 16)
    assert n == -(-L // chunk) + 1 and chunk % 2048 == 0 and n - 1 <= -(-L // 2048)


def test_v3_packed_refuses_other_bit_widths():
    state = make_state(1, 2, 200, 64, 192, 72, 4, 2, 32, torch.float16, DEVICE)
    with pytest.raises(ValueError, match="packed=True computes k2v2 only"):
        da3.decode_attention_v3(torch.randn(1, 2, 1, 64, device=DEVICE, dtype=torch.float16), state, None, 1.0,
                                packed=True)


# -- GPU only: real sizes -------------------------------------------------------------------------------


# (dtype, head_dim, k_bits, v_bits, GQA group): every dtype, head_dim, bit mix and ratio appears, without
# the full product (each combination is a separate compilation).
GPU_CASES = [
    (torch.float16, 128, 2, 2, 1), (torch.float16, 128, 2, 2, 4), (torch.float16, 128, 4, 4, 8),
    (torch.bfloat16, 128, 2, 2, 4), (torch.bfloat16, 128, 4, 2, 1), (torch.float16, 64, 2, 4, 4),
    (torch.bfloat16, 64, 2, 2, 8), (torch.float16, 256, 2, 2, 1), (torch.bfloat16, 256, 4, 4, 4),
    (torch.float16, 256, 2, 2, 8),
]


@gpu
@needs_cuda
@pytest.mark.parametrize("dtype,D,k_bits,v_bits,group", GPU_CASES, ids=str)
def test_gpu_shapes(dtype, D, k_bits, v_bits, group, impl):
    for L, q, pad in [(1, 1, False), (129, 1, True), (1000, 3, True), (4133, 1, False)]:
        n_kq, n_vq = kivi_split(L, 32, 128)
        check(3, 2 * group, 2, q, L, D, n_kq, n_vq, k_bits, v_bits, 32, dtype, pad, device="cuda", seed=L + D,
              impl=impl)


@gpu
@needs_cuda
@pytest.mark.parametrize("B,Hq,H,L", [(1, 32, 32, 512), (1, 32, 8, 512), (2, 32, 32, 4133), (8, 32, 8, 4133),
                                      (1, 32, 8, 32768)], ids=str)
@pytest.mark.parametrize("before", ["copy", "kernel"])
def test_gpu_pdl_in_a_graph(B, Hq, H, L, before):
    # a call's launches as programmatic dependents (kernels/pdl.py: v1's short call, v3, the GQA bulk with the window on
    # its own launch or not), captured in a CUDA graph right after a copy (not a kernel) or a kernel that writes the
    # query: replayed on new inputs, the output is the oracle's. A dependent launch reading before its wait would read
    # the last replay's query
    from kivi_kernels import pdl
    assert pdl.pdl_launch(torch.device("cuda")) == (torch.cuda.get_device_capability()[0] >= 9)
    n_kq, n_vq = kivi_split(L, 32, 128)
    state = make_state(B, H, L, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cuda", seed=L)
    src = torch.randn(B, Hq, 1, 128, device="cuda", dtype=torch.float16)
    q = torch.empty_like(src)
    da.decode_attention_triton(src, state, None, 128**-0.5)  # compiled outside the capture
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    g = torch.cuda.CUDAGraph()
    with torch.cuda.stream(stream), torch.cuda.graph(g, stream=stream):
        if before == "copy":
            q.copy_(src)
        else:
            torch.neg(src, out=q)
        out = da.decode_attention_triton(q, state, None, 128**-0.5)
    for seed in range(3):
        src.copy_(torch.randn(B, Hq, 1, 128, generator=torch.Generator().manual_seed(seed)).half())
        g.replay()
        torch.cuda.synchronize()
        ref = decode_attention_ref(-src if before == "kernel" else src, state, None, 128**-0.5)
        err = (out.float() - ref.float()).abs().max().item()
        assert err <= TOL[torch.float16], f"replay {seed}: max |err| {err:.3g}"


@gpu
@needs_cuda
@pytest.mark.parametrize("L,D,G,B,H", [(4133, 128, 32, 3, 4), (32 * 1024 + 77, 128, 64, 1, 8), (1000, 64, 16, 2, 2),
                                       (4096, 128, 128, 8, 32)], ids=str)
def test_gpu_v3_packed(L, D, G, B, H):
    check_packed(B, H, L, D, G, True, device="cuda", seed=L)
    check_packed(B, H, L, D, G, False, device="cuda", seed=L + 1)
    check_packed(B, H, L, D, G, True, device="cuda", seed=L + 2, maxnreg=128)
    check_packed(B, H, L, D, G, True, device="cuda", seed=L + 3, ufold=1)


@gpu
@needs_cuda
@pytest.mark.parametrize("L,B,H", [(4133, 3, 4), (32 * 1024 + 77, 1, 8), (1000, 2, 2), (4096, 8, 32), (129, 2, 2)],
                         ids=str)
def test_gpu_v3_mma(L, B, H):
    check_packed(B, H, L, 128, 32, True, device="cuda", seed=L, mma=1, num_warps=2)  # the default (mma_shfl)
    check_packed(B, H, L, 128, 32, False, device="cuda", seed=L + 1, mma=1, num_warps=4)
    check_packed(B, H, L, 128, 32, True, device="cuda", seed=L + 2, mma=2, num_warps=2, maxnreg=168)
    check_packed(B, H, L, 128, 32, True, device="cuda", seed=L + 3, mma=1, num_warps=2, mma_shfl=False)


@gpu
@needs_cuda
@pytest.mark.parametrize("L,Hq,H,packed", [(4133, 32, 8, True), (32 * 1024 + 77, 32, 8, True), (1000, 32, 8, False),
                                           (4096, 8, 1, True)], ids=str)
def test_gpu_v3_gqa(L, Hq, H, packed):
    n_kq, n_vq = kivi_split(L, 32, 128)
    state = make_state(2, H, L, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cuda", L)
    q = torch.randn(2, Hq, 1, 128, generator=torch.Generator().manual_seed(L)).half().cuda()
    ref = decode_attention_ref(q, state, None, 128**-0.5)
    out = da3.decode_attention_v3(q, state, None, 128**-0.5, packed=packed)
    err = (out.float() - ref.float()).abs().max().item()
    assert err <= PACKED_TOL_GPU, f"GQA {Hq}/{H} L={L} packed={packed}: max |err| {err:.3g}"


@gpu
@needs_cuda
@pytest.mark.parametrize("G", [32, 64, 128])
def test_gpu_group_sizes_and_irregular_splits(G, impl):
    for L, n_kq, n_vq in [(1000, 896, 5), (1000, 0, 0), (768, 768, 768), (777, 768, 700)]:
        n_kq = n_kq // G * G
        n_vq = min(n_vq, n_kq)
        check(2, 8, 2, 1, L, 128, n_kq, n_vq, 2, 2, G, torch.float16, True, device="cuda", seed=G, impl=impl)


@gpu
@needs_cuda
@pytest.mark.parametrize("B,Hq,H", [(1, 32, 32), (1, 32, 8), (2, 8, 1)])
def test_gpu_long_context_split_k(B, Hq, H, impl):
    L = 32 * 1024 + 77
    n_kq, n_vq = kivi_split(L, 32, 128)
    check(B, Hq, H, 1, L, 128, n_kq, n_vq, 2, 2, 32, torch.float16, pad=True, device="cuda", impl=impl)


@gpu
@needs_cuda
def test_gpu_sparse_value_rows(impl):
    # value rows (codes, scales, mins) inside wider buffers at 9,000 tokens: the geometry at which the GQA
    # tensor-core bulk faulted (h200_round27: head strides multiples of 16, row strides odd), here at MHA (v1,
    # and v3's tensor-core bulk through "auto"); the GQA shapes: test_gpu_gqa_sparse_value_rows_take_the_pair_path
    B, L, D, Hq, H = 2, 9000, 128, 32, 32
    n_kq, n_vq = kivi_split(L, 32, 128)
    state = sparse_values(make_state(B, H, L, D, n_kq, n_vq, 2, 2, 32, torch.float16, "cuda", L))
    q = torch.randn(B, Hq, 1, D, generator=torch.Generator().manual_seed(5)).half().cuda()
    out = da.decode_attention_triton(q, state, None, D**-0.5, impl=impl)
    err = (out.float() - decode_attention_ref(q, state, None, D**-0.5).float()).abs().max().item()
    assert err <= TOL[torch.float16], f"{Hq}/{H} heads, {da.pick_impl(q, state, impl)}: max |err| {err:.3g}"


@gpu
@needs_cuda
@pytest.mark.parametrize("Hq,H,B", [(32, 8, 4), (32, 32, 4), (32, 8, 8)])  # 32/8 at batch 8: the GQA window launch
def test_gpu_no_dequantized_copy_in_memory(impl, Hq, H, B):
    """Peak memory during a call grows by the split workspace + output only, not by a cache copy."""
    L, D = 16384, 128
    n_kq, n_vq = kivi_split(L, 32, 128)
    state = make_state(B, H, L, D, n_kq, n_vq, 2, 2, 32, torch.float16, "cuda")
    query = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.float16)
    da.decode_attention_triton(query, state, None, D**-0.5, impl=impl)  # compile outside the measurement
    torch.cuda.synchronize()
    # requested bytes, not allocated ones: the allocator hands out a free block whole when less than 1 MiB
    # would be left over and counts all of it, so which blocks earlier tests left decides the allocated peak
    # (H200, an xdist worker: 3,039,232 B allocated for 2,229,248 requested, also after empty_cache)
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_stats()["requested_bytes.all.current"]
    da.decode_attention_triton(query, state, None, D**-0.5, impl=impl)
    torch.cuda.synchronize()
    grew = torch.cuda.memory_stats()["requested_bytes.all.peak"] - base
    picked = da.pick_impl(query, state, impl)
    if picked == "v1":
        S = da._num_splits(B * H, L, da._default_block_n(D), query.device)
        workspace = B * H * S * (Hq // H) * (D + 2) * 4
    elif picked == "gqa":  # a program a kv head: partial rows for its query heads (+ one fp16 p row, pairs)
        workspace = dg.workspace_bytes(B, H, Hq // H, L, D, packed=True,
                                       mma=dg.default_gqa_mma(query, state, D**-0.5), window=L - n_vq // 16 * 16)
    else:  # v3 runs a program a query head (GQA too), each with its scratch row
        workspace = da3.workspace_bytes(B, Hq, L, D, 2, packed=da3.default_packed(query, state))
    workspace += B * Hq * D * 2  # the output
    fp16_cache = 2 * B * H * L * D * 2
    assert grew <= workspace + 64 * 1024, f"peak grew {grew} B; workspace {workspace} B"
    # the workspace is one scratch row a program (v3 packed: 24 KB; 8 one-tile splits a query head here: 25.8
    # MB on the H200 = 2.4% of the MHA fp16 cache, 9.6% of the 32/8 GQA one), and programs are capped near
    # SPLIT_PROGRAMS whatever the length; a dequantized copy of K or V alone would be 50% of it
    assert workspace < fp16_cache / 4  # so grew (bounded by it above) stays far below such a copy
