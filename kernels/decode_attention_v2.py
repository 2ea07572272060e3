"""KIVI decode attention, v2: the same contract as v1 (`decode_attention.py`), fewer instructions per byte.

Torch twin (the spec and oracle): `kivi_core.attention_ref.decode_attention_ref`. Public entry point:
`kivi_kernels.decode_attention.decode_attention_triton(..., impl="v2")` (the default where supported).

Why v2 (numbers in benchmarks/results/h200.md and decode_v2_plan.md): v1 was instruction-bound at
~26 instructions an element (0.4-0.54 TB/s on H200). The budget for 70% of copy bandwidth (~3 TB/s) at
k2v2 G=32 (96 B a token a head for 256 K+V elements = 2.67 elements a byte) is 132 SMs x 128 lanes x
~1.9 GHz / (3e12 B/s x 2.67) = ~4 instructions an element at full issue. What changes:

  * Keys in code order. A key tile is BLOCK_W word rows x D (BLOCK_N = BLOCK_W * cpw tokens). Code j of
    every word is the sub-tile of tokens {w * cpw + j}: a plain 2D [BLOCK_W, D] tensor with the loaded
    words' layout, so no 3D broadcast and no tl.reshape (v1's shared-memory round trips). Softmax does not
    care about token order, so each sub-tile is one online-softmax step; its V rows are loaded with the
    same token indices (row stride cpw), which keeps K and V matched.
  * Code -> float in 2 integer ops (SHF + LOP3): the code is moved to the top mantissa bits of 1.0f,
    f = 1 + c / 2^b exactly, and c * scale + min = f * A + B with A = 2^b * scale, B = min - A computed once
    a tile (amortized over cpw sub-tiles). So a key element costs SHF, LOP3, FFMA, half a F2F pack
    (~3.5), plus the operand staging of tl.dot (~0.25). v1: I2F-free too, but + the 3D shuffles.
  * Values unpacked along channels with tl.interleave (join + reshape whose new axis is in-thread by
    construction, so register moves, not shared memory): a [BLOCK_W, D/cpw] word tile becomes
    [BLOCK_W, D] with column d holding word d // cpw; scales/mins are gathered at word granularity
    ([BLOCK_W, D/cpw], each read G/cpw times from L1) and interleaved the same way. An element then
    costs SHF, LOP3, FADD (magic 2^23), FFMA, half a pack (~4.5).
  * Both products on tensor cores (tl.dot, M padded to 16): reductions over D and over tokens cost no
    shuffles; for one query row that wastes MMA throughput, which is far from the limit here.
  * A lean launcher: 41 kernel arguments instead of 70 (innermost strides asserted 1, scale and min
    share strides), one workspace allocation, Python-int checks only, one launch when num_splits == 1.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kivi_core.state import KiviState

from .decode_attention import (
    _LOG2E,
    _attend,
    _decode_attn_reduce_kernel,
    _interpreting,
    _load_fp,
    _num_sms,
)


@triton.jit
def _k_words(kc_ptr, ks_ptr, km_ptr, s_kcw, s_ksg, w0, seg_end, offs_w, offs_d, d_ok,
             BITS: tl.constexpr, G: tl.constexpr):
    # One key tile: BLOCK_W full word rows (coalesced, D words each) and, per word row, the scale/min
    # row of its group (cpw | G, so a word never straddles groups; a row is re-read G/cpw times, from L1).
    CPW: tl.constexpr = 32 // BITS
    rows = w0 + offs_w
    ok = (rows * CPW < seg_end)[:, None] & d_ok[None, :]
    words = tl.load(kc_ptr + rows.to(tl.int64)[:, None] * s_kcw + offs_d[None, :], mask=ok, other=0)
    grp = ((rows * CPW) // G).to(tl.int64)
    sc = tl.load(ks_ptr + grp[:, None] * s_ksg + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
    mn = tl.load(km_ptr + grp[:, None] * s_ksg + offs_d[None, :], mask=ok, other=0.0).to(tl.float32)
    a = sc * (1 << BITS)  # exact (power of two)
    return words, a, mn - a


@triton.jit
def _k_code(words, a, b, J: tl.constexpr, BITS: tl.constexpr, dtype: tl.constexpr):
    # Code J of every word as the key value, in the words' layout: [BLOCK_W, DP].
    # f = bits(0x3F800000 | c << (23 - b)) = 1 + c / 2^b exactly; c * scale + min = f * a + b.
    P: tl.constexpr = 23 - BITS
    SH: tl.constexpr = J * BITS - P
    QMAX: tl.constexpr = (1 << BITS) - 1
    if SH >= 0:
        x = words >> SH
    else:
        x = words << (-SH)
    f = ((x & (QMAX << P)) | 0x3F800000).to(tl.float32, bitcast=True)
    return (f * a + b).to(dtype)


@triton.jit
def _k_code_dyn(words, a, b, j, BITS: tl.constexpr, dtype: tl.constexpr):
    # `_k_code` for a runtime j: the two rare phase-1 loops (the tile straddling n_vq, tiles whose V is
    # in the window) loop over codes without unrolling, which cuts the kernel's unrolled bodies from
    # 3 x cpw to cpw + 2 (compile time). Costs one more SHF an element there.
    P: tl.constexpr = 23 - BITS
    QMAX: tl.constexpr = (1 << BITS) - 1
    sh = j * BITS - P
    x = (words >> tl.maximum(sh, 0)) << tl.maximum(-sh, 0)
    f = ((x & (QMAX << P)) | 0x3F800000).to(tl.float32, bitcast=True)
    return (f * a + b).to(dtype)


@triton.jit
def _v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, s_vst, rows, r_ok, D: tl.constexpr,
              BITS: tl.constexpr, G: tl.constexpr, DP: tl.constexpr, dtype: tl.constexpr):
    # Value rows `rows` ([BLOCK_W] token indices) dequantized to [BLOCK_W, DP] in natural channel order.
    CPW: tl.constexpr = 32 // BITS
    LOG_CPW: tl.constexpr = 4 if BITS == 2 else 3
    DWP: tl.constexpr = DP // CPW
    QMAX: tl.constexpr = (1 << BITS) - 1
    offs_w = tl.arange(0, DWP)
    m = r_ok[:, None] & (offs_w < D // CPW)[None, :]
    r64 = rows.to(tl.int64)
    words = tl.load(vc_ptr + r64[:, None] * s_vct + offs_w[None, :], mask=m, other=0)
    grp = (offs_w * CPW) // G
    sc = tl.load(vs_ptr + r64[:, None] * s_vst + grp[None, :], mask=m, other=0.0).to(tl.float32)
    mn = tl.load(vm_ptr + r64[:, None] * s_vst + grp[None, :], mask=m, other=0.0).to(tl.float32)
    # [BLOCK_W, DWP] -> [BLOCK_W, DWP * CPW]: column d holds word d // CPW (each interleave doubles in-thread)
    for _ in tl.static_range(LOG_CPW):
        words = tl.interleave(words, words)
        sc = tl.interleave(sc, sc)
        mn = tl.interleave(mn, mn)
    sh = (tl.arange(0, DP) % CPW) * BITS
    c = (((words >> sh[None, :]) & QMAX) | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0  # 2^23 + c
    return (c * sc + mn).to(dtype)


@triton.jit(do_not_specialize=["L", "n_kq", "n_vq"])
def _decode_attn_v2_kernel(
    q_ptr, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr, ws_ptr, out_ptr,
    H, L, n_kq, n_vq, chunk, qk_scale,
    s_qb, s_qh, s_qi,
    s_kcb, s_kch, s_kcw,
    s_ksb, s_ksh, s_ksg,
    s_ktb, s_kth, s_ktt,
    s_vcb, s_vch, s_vct,
    s_vsb, s_vsh, s_vst,
    s_vwb, s_vwh, s_vwt,
    s_mb,
    NUM_SPLITS,
    GROUP: tl.constexpr, QLEN: tl.constexpr, MP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr,
    G: tl.constexpr, K_BITS: tl.constexpr, V_BITS: tl.constexpr, BLOCK_W: tl.constexpr,
    BLOCK_F: tl.constexpr, HAS_VALID: tl.constexpr, SINGLE: tl.constexpr, PREC: tl.constexpr,
    DOT_F32: tl.constexpr,
):
    pid_bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    dtype = q_ptr.dtype.element_ty
    M: tl.constexpr = GROUP * QLEN
    CPW_K: tl.constexpr = 32 // K_BITS
    BLOCK_N: tl.constexpr = BLOCK_W * CPW_K  # tokens a key tile (256 at 2 bits, 128 at 4, BLOCK_W 16)

    # -- query rows: row r = g * QLEN + i is query head h*GROUP + g, token i --
    offs_r = tl.arange(0, MP)
    r_ok = offs_r < M
    head = h * GROUP + offs_r // QLEN
    tok = offs_r % QLEN
    pos_r = L - QLEN + tok
    offs_d = tl.arange(0, DP)
    d_ok = offs_d < D
    qt = tl.load(q_ptr + b * s_qb + head[:, None] * s_qh + tok[:, None] * s_qi + offs_d[None, :],
                 mask=r_ok[:, None] & d_ok[None, :], other=0.0)

    kc_ptr += b * s_kcb + h * s_kch
    ks_ptr += b * s_ksb + h * s_ksh
    km_ptr += b * s_ksb + h * s_ksh
    kt_ptr += b * s_ktb + h * s_kth
    vc_ptr += b * s_vcb + h * s_vch
    vs_ptr += b * s_vsb + h * s_vsh
    vm_ptr += b * s_vsb + h * s_vsh
    vw_ptr += b * s_vwb + h * s_vwh
    valid_ptr += b * s_mb

    m_i = tl.full((MP,), float("-inf"), tl.float32)
    l_i = tl.zeros((MP,), tl.float32)
    acc = tl.zeros((MP, DP), tl.float32)
    offs_w = tl.arange(0, BLOCK_W)

    lo = split * chunk  # chunk is a multiple of BLOCK_N: tiles start on word rows
    hi = tl.minimum(lo + chunk, L)
    CAUSAL: tl.constexpr = QLEN > 1

    # -- phase 1: [lo, min(hi, n_kq)): keys packed, walked in code order (sub-tile j = tokens w*cpw + j).
    #    Three branch-free loops as in v1: V packed / the one tile straddling n_vq / V in the window.
    kq_end = tl.minimum(hi, n_kq)
    vq_floor = (n_vq // BLOCK_N) * BLOCK_N
    for start in range(lo, tl.minimum(kq_end, vq_floor), BLOCK_N):
        w0 = start // CPW_K
        words, ka, kb = _k_words(kc_ptr, ks_ptr, km_ptr, s_kcw, s_ksg, w0, kq_end, offs_w, offs_d, d_ok,
                                 K_BITS, G)
        for j in tl.static_range(CPW_K):
            offs_n = (w0 + offs_w) * CPW_K + j
            k = _k_code(words, ka, kb, j, K_BITS, dtype)
            v = _v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, s_vst, offs_n, offs_n < kq_end, D, V_BITS, G, DP, dtype)
            m_i, l_i, acc = _attend(qt, k, v, offs_n, kq_end, pos_r, valid_ptr, 1, m_i, l_i, acc, qk_scale,
                                    HAS_VALID, CAUSAL, PREC, DOT_F32, True)
    for start in range(tl.maximum(lo, vq_floor), tl.minimum(kq_end, n_vq), BLOCK_N):  # at most one tile
        w0 = start // CPW_K
        words, ka, kb = _k_words(kc_ptr, ks_ptr, km_ptr, s_kcw, s_ksg, w0, kq_end, offs_w, offs_d, d_ok,
                                 K_BITS, G)
        for j in range(CPW_K):
            offs_n = (w0 + offs_w) * CPW_K + j
            k = _k_code_dyn(words, ka, kb, j, K_BITS, dtype)
            v_q = _v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, s_vst, offs_n, offs_n < n_vq, D, V_BITS, G, DP, dtype)
            v_f = _load_fp(vw_ptr, s_vwt, 1, offs_n - n_vq, (offs_n >= n_vq) & (offs_n < kq_end),
                           offs_d, d_ok, dtype)
            v = tl.where((offs_n < n_vq)[:, None], v_q, v_f)
            m_i, l_i, acc = _attend(qt, k, v, offs_n, kq_end, pos_r, valid_ptr, 1, m_i, l_i, acc, qk_scale,
                                    HAS_VALID, CAUSAL, PREC, DOT_F32, True)
    for start in range(tl.maximum(lo, vq_floor + BLOCK_N * (vq_floor < n_vq)), kq_end, BLOCK_N):
        w0 = start // CPW_K
        words, ka, kb = _k_words(kc_ptr, ks_ptr, km_ptr, s_kcw, s_ksg, w0, kq_end, offs_w, offs_d, d_ok,
                                 K_BITS, G)
        for j in range(CPW_K):
            offs_n = (w0 + offs_w) * CPW_K + j
            k = _k_code_dyn(words, ka, kb, j, K_BITS, dtype)
            v = _load_fp(vw_ptr, s_vwt, 1, offs_n - n_vq, offs_n < kq_end, offs_d, d_ok, dtype)
            m_i, l_i, acc = _attend(qt, k, v, offs_n, kq_end, pos_r, valid_ptr, 1, m_i, l_i, acc, qk_scale,
                                    HAS_VALID, CAUSAL, PREC, DOT_F32, True)

    # -- phase 2: [max(lo, n_kq), hi): key tail and value window, natural order, BLOCK_F tokens a step --
    for start in range(tl.maximum(lo, n_kq), hi, BLOCK_F):
        offs_n = start + tl.arange(0, BLOCK_F)
        n_ok = offs_n < hi
        k = _load_fp(kt_ptr, s_ktt, 1, offs_n - n_kq, n_ok, offs_d, d_ok, dtype)
        v = _load_fp(vw_ptr, s_vwt, 1, offs_n - n_vq, n_ok, offs_d, d_ok, dtype)
        m_i, l_i, acc = _attend(qt, k, v, offs_n, hi, pos_r, valid_ptr, 1, m_i, l_i, acc, qk_scale,
                                HAS_VALID, CAUSAL, PREC, DOT_F32, True)

    if SINGLE:
        out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]  # no valid key: l = 0, acc = 0 -> zeros
        # out is [B, q, Hq, D] contiguous
        o_ptrs = out_ptr + ((b * QLEN + tok[:, None]) * (H * GROUP) + head[:, None]) * D + offs_d[None, :]
        tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=r_ok[:, None] & d_ok[None, :])
    else:
        # workspace (fp32, contiguous): acc [B*H, S, M, D], then m [B*H, S, M], then l [B*H, S, M]
        n_rows = tl.num_programs(0).to(tl.int64) * NUM_SPLITS * M
        row = (pid_bh * NUM_SPLITS + split) * M + offs_r
        tl.store(ws_ptr + row[:, None] * D + offs_d[None, :], acc, mask=r_ok[:, None] & d_ok[None, :])
        tl.store(ws_ptr + n_rows * D + row, m_i, mask=r_ok)
        tl.store(ws_ptr + n_rows * (D + 1) + row, l_i, mask=r_ok)


# ---------------------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------------------


def _default_block_w(head_dim: int) -> int:
    # 16 word rows (256 tokens at 2 bits, 128 at 4): the sub-tile is the N (and K) of a tl.dot, >= 16.
    return 16


def _block_f(head_dim: int) -> int:
    return 64 if head_dim <= 128 else 32


def num_splits_v2(batch_heads: int, length: int, block_n: int, device: torch.device) -> int:
    """Split count from Python ints only: ~4 waves of programs (v1's measured best), but at least 2 key
    tiles a split (tiles are 2-4x v1's), and one split for short contexts so one launch suffices."""
    n_blocks = triton.cdiv(length, block_n)
    if device.type == "cuda":
        n_sm = _num_sms(device.index if device.index is not None else torch.cuda.current_device())
    else:
        n_sm = 4
    want = triton.cdiv(4 * n_sm, batch_heads)
    return max(1, min(want, n_blocks // 2))


def unsupported_v2(query: torch.Tensor, state: KiviState) -> str | None:
    """Why v2 cannot run this layout (v1 then does), or None. Python ints only."""
    s = state
    G = s.group_size
    if G & (G - 1):
        return f"group_size={G} is not a power of two"
    for name in ("k_codes", "k_scale", "k_min", "k_tail", "v_codes", "v_scale", "v_min", "v_win"):
        t = getattr(s, name)
        if t.dim() == 4 and t.numel() > 0 and t.stride(3) != 1:
            return f"state.{name} is not contiguous along its last axis"
    if query.dim() == 4 and query.stride(3) != 1:
        return "query is not contiguous along head_dim"
    if s.k_min.numel() and s.k_scale.stride() != s.k_min.stride():
        return "k_scale and k_min have different strides"
    if s.v_min.numel() and s.v_scale.stride() != s.v_min.stride():
        return "v_scale and v_min have different strides"
    return None


def decode_attention_v2(
    query: torch.Tensor,
    state: KiviState,
    valid: torch.Tensor | None,
    scaling: float,
    *,
    num_splits: int | None = None,
    block_w: int | None = None,
    num_warps: int = 4,
) -> torch.Tensor:
    """v2 launcher; the caller (`decode_attention_triton`) has validated the arguments (`_check`)."""
    s = state
    B, Hq, q, D = query.shape
    H = s.k_tail.shape[1]
    L = s.n_kq + s.k_tail.shape[2]
    GROUP = Hq // H
    M = GROUP * q
    out = torch.empty((B, q, Hq, D), device=query.device, dtype=query.dtype)
    if L == 0 or B == 0:
        return out.zero_()
    BW = block_w or _default_block_w(D)
    if BW < 16 or BW & (BW - 1):
        raise ValueError(f"block_w={BW} must be a power of two >= 16 (the sub-tile is a tl.dot operand)")
    block_n = BW * (32 // s.k_bits)
    S = num_splits or num_splits_v2(B * H, L, block_n, query.device)
    chunk = triton.cdiv(triton.cdiv(L, S), block_n) * block_n
    S = triton.cdiv(L, chunk)
    single = S == 1
    ws = out if single else torch.empty(B * H * S * M * (D + 2), device=query.device, dtype=torch.float32)
    fb = query  # an empty segment is never read; Triton needs a live pointer
    kc = s.k_codes if s.k_codes.numel() else fb
    ks, km = (s.k_scale, s.k_min) if s.k_scale.numel() else (fb, fb)
    kt = s.k_tail if s.k_tail.numel() else fb
    vc = s.v_codes if s.v_codes.numel() else fb
    vs, vm = (s.v_scale, s.v_min) if s.v_scale.numel() else (fb, fb)
    vw = s.v_win if s.v_win.numel() else fb
    mask = valid.view(torch.uint8) if valid is not None else query
    s_mb = valid.stride(0) if valid is not None else 0
    if valid is not None and valid.stride(1) != 1:
        mask = valid.contiguous().view(torch.uint8)
        s_mb = L
    dot_f32 = query.dtype == torch.float32 or (query.dtype == torch.bfloat16 and _interpreting())
    sq, skc, sks, skt = query.stride(), kc.stride(), ks.stride(), kt.stride()
    svc, svs, svw = vc.stride(), vs.stride(), vw.stride()
    _decode_attn_v2_kernel[(B * H, S)](
        query, kc, ks, km, kt, vc, vs, vm, vw, mask, ws, out,
        H, L, s.n_kq, s.n_vq, chunk, scaling * _LOG2E,
        sq[0], sq[1], sq[2], skc[0], skc[1], skc[2], sks[0], sks[1], sks[2], skt[0], skt[1], skt[2],
        svc[0], svc[1], svc[2], svs[0], svs[1], svs[2], svw[0], svw[1], svw[2], s_mb,
        S,
        GROUP=GROUP, QLEN=q, MP=max(16, triton.next_power_of_2(M)), D=D, DP=triton.next_power_of_2(D),
        G=s.group_size, K_BITS=s.k_bits, V_BITS=s.v_bits, BLOCK_W=BW, BLOCK_F=_block_f(D),
        HAS_VALID=valid is not None, SINGLE=single, PREC="ieee" if dot_f32 else "tf32", DOT_F32=dot_f32,
        num_warps=num_warps,
    )
    if not single:
        n = B * H * S * M
        _decode_attn_reduce_kernel[(B * H, M)](
            ws, ws[n * D:], ws[n * (D + 1):], out, H, S, *out.stride(),
            GROUP=GROUP, QLEN=q, D=D, DP=triton.next_power_of_2(D), SP=triton.next_power_of_2(S), num_warps=1,
        )
    return out
