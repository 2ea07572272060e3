"""KIVI decode attention, v3: one query row per kv head (MHA decode) on CUDA cores, scales folded.

Same contract and oracle as v1 (`decode_attention.py`, torch twin `decode_attention_ref`); reached
through `decode_attention_triton` ("auto" runs it on every MHA-decode call it supports, "v3" forces it).

Why (SASS compiled for sm_90 without a GPU, counted per loop by `benchmarks/kernel_sass.py`): v1 spends
~12 instructions per K/V element in its main loop, most of them moving the dequantized tile through
shared memory into tensor-core operand layout and converting fp32 -> fp16 for the MMA, and for one
query row the MMA does nothing useful (15 of its 16 rows are padding). v3 keeps only the arithmetic:

  * Scales are folded into the other operand instead of dequantizing codes:
      keys   s[t]   = sum_d (q_d * sk[g(t), d]) * c[t, d] + sum_d q_d * mk[g(t), d]
      values out[d] = sum_t (p_t * sv[t, g(d)]) * c[t, d] + sum_t p_t * mv[t, g(d)]
    so a code costs one FFMA; the scale products are per (group, channel) or per (token, group).
  * Code -> float without I2F: (word & mask_j) | bits(2^23) is 2^23 + c_j * 2^(b*j) exactly, so one
    LOP3 + one FADD (integer ops issue at half rate on sm_90, so this beats shift + mask); the
    positional 2^(b*j) is undone once per token / channel after the sums.
  * Keys are walked in tiles of 32 word rows (512 tokens at 2 bits) x 16 channels, as [cpw, rows, DC]
    with the code index j in registers; values as sub-tiles of the tokens {w*cpw + j} (one j at a
    time, rows at stride cpw), [cpw, rows, D/cpw] with the channel-in-word index in registers, summed
    over rows once at the end. No reshape of a big tile, no tl.dot, no shuffles in the inner loops.
Everything outside the bulk (the value window and key tail: <= R + 16 tokens) reuses v1's loaders on
the dot-free path in 16-token tiles. Measured numbers: `benchmarks/results/h200_v3.md`.
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
    _load_fp,
    _load_k_packed,
    _load_v_packed,
    _head_ptrs,
    _num_sms,
    _step_lens,
    _win_rows,
)


@triton.jit
def _code_x(words, j, BITS: tl.constexpr):
    # Code j of each word times 2^(b*(j mod H)), exactly, as fp32, for H = 20 // b codes (10 at b = 2):
    # (bits & (mask << b*j)) | bits(2^23) is 2^23 + c * 2^(b*j) as long as the code sits below bit 23,
    # so subtracting 2^23 is exact: 1 LOP3 + 1 FADD an element (integer ops issue at half rate on
    # sm_90, so this beats shift + mask). Codes at or above bit 20 come from the word shifted once
    # (j is a per-register constant after layout: the select and the shift fold / CSE away).
    H: tl.constexpr = 20 // BITS
    QMAX: tl.constexpr = (1 << BITS) - 1
    hi = j >= H
    src = tl.where(hi, words >> (H * BITS), words)
    jj = tl.where(hi, j - H, j)
    x = (src & (QMAX << (jj * BITS))) | 0x4B000000
    return x.to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def _code_unscale(j, BITS: tl.constexpr):
    # 2^-(b * (j mod H)): undoes _code_x's positional factor (applied after the sum over D or tokens)
    H: tl.constexpr = 20 // BITS
    jj = tl.where(j >= H, j - H, j)
    return tl.exp2(-(jj * BITS).to(tl.float32))


@triton.jit
def _bulk(q_ptr, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr,
          s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt,
          lo, end, qk_scale, m_i, l_i, acc3, cpm,
          D: tl.constexpr, DP: tl.constexpr, G: tl.constexpr, K_BITS: tl.constexpr, V_BITS: tl.constexpr,
          BW: tl.constexpr, DC: tl.constexpr, HAS_VALID: tl.constexpr):
    # Tiles of BW key word rows (BW * cpw tokens) from lo, masked at end (all of [lo, end) has K and V
    # packed; end is a multiple of 16). Keys are walked DC channels at a time into a [cpw, BW, DC]
    # accumulator (FFMA only); its sum over DC (a few lanes) happens once a tile.
    CPWK: tl.constexpr = 32 // K_BITS
    CPWV: tl.constexpr = 32 // V_BITS
    BT: tl.constexpr = BW * CPWK
    DWP: tl.constexpr = DP // CPWV
    jk = tl.arange(0, CPWK)
    jv = tl.arange(0, CPWV)
    offs_c = tl.arange(0, DC)
    offs_dw = tl.arange(0, DWP)
    dw_ok = offs_dw < D // CPWV
    gv = (offs_dw * CPWV) // G
    # Words are loaded once as 2D tiles and broadcast over the code index j ([1, rows, cols] -> [cpw, rows,
    # cols]): Triton then keeps j in registers. Loading the 3D tile directly (j in the pointer) had each
    # thread load its word once per j it owned: 4-8x the L1 traffic, 2.0 ms vs 1.28 ms at 8x32K (H200).
    for start in range(lo, end, BT):
        rows_w = (start // CPWK + tl.arange(0, BW)).to(tl.int64)
        w_ok = rows_w * CPWK < end
        gk = (rows_w * CPWK) // G
        sacc = tl.zeros((CPWK, BW, DC), tl.float32)  # summed over DC once a tile: FFMA chains, no trees
        base = tl.zeros((BW, DC), tl.float32)
        for dc in range(0, D, DC):
            qc = tl.load(q_ptr + 0 * rows_w[:, None] + (dc + offs_c)[None, :]).to(tl.float32)  # sk's layout
            kw = tl.load(kc_ptr + rows_w[:, None] * s_kcw + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0)[None, :, :]
            sk = tl.load(ks_ptr + gk[:, None] * s_ksg + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0.0).to(tl.float32)
            mk = tl.load(km_ptr + gk[:, None] * s_kmg + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0.0).to(tl.float32)
            qs = qc * sk  # [BW, DC]
            base += qc * mk
            x = _code_x(kw, jk[:, None, None], K_BITS)  # [CPWK, BW, DC]: token w*cpw + j
            sacc += x * qs[None, :, :]
        s = tl.sum(sacc, axis=2) * _code_unscale(jk, K_BITS)[:, None] + tl.sum(base, axis=1)[None, :]
        s = s * qk_scale  # [CPWK, BW]
        tok = rows_w[None, :] * CPWK + jk[:, None]
        t_ok = tok < end
        if HAS_VALID:
            t_ok = t_ok & (tl.load(valid_ptr + tok * s_mt, mask=t_ok, other=0) != 0)
        s = tl.where(t_ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(tl.max(s, axis=1), axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe)
        l_i = l_i * alpha + tl.sum(tl.sum(p, axis=1), axis=0)
        m_i = m_new
        acc3 = acc3 * alpha
        cpm = cpm * alpha
        for j in range(CPWK):
            pj = tl.sum(tl.where(jk[:, None] == j, p, 0.0), axis=0)  # [BW]: tokens w*cpw + j
            rows_t = rows_w * CPWK + j
            r_ok = (rows_t < end)[:, None] & dw_ok[None, :]  # masked rows: scale 0, so p * scale is 0
            vw = tl.load(vc_ptr + rows_t[:, None] * s_vct + offs_dw[None, :], mask=r_ok, other=0)[None, :, :]
            sv = tl.load(vs_ptr + rows_t[:, None] * s_vst + gv[None, :], mask=r_ok, other=0.0)
            mv = tl.load(vm_ptr + rows_t[:, None] * s_vmt + gv[None, :], mask=r_ok, other=0.0)
            ps = pj[:, None] * sv.to(tl.float32)  # [BW, DWP]
            xv = _code_x(vw, jv[:, None, None], V_BITS)  # [CPWV, BW, DWP]: channel dw*cpw + i
            acc3 += xv * ps[None, :, :]
            cpm += pj[:, None] * mv.to(tl.float32)
    return m_i, l_i, acc3, cpm


@triton.jit
def _decode_attn_v3_kernel(
    q_ptr, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr, lens_ptr,
    acc_ptr, m_ptr, l_ptr, out_ptr,
    H, L, n_kq, n_vq, chunk, qk_scale,
    s_qb, s_qh, s_qd,
    s_kcb, s_kch, s_kcw,
    s_ksb, s_ksh, s_ksg,
    s_kmb, s_kmh, s_kmg,
    s_ktb, s_kth, s_ktt,
    s_vcb, s_vch, s_vct,
    s_vsb, s_vsh, s_vst,
    s_vmb, s_vmh, s_vmt,
    s_vwb, s_vwh, s_vwt,
    s_mb, s_mt,
    s_ob, s_oh,
    NUM_SPLITS,
    D: tl.constexpr, DP: tl.constexpr, G: tl.constexpr, K_BITS: tl.constexpr, V_BITS: tl.constexpr,
    BW: tl.constexpr, DC: tl.constexpr, BLOCK_N: tl.constexpr, HAS_VALID: tl.constexpr, SINGLE: tl.constexpr,
    DEV_LENS: tl.constexpr, WIN: tl.constexpr,
):
    L, n_kq, n_vq = _step_lens(lens_ptr, L, n_kq, n_vq, DEV_LENS)
    # Innermost strides are 1 (the launcher checks), which lets Triton vectorize every load.
    pid_bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    CPWV: tl.constexpr = 32 // V_BITS
    DWP: tl.constexpr = DP // CPWV
    BT: tl.constexpr = BW * (32 // K_BITS)
    offs_d = tl.arange(0, DP)
    d_ok = offs_d < D
    q = tl.load(q_ptr + b * s_qb + h * s_qh + offs_d * s_qd, mask=d_ok, other=0.0).to(tl.float32)
    kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr = _head_ptrs(
        b, h, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
        s_kcb, s_kch, s_ksb, s_ksh, s_kmb, s_kmh, s_ktb, s_kth, s_vcb, s_vch, s_vsb, s_vsh, s_vmb, s_vmh,
        s_vwb, s_vwh, s_mb)
    lo = split * chunk  # chunk is a multiple of BT
    hi = tl.minimum(lo + chunk, L)

    # -- bulk: whole BT-token tiles with K and V packed --
    bulk_end = tl.maximum(lo, tl.minimum(hi, (n_vq // BLOCK_N) * BLOCK_N))
    m_b = tl.max(tl.full((1,), float("-inf"), tl.float32), axis=0)
    l_b = tl.sum(tl.zeros((1,), tl.float32), axis=0)
    acc3 = tl.zeros((CPWV, BW, DWP), tl.float32)  # per-row partial sums, reduced once at the end
    cpm = tl.zeros((BW, DWP), tl.float32)
    m_b, l_b, acc3, cpm = _bulk(q_ptr + b * s_qb + h * s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr,
                                     vm_ptr, valid_ptr, s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt,
                                     lo, bulk_end, qk_scale, m_b, l_b, acc3, cpm,
                                     D, DP, G, K_BITS, V_BITS, BW, DC, HAS_VALID)
    jv = tl.arange(0, CPWV)
    out_b = tl.sum(acc3, axis=1) * _code_unscale(jv, V_BITS)[:, None] + tl.sum(cpm, axis=0)[None, :]
    acc = tl.reshape(tl.trans(out_b), (1, DP))  # [i, dw] -> channel dw * cpw + i
    m_i = tl.zeros((1,), tl.float32) + m_b
    l_i = tl.zeros((1,), tl.float32) + l_b

    # -- the rest of [lo, hi): v1's tiles (dot-free), at most one straddling tile + window + tail --
    qt = q[None, :]
    pos_r = tl.zeros((1,), tl.int32) + L - 1
    start0 = bulk_end
    kq_end = tl.minimum(hi, n_kq)
    for start in range(start0, kq_end, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        k = _load_k_packed(kc_ptr, ks_ptr, km_ptr, s_kcw, 1, s_ksg, 1, s_kmg, 1,
                           start, kq_end, offs_d, d_ok, K_BITS, G, BLOCK_N, DP, tl.float32)
        v_q = _load_v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, 1, s_vst, 1, s_vmt, 1,
                             offs_n, offs_n < n_vq, D, V_BITS, G, BLOCK_N, DP, tl.float32)
        v_f = _load_fp(vw_ptr, s_vwt, 1, _win_rows(offs_n, n_vq, WIN), (offs_n >= n_vq) & (offs_n < kq_end),
                       offs_d, d_ok, tl.float32)
        v = tl.where((offs_n < n_vq)[:, None], v_q, v_f)
        m_i, l_i, acc = _attend(qt, k, v, offs_n, kq_end, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, False, "ieee", False, False)
    for start in range(tl.maximum(start0, n_kq), hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        k = _load_fp(kt_ptr, s_ktt, 1, offs_n - n_kq, n_ok, offs_d, d_ok, tl.float32)
        v = _load_fp(vw_ptr, s_vwt, 1, _win_rows(offs_n, n_vq, WIN), n_ok, offs_d, d_ok, tl.float32)
        m_i, l_i, acc = _attend(qt, k, v, offs_n, hi, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, False, "ieee", False, False)

    accv = tl.sum(acc, axis=0)  # [DP]
    m_s = tl.sum(m_i, axis=0)
    l_s = tl.sum(l_i, axis=0)
    if SINGLE:
        out = accv / tl.where(l_s > 0.0, l_s, 1.0)
        tl.store(out_ptr + b * s_ob + h * s_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=d_ok)
    else:
        row = pid_bh * NUM_SPLITS + split  # workspace rows of the v1 reduce kernel (M = 1)
        tl.store(acc_ptr + row * D + offs_d, accv, mask=d_ok)
        tl.store(m_ptr + row, m_s)
        tl.store(l_ptr + row, l_s)


def unsupported_v3(query: torch.Tensor, state: KiviState) -> str | None:
    """Why v3 cannot run this call (None when it can). Callers have run v1's `_check` already."""
    B, Hq, q, D = query.shape
    H = state.k_tail.shape[1]
    if Hq != H or q != 1:
        return f"v3 computes one query row a kv head (here Hq={Hq}, H={H}, q_len={q})"
    if D not in (64, 128):
        return f"v3 keeps a value row's {D} channels in registers: head_dim 64 or 128 only"
    for name in ("k_codes", "k_scale", "k_min", "k_tail", "v_codes", "v_scale", "v_min", "v_win"):
        t = getattr(state, name)
        if t.numel() and t.stride(3) != 1:
            return f"state.{name} has innermost stride {t.stride(3)} (v3 needs 1)"
    if query.stride(3) != 1:
        return f"query has innermost stride {query.stride(3)} (v3 needs 1)"
    return None


# At >= 1024 (batch x kv head) programs the kernel is capped at 128 registers a thread (4 CTAs an SM
# instead of 2; a few spills): H200 64x4096 1.29 vs 1.39 ms, 128x4096 2.51 vs 2.64 ms; at 8x32K
# (256 programs) the cap costs 8% (1.38 vs 1.28 ms), so it stays off there. Hand-written prefetch of
# the next step's loads was slower (1.33 vs 1.28 ms at 8x32K): benchmarks/results/h200_v3.md.
MAXNREG_FROM_PROGRAMS, MAXNREG = 1024, 128

# BW = 32 key word rows a tile (512 tokens at 2 bits), DC = 16 channels a step, 4 warps; window / tail
# tiles of 16 tokens (they share the kernel's registers: 64-token tiles there cost 36 more a thread).
# H200, Llama-2 shape k2v2 (benchmarks/results/h200_v3.md): 8x32K 1.28 ms (v1 1.62), 64x4096 1.40 ms
# (1.30 at 2 warps; v1 1.61), 1x32K 232 us (189 at 2 warps; v1 219); block_w 64 and DC 8 were slower.
DEFAULT_BLOCK_W, DEFAULT_DC, DEFAULT_WARPS = 32, 16, 4


def decode_attention_v3(query: torch.Tensor, state: KiviState, valid: torch.Tensor | None, scaling: float, *,
                        num_splits: int | None = None, block_w: int | None = None, num_warps: int | None = None,
                        lens: torch.Tensor | None = None, win: int = 0, max_len: int = 0,
                        maxnreg: int | None = None) -> torch.Tensor:
    """Launch v3 (caller: `decode_attention_triton`, which has checked the call and `unsupported_v3`)."""
    s = state
    B, Hq, _, D = query.shape
    H = Hq
    L = max_len if lens is not None else s.length  # device lengths: the grid covers the capacity
    out = torch.empty((B, 1, Hq, D), device=query.device, dtype=query.dtype)
    if L == 0 or B == 0:
        return out.zero_()
    BW = block_w or DEFAULT_BLOCK_W
    if BW < 1 or BW & (BW - 1):
        raise ValueError(f"block_w={BW} must be a power of two")
    BT = BW * (32 // s.k_bits)
    BLOCK_N = 16
    if maxnreg is None and B * H >= MAXNREG_FROM_PROGRAMS and query.device.type == "cuda":
        maxnreg = MAXNREG
    tile = max(BT, BLOCK_N)
    S = num_splits or num_splits_v3(B * H, L, tile, query.device)
    chunk = triton.cdiv(triton.cdiv(L, S), tile) * tile  # bulk tiles start at a split's start
    S = triton.cdiv(L, chunk)
    single = S == 1
    if single:
        acc_ws = m_ws = l_ws = out  # unused
    else:
        ws = torch.empty((B * H * S * (D + 2),), device=query.device, dtype=torch.float32)
        acc_ws, m_ws, l_ws = ws[: B * H * S * D], ws[B * H * S * D: B * H * S * (D + 1)], ws[B * H * S * (D + 1):]
    mask = valid.view(torch.uint8) if valid is not None else None

    def ptr(t):  # an empty segment is never read: give Triton a live pointer
        return t if t.numel() > 0 else query

    def st(t):
        return t.stride()[:3] if t.numel() > 0 else (0, 0, 0)

    _decode_attn_v3_kernel[(B * H, S)](
        query, ptr(s.k_codes), ptr(s.k_scale), ptr(s.k_min), ptr(s.k_tail),
        ptr(s.v_codes), ptr(s.v_scale), ptr(s.v_min), ptr(s.v_win), mask if mask is not None else query,
        lens if lens is not None else query,
        acc_ws, m_ws, l_ws, out,
        H, L, s.n_kq, s.n_vq, chunk, scaling * _LOG2E,
        query.stride(0), query.stride(1), query.stride(3),
        *st(s.k_codes), *st(s.k_scale), *st(s.k_min), *st(s.k_tail),
        *st(s.v_codes), *st(s.v_scale), *st(s.v_min), *st(s.v_win),
        *(mask.stride() if mask is not None else (0, 0)),
        out.stride(0), out.stride(2),
        S,
        D=D, DP=D, G=s.group_size, K_BITS=s.k_bits, V_BITS=s.v_bits, BW=BW, DC=min(DEFAULT_DC, D),
        BLOCK_N=BLOCK_N, HAS_VALID=valid is not None, SINGLE=single, DEV_LENS=lens is not None, WIN=win,
        num_warps=num_warps or DEFAULT_WARPS, **({"maxnreg": maxnreg} if maxnreg else {}),
    )
    if not single:
        _decode_attn_reduce_kernel[(B * H, 1)](
            acc_ws, m_ws, l_ws, out, H, S, out.stride(0), out.stride(1), out.stride(2), out.stride(3),
            GROUP=1, QLEN=1, D=D, DP=D, SP=triton.next_power_of_2(S), num_warps=1,
        )
    return out


def num_splits_v3(batch_heads: int, length: int, tile: int, device: torch.device) -> int:
    """Flash-decoding split count from Python ints: ~4 waves of programs, >= 2 tiles a split."""
    n_sm = _num_sms(device.index if device.index is not None else torch.cuda.current_device()) \
        if device.type == "cuda" else 4
    want = triton.cdiv(4 * n_sm, batch_heads)
    return max(1, min(want, triton.cdiv(length, 2 * tile)))
