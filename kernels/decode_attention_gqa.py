"""KIVI decode attention for GQA with shared dequantization ("gqa"): work in progress, not picked by "auto".

v3 runs GQA a program a query head, so each of a kv head's QG query heads dequantizes its codes again;
measured on the H200 that leaves it at 0.70-0.89x fp16 SDPA (benchmarks/results/h200_round10.md). Here a
program takes a (batch, kv head, split) and all QG query heads: each code is turned into a float once and
multiplied into QG accumulators (benchmarks/results/decode_v4_plan.md, item 3).

Keys: two threads a key word row, each with half its codes (the word shifted so that they sit at the low
bits: per-register constant code indices, as in v3), QG x half accumulators a thread; the scale is folded
into the query per (head, channel, group) and the min into a per-(head, word row) base, as in v3's fp32
path. Values: two threads a word column, each with half its channels, over RS rows a step; p * scale per
(head, token) and p * min per (head, token, group) accumulated the same way. The fp16 window, the key
tail and any straddling tile run as v1's tiles with QG query rows (`_attend`). Partials go to v1's reduce
kernel (GROUP = QG).

fp32 arithmetic throughout (runs unchanged under TRITON_INTERPRET=1); the fp16x2 pair form of the key loop
is probed in benchmarks/gqa_pairs_probe.py. Contract and oracle: `decode_attention_ref`.
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
    _head_ptrs,
    _load_fp,
    _load_k_packed,
    _load_v_packed,
    _step_lens,
    _win_rows,
)
from .decode_attention_v3 import _code_unscale, _code_x, _split4, splits_v3

DEFAULT_BLOCK_W, DEFAULT_WARPS, DEFAULT_BLOCK_N = 64, 4, 16
# SASS (sm_90, triton 3.6, QG=4 k2v2 D=128, benchmarks/kernel_sass.py): 255 registers uncapped (2 programs
# an SM); at 128, 28 spill instructions, none in the key (314 a 4-channel step) or value (97 a row step)
# loops. Not yet timed.
MAXNREG = 128


@triton.jit
def _bulk_gqa(q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_ptr,
              s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, end, qk_scale, m_i, l_i, magic,
              QG: tl.constexpr, D: tl.constexpr, G: tl.constexpr, BITS: tl.constexpr, BW: tl.constexpr,
              HAS_VALID: tl.constexpr, NT: tl.constexpr):
    CPW: tl.constexpr = 32 // BITS
    HJ: tl.constexpr = CPW // 2  # a thread's codes of a word
    BT: tl.constexpr = BW * CPW  # tokens a tile
    E: tl.constexpr = 2 * BW  # key elements: word row e // 2, half e % 2
    DW: tl.constexpr = D // CPW
    RS: tl.constexpr = NT // (2 * DW)  # value rows a step
    e = tl.arange(0, E)
    sh = (e % 2) * (HJ * BITS)
    jj = tl.arange(0, HJ)
    offs_c = tl.arange(0, 4)
    g_i = tl.arange(0, QG)
    uk = _code_unscale(jj, BITS)
    tok_l = (e // 2)[None, :] * CPW + (e % 2)[None, :] * HJ + jj[:, None]  # [HJ, E]: the tile's token
    vt = tl.arange(0, NT)
    v_row = vt // (2 * DW)
    v_col = (vt % (2 * DW)) // 2
    v_sh = (vt % 2) * (HJ * BITS)
    v_grp = (v_col * CPW + (vt % 2) * HJ) // G
    acc = tl.zeros((QG, HJ, NT), tl.float32)
    cpm = tl.zeros((QG, NT), tl.float32)
    for start in range(lo, end, BT):
        rows_w = (start // CPW + e // 2).to(tl.int64)
        w_ok = rows_w * CPW < end
        gk = (rows_w * CPW) // G
        sacc = tl.zeros((QG, HJ, E), tl.float32)
        base = tl.zeros((QG, E), tl.float32)
        for dc in range(0, D, 4):
            kw = tl.load(kc_ptr + rows_w[:, None] * s_kcw + (dc + offs_c)[None, :], mask=w_ok[:, None], other=0)
            kw = kw >> sh[:, None]  # the half's codes at the low bits (sign bits above are masked off)
            sk = tl.load(ks_ptr + gk[:, None] * s_ksg + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0.0).to(tl.float32)
            mk = tl.load(km_ptr + gk[:, None] * s_kmg + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0.0).to(tl.float32)
            qc = tl.load(q_ptr + g_i[:, None] * s_qh + (dc + offs_c)[None, :]).to(tl.float32) * qk_scale
            w0, w1, w2, w3 = _split4(kw)
            s0, s1, s2, s3 = _split4(sk)
            m0, m1, m2, m3 = _split4(mk)
            q0, q1, q2, q3 = _split4(qc)
            base += (q0[:, None] * m0[None, :] + q1[:, None] * m1[None, :] + q2[:, None] * m2[None, :]
                     + q3[:, None] * m3[None, :])
            sacc += _code_x(w0[None, :], jj[:, None], magic, BITS)[None, :, :] * (q0[:, None] * s0[None, :])[:, None, :]
            sacc += _code_x(w1[None, :], jj[:, None], magic, BITS)[None, :, :] * (q1[:, None] * s1[None, :])[:, None, :]
            sacc += _code_x(w2[None, :], jj[:, None], magic, BITS)[None, :, :] * (q2[:, None] * s2[None, :])[:, None, :]
            sacc += _code_x(w3[None, :], jj[:, None], magic, BITS)[None, :, :] * (q3[:, None] * s3[None, :])[:, None, :]
        s = sacc * uk[None, :, None] + base[:, None, :]  # [QG, HJ, E], scaled
        tok = start + tok_l
        t_ok = tok < end
        if HAS_VALID:
            t_ok = t_ok & (tl.load(valid_ptr + tok * s_mt, mask=t_ok, other=0) != 0)
        s = tl.where(t_ok[None, :, :], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(tl.max(s, axis=1), axis=1))  # in-thread over the codes first
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[:, None, None])
        l_i = l_i * alpha + tl.sum(tl.sum(p, axis=1), axis=1)
        m_i = m_new
        acc = acc * alpha[:, None, None]
        cpm = cpm * alpha[:, None]
        tl.debug_barrier()  # the previous tile's p reads are done
        tl.store(p_ptr + tok_l[None, :, :] * QG + g_i[:, None, None], p)  # [token, head]
        tl.debug_barrier()
        n_t = tl.minimum(end - start, BT)
        for r0 in range(0, n_t, RS):
            r = r0 + v_row
            ok = r < n_t
            t = start + r
            w = tl.load(vc_ptr + t * s_vct + v_col, mask=ok, other=0) >> v_sh
            sv = tl.load(vs_ptr + t * s_vst + v_grp, mask=ok, other=0.0).to(tl.float32)
            mv = tl.load(vm_ptr + t * s_vmt + v_grp, mask=ok, other=0.0).to(tl.float32)
            pg = tl.load(p_ptr + r[None, :] * QG + g_i[:, None], mask=ok[None, :], other=0.0)  # [QG, NT]
            acc += _code_x(w[None, :], jj[:, None], magic, BITS)[None, :, :] * (pg * sv[None, :])[:, None, :]
            cpm += pg * mv[None, :]
    out = acc * uk[None, :, None] + cpm[:, None, :]  # [QG, HJ, NT]: channel v_col * CPW + half * HJ + jj
    out = tl.sum(tl.reshape(out, (QG, HJ, RS, 2 * DW)), axis=2)  # over the row slots
    return m_i, l_i, tl.reshape(tl.permute(out, (0, 2, 1)), (QG, D))


@triton.jit
def _decode_attn_gqa_kernel(
    q_ptr, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr, lens_ptr,
    acc_ptr, m_ptr, l_ptr, p_ptr,
    H, L, n_kq, n_vq, chunk, qk_scale, magic,
    s_qb, s_qh,
    s_kcb, s_kch, s_kcw, s_ksb, s_ksh, s_ksg, s_kmb, s_kmh, s_kmg, s_ktb, s_kth, s_ktt,
    s_vcb, s_vch, s_vct, s_vsb, s_vsh, s_vst, s_vmb, s_vmh, s_vmt, s_vwb, s_vwh, s_vwt,
    s_mb, s_mt,
    NUM_SPLITS, P_ROWS,
    QG: tl.constexpr, D: tl.constexpr, G: tl.constexpr, BITS: tl.constexpr, BW: tl.constexpr,
    BLOCK_N: tl.constexpr, HAS_VALID: tl.constexpr, NT: tl.constexpr,
    DEV_LENS: tl.constexpr, WIN: tl.constexpr,
):
    L, n_kq, n_vq = _step_lens(lens_ptr, L, n_kq, n_vq, DEV_LENS)
    pid_bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H  # kv head; its query heads are h * QG .. h * QG + QG - 1
    BT: tl.constexpr = BW * (32 // BITS)
    offs_d = tl.arange(0, D)
    d_ok = offs_d < D
    g_i = tl.arange(0, QG)
    q_head = q_ptr + b * s_qb + h * QG * s_qh
    q = tl.load(q_head + g_i[:, None] * s_qh + offs_d[None, :]).to(tl.float32)  # [QG, D]
    kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr = _head_ptrs(
        b, h, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
        s_kcb, s_kch, s_ksb, s_ksh, s_kmb, s_kmh, s_ktb, s_kth, s_vcb, s_vch, s_vsb, s_vsh, s_vmb, s_vmh,
        s_vwb, s_vwh, s_mb)
    packed_end = (n_vq // BLOCK_N) * BLOCK_N
    if split == NUM_SPLITS - 1:  # the last split holds [packed_end, L) alone; the others whole packed tiles
        lo = packed_end
        hi = L
        bulk_end = lo
    else:
        lo = tl.minimum(split * chunk, packed_end)
        hi = tl.minimum(lo + chunk, packed_end)
        bulk_end = hi
    m_i = tl.full((QG,), float("-inf"), tl.float32)
    l_i = tl.zeros((QG,), tl.float32)
    p_row = p_ptr + (pid_bh * P_ROWS + tl.minimum(split, P_ROWS - 1)) * (BT * QG)
    m_i, l_i, acc = _bulk_gqa(q_head, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_row,
                              s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, bulk_end, qk_scale, m_i, l_i,
                              magic, QG, D, G, BITS, BW, HAS_VALID, NT)
    # the rest of [lo, hi): v1's tiles with QG query rows (one straddling tile, the window, the key tail)
    pos_r = tl.zeros((QG,), tl.int32) + L - 1
    kq_end = tl.minimum(hi, n_kq)
    for start in range(bulk_end, kq_end, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        k = _load_k_packed(kc_ptr, ks_ptr, km_ptr, s_kcw, 1, s_ksg, 1, s_kmg, 1,
                           start, kq_end, offs_d, d_ok, BITS, G, BLOCK_N, D, tl.float32)
        v_q = _load_v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, 1, s_vst, 1, s_vmt, 1,
                             offs_n, offs_n < n_vq, D, BITS, G, BLOCK_N, D, tl.float32)
        v_f = _load_fp(vw_ptr, s_vwt, 1, _win_rows(offs_n, n_vq, WIN), (offs_n >= n_vq) & (offs_n < kq_end),
                       offs_d, d_ok, tl.float32)
        v = tl.where((offs_n < n_vq)[:, None], v_q, v_f)
        m_i, l_i, acc = _attend(q, k, v, offs_n, kq_end, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, False, "ieee", False, False)
    for start in range(tl.maximum(bulk_end, n_kq), hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        k = _load_fp(kt_ptr, s_ktt, 1, offs_n - n_kq, n_ok, offs_d, d_ok, tl.float32)
        v = _load_fp(vw_ptr, s_vwt, 1, _win_rows(offs_n, n_vq, WIN), n_ok, offs_d, d_ok, tl.float32)
        m_i, l_i, acc = _attend(q, k, v, offs_n, hi, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, False, "ieee", False, False)
    rows = (pid_bh * NUM_SPLITS + split) * QG + g_i  # v1's workspace rows (M = QG)
    tl.store(acc_ptr + rows[:, None] * D + offs_d[None, :], acc)
    tl.store(m_ptr + rows, m_i)
    tl.store(l_ptr + rows, l_i)


def unsupported_gqa(query: torch.Tensor, state: KiviState) -> str | None:
    """Why the shared-dequantization kernel cannot run this call (None when it can); after v1's `_check`."""
    B, Hq, q, D = query.shape
    H = state.k_tail.shape[1]
    QG = Hq // H
    if q != 1 or QG not in (2, 4):
        return f"it computes one query row for 2 or 4 query heads a kv head (here Hq={Hq}, H={H}, q_len={q})"
    if D not in (64, 128) or state.k_bits != state.v_bits:
        return f"head_dim 64 or 128 and equal key / value bits only (here {D}, k{state.k_bits}v{state.v_bits})"
    for name in ("k_codes", "k_scale", "k_min", "k_tail", "v_codes", "v_scale", "v_min", "v_win"):
        t = getattr(state, name)
        if t.numel() and t.stride(3) != 1:
            return f"state.{name} has innermost stride {t.stride(3)} (needs 1)"
    if query.stride(3) != 1:
        return f"query has innermost stride {query.stride(3)} (needs 1)"
    return None


def decode_attention_gqa(query: torch.Tensor, state: KiviState, valid: torch.Tensor | None, scaling: float, *,
                         num_splits: int | None = None, block_w: int | None = None, num_warps: int | None = None,
                         lens: torch.Tensor | None = None, win: int = 0, max_len: int = 0,
                         maxnreg: int | None = None) -> torch.Tensor:
    """Launch the shared-dequantization GQA kernel (the caller has run `_check` and `unsupported_gqa`)."""
    s = state
    B, Hq, _, D = query.shape
    H = s.k_tail.shape[1]
    QG = Hq // H
    L = max_len if lens is not None else s.length
    out = torch.empty((B, 1, Hq, D), device=query.device, dtype=query.dtype)
    if L == 0 or B == 0:
        return out.zero_()
    BW = block_w or DEFAULT_BLOCK_W
    nw = num_warps or DEFAULT_WARPS
    if BW < 1 or BW & (BW - 1):
        raise ValueError(f"block_w={BW} must be a power of two")
    NT = 32 * nw
    if NT % (2 * D // (32 // s.v_bits)):
        raise ValueError(f"num_warps={nw}: a step's {NT} threads must cover whole value rows")
    BT = BW * (32 // s.k_bits)
    S, chunk = splits_v3(B * H, L, BT, DEFAULT_BLOCK_N, num_splits)  # bulk splits + the window's (S >= 2)
    n = B * H * S * QG  # partial rows
    ws = torch.empty((n * (D + 2) + B * H * (S - 1) * BT * QG,), device=query.device, dtype=torch.float32)
    acc_ws, m_ws, l_ws, p_ws = ws[: n * D], ws[n * D: n * (D + 1)], ws[n * (D + 1): n * (D + 2)], ws[n * (D + 2):]
    mask = valid.view(torch.uint8) if valid is not None else None

    def ptr(t):  # an empty segment is never read: give Triton a live pointer
        return t if t.numel() > 0 else query

    def st(t):
        return t.stride()[:3] if t.numel() > 0 else (0, 0, 0)

    _decode_attn_gqa_kernel[(B * H, S)](
        query, ptr(s.k_codes), ptr(s.k_scale), ptr(s.k_min), ptr(s.k_tail),
        ptr(s.v_codes), ptr(s.v_scale), ptr(s.v_min), ptr(s.v_win), mask if mask is not None else query,
        lens if lens is not None else query,
        acc_ws, m_ws, l_ws, p_ws,
        H, L, s.n_kq, s.n_vq, chunk, scaling * _LOG2E, 0x4B000000,
        query.stride(0), query.stride(1),
        *st(s.k_codes), *st(s.k_scale), *st(s.k_min), *st(s.k_tail),
        *st(s.v_codes), *st(s.v_scale), *st(s.v_min), *st(s.v_win),
        *(mask.stride() if mask is not None else (0, 0)),
        S, S - 1,
        QG=QG, D=D, G=s.group_size, BITS=s.k_bits, BW=BW, BLOCK_N=DEFAULT_BLOCK_N, HAS_VALID=valid is not None,
        NT=NT, DEV_LENS=lens is not None, WIN=win, num_warps=nw,
        **({"maxnreg": maxnreg or MAXNREG} if query.device.type == "cuda" else {}),
    )
    _decode_attn_reduce_kernel[(B * H, QG)](
        acc_ws, m_ws, l_ws, out, H, S, out.stride(0), out.stride(1), out.stride(2), out.stride(3),
        GROUP=QG, QLEN=1, D=D, DP=D, SP=triton.next_power_of_2(S), num_warps=1,
    )
    return out
