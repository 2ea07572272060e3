"""Fused KIVI decode attention straight from packed storage (flash-decoding split + reduction).

Torch twin (the spec and oracle): `kivi_core.attention_ref.decode_attention_ref`, same signature.

What one decode step reads, per (batch, kv head), once: the packed key codes + key scales/mins of
[0, n_kq), the fp key tail [n_kq, L), the packed value codes + value scales/mins of [0, n_vq) and the fp
value window [n_vq, L); plus the query and the [B, L] padding mask. Nothing dequantized is written to
memory: codes are unpacked and dequantized in registers, tile by tile, and fed to one online softmax.

Layout of the work:
  * grid (B * H_kv, num_splits): one program owns one kv head and one contiguous chunk of positions, and
    computes all Hq / H_kv query heads x q_len query tokens of that kv head together (M rows of one
    tl.dot), so every packed byte is read once (GQA).
  * Each chunk is walked in BLOCK_N-token tiles: first the part inside [0, n_kq) (K packed; V packed,
    full precision, or the one tile that straddles n_vq, mixed), then the part in [n_kq, L) (both fp).
  * Each program leaves (acc, running max, running sum) per row in an fp32 workspace; a second kernel
    merges the splits (log-sum-exp). With one split the first kernel normalizes and writes the output.
    (Merging in the last split to finish, one launch a call, measured slower from CUDA graphs on the H200:
    its fence, ticket and serial merge sit on the critical path; benchmarks/results/h200_round18.md.) On sm_90+
    the merge is a programmatic dependent launch (kernels/pdl.py): it starts as the splits finish and waits for
    their stores, and the splits' launch waits likewise on whatever ran before (Llama-3.1-8B 1x512 10.2 -> 8.8 us
    from CUDA graphs, h200_round51.md).
The split count depends on Python ints only (B, H, L, the SM count), so a call never syncs the host.
"""

from __future__ import annotations

import functools
import os

import torch
import triton
import triton.language as tl

from kivi_core.state import KiviState

from .host_math import cdiv, next_power_of_2
from . import pdl as _pdl
from .pdl import launch_kw, pdl_launch, pdl_trigger, pdl_wait

_DTYPES = (torch.float16, torch.bfloat16, torch.float32)
_LOG2E = 1.4426950408889634
MAX_QUERY = 8  # ops.MAX_KERNEL_QUERY: speculative decoding's few tokens; longer chunks go through SDPA


# ---------------------------------------------------------------------------------------------------
# Tile loaders: each returns a [BLOCK_N, DP] tile in the compute dtype (exactly the reference's
# dequantized values: q * scale + min in fp32, rounded to the model dtype).
# ---------------------------------------------------------------------------------------------------


@triton.jit
def _codes_to_f32(c):
    # int code in [0, 16) -> fp32 without an I2F conversion (those run at 1/4 rate): the bits of
    # 2^23 + c, minus 2^23, is exactly c.
    return (c | 0x4B000000).to(tl.float32, bitcast=True) - 8388608.0


@triton.jit
def _load_k_packed(kc_ptr, ks_ptr, km_ptr, s_kcw, s_kcd, s_ksg, s_ksd, s_kmg, s_kmd,
                   start, seg_end, offs_d, d_ok,
                   BITS: tl.constexpr, G: tl.constexpr, BLOCK_N: tl.constexpr, DP: tl.constexpr,
                   dtype: tl.constexpr):
    # Keys are packed along tokens: word row w holds tokens w*CPW .. w*CPW+CPW-1 of every channel, so a
    # tile of BLOCK_N tokens is BW full rows of D words (coalesced) and one scale/min row per word row
    # (a word never straddles a group since CPW | 16 | G; the gather re-reads a row G/CPW times, in L1).
    CPW: tl.constexpr = 32 // BITS
    BW: tl.constexpr = BLOCK_N // CPW
    QMAX: tl.constexpr = (1 << BITS) - 1
    offs_w = start // CPW + tl.arange(0, BW)
    w_ok = (offs_w * CPW < seg_end)[:, None] & d_ok[None, :]
    words = tl.load(kc_ptr + offs_w[:, None] * s_kcw + offs_d[None, :] * s_kcd, mask=w_ok, other=0)
    grp = (offs_w * CPW) // G
    sc = tl.load(ks_ptr + grp[:, None] * s_ksg + offs_d[None, :] * s_ksd, mask=w_ok, other=0.0).to(tl.float32)
    mn = tl.load(km_ptr + grp[:, None] * s_kmg + offs_d[None, :] * s_kmd, mask=w_ok, other=0.0).to(tl.float32)
    shifts = tl.arange(0, CPW) * BITS
    c = (words[:, None, :] >> shifts[None, :, None]) & QMAX  # [BW, CPW, DP]: token w*CPW + j
    k = _codes_to_f32(c) * sc[:, None, :] + mn[:, None, :]
    return tl.reshape(k, (BLOCK_N, DP)).to(dtype)


@triton.jit
def _load_v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, s_vcw, s_vst, s_vsg, s_vmt, s_vmg,
                   offs_n, n_ok, D: tl.constexpr,
                   BITS: tl.constexpr, G: tl.constexpr, BLOCK_N: tl.constexpr, DP: tl.constexpr,
                   dtype: tl.constexpr):
    # Values are packed along channels: a token is one row of D/CPW words (+ D/G scales and mins).
    CPW: tl.constexpr = 32 // BITS
    DW: tl.constexpr = DP // CPW
    QMAX: tl.constexpr = (1 << BITS) - 1
    offs_w = tl.arange(0, DW)
    m = n_ok[:, None] & (offs_w < D // CPW)[None, :]
    rows = offs_n.to(tl.int64)
    words = tl.load(vc_ptr + rows[:, None] * s_vct + offs_w[None, :] * s_vcw, mask=m, other=0)
    grp = (offs_w * CPW) // G
    sc = tl.load(vs_ptr + rows[:, None] * s_vst + grp[None, :] * s_vsg, mask=m, other=0.0).to(tl.float32)
    mn = tl.load(vm_ptr + rows[:, None] * s_vmt + grp[None, :] * s_vmg, mask=m, other=0.0).to(tl.float32)
    shifts = tl.arange(0, CPW) * BITS
    c = (words[:, :, None] >> shifts[None, None, :]) & QMAX  # [BLOCK_N, DW, CPW]: channel w*CPW + j
    v = _codes_to_f32(c) * sc[:, :, None] + mn[:, :, None]
    return tl.reshape(v, (BLOCK_N, DP)).to(dtype)


@triton.jit
def _load_fp(ptr, s_t, s_d, rows, r_ok, offs_d, d_ok, dtype: tl.constexpr):
    m = r_ok[:, None] & d_ok[None, :]
    return tl.load(ptr + rows.to(tl.int64)[:, None] * s_t + offs_d[None, :] * s_d, mask=m, other=0.0).to(dtype)


@triton.jit
def _step_lens(lens_ptr, L, n_kq, n_vq, DEV_LENS: tl.constexpr):
    # (L, n_kq, n_vq) of this call: the arguments, or with DEV_LENS the device tensor [L, n_kq, n_vq] as
    # it was before the step's token (appended already, so attention covers L + 1): CUDA-graph replays.
    if DEV_LENS:
        return tl.load(lens_ptr) + 1, tl.load(lens_ptr + 1), tl.load(lens_ptr + 2)
    else:
        return L, n_kq, n_vq


@triton.jit
def _head_ptrs(b, h, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
               s_kcb, s_kch, s_ksb, s_ksh, s_kmb, s_kmh, s_ktb, s_kth,
               s_vcb, s_vch, s_vsb, s_vsh, s_vmb, s_vmh, s_vwb, s_vwh, s_mb):
    # every storage pointer moved to (batch b, kv head h); the mask to row b
    return (kc_ptr + b * s_kcb + h * s_kch, ks_ptr + b * s_ksb + h * s_ksh, km_ptr + b * s_kmb + h * s_kmh,
            kt_ptr + b * s_ktb + h * s_kth, vc_ptr + b * s_vcb + h * s_vch, vs_ptr + b * s_vsb + h * s_vsh,
            vm_ptr + b * s_vmb + h * s_vmh, vw_ptr + b * s_vwb + h * s_vwh, valid_ptr + b * s_mb)


@triton.jit
def _win_rows(offs_n, n_vq, WIN: tl.constexpr):
    # Row of the value window holding position offs_n: a plain window starts at n_vq; a ring of WIN
    # slots (the lean engine's static cache, kivi_core.static) holds position t at slot t % WIN.
    if WIN == 0:
        return offs_n - n_vq
    else:
        return offs_n % WIN


@triton.jit
def _attend(qt, k, v, offs_n, seg_end, pos_r, valid_ptr, s_vt, m_i, l_i, acc, qk_scale,
            HAS_VALID: tl.constexpr, CAUSAL: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
            USE_DOT: tl.constexpr):
    # One online-softmax step over a [BLOCK_N] tile (base-2 exponentials, scale folded into qk_scale).
    if DOT_F32:  # CPU interpreter only: its bf16 tl.dot is wrong, so multiply the bf16 values in fp32
        qt = qt.to(tl.float32)
        k = k.to(tl.float32)
        v = v.to(tl.float32)
    if USE_DOT:
        s = tl.dot(qt, tl.trans(k), input_precision=PREC) * qk_scale  # [MP, BLOCK_N] fp32
    else:  # one query row (MHA, q_len 1): CUDA-core products, no operand shuffles for the tensor cores
        s = tl.sum(qt.to(tl.float32)[:, None, :] * k.to(tl.float32)[None, :, :], axis=2) * qk_scale
    ok = offs_n < seg_end
    if HAS_VALID:
        ok = ok & (tl.load(valid_ptr + offs_n * s_vt, mask=ok, other=0) != 0)
    allowed = ok[None, :]
    if CAUSAL:
        allowed = allowed & (offs_n[None, :] <= pos_r[:, None])
    s = tl.where(allowed, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)  # fully masked so far: keep p = 0, no NaN
    alpha = tl.exp2(m_i - m_safe)
    p = tl.exp2(s - m_safe[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    if USE_DOT:
        acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PREC)
    else:
        acc = acc * alpha[:, None] + tl.sum(p[:, :, None] * v.to(tl.float32)[None, :, :], axis=1)
    return m_new, l_i, acc


@triton.jit
def _decode_attn_split_kernel(
    q_ptr, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr, lens_ptr,
    acc_ptr, m_ptr, l_ptr, out_ptr,
    H, L, n_kq, n_vq, chunk, qk_scale,
    s_qb, s_qh, s_qi, s_qd,
    s_kcb, s_kch, s_kcw, s_kcd,
    s_ksb, s_ksh, s_ksg, s_ksd,
    s_kmb, s_kmh, s_kmg, s_kmd,
    s_ktb, s_kth, s_ktt, s_ktd,
    s_vcb, s_vch, s_vct, s_vcw,
    s_vsb, s_vsh, s_vst, s_vsg,
    s_vmb, s_vmh, s_vmt, s_vmg,
    s_vwb, s_vwh, s_vwt, s_vwd,
    s_mb, s_mt,
    s_ob, s_oi, s_oh, s_od,
    NUM_SPLITS,
    GROUP: tl.constexpr, QLEN: tl.constexpr, MP: tl.constexpr, D: tl.constexpr, DP: tl.constexpr,
    G: tl.constexpr, K_BITS: tl.constexpr, V_BITS: tl.constexpr, BLOCK_N: tl.constexpr,
    HAS_VALID: tl.constexpr, SINGLE: tl.constexpr, PREC: tl.constexpr, DOT_F32: tl.constexpr,
    USE_DOT: tl.constexpr, DEV_LENS: tl.constexpr, WIN: tl.constexpr, PDL: tl.constexpr, PDL_WAIT: tl.constexpr,
):
    # launched as a dependent of what ran before (kernels/pdl.py): wait before the first load, and before letting the
    # merge's launch start, so no later launch of the call runs ahead of what ran before
    pdl_wait(PDL_WAIT)
    pdl_trigger(PDL)
    L, n_kq, n_vq = _step_lens(lens_ptr, L, n_kq, n_vq, DEV_LENS)
    pid_bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H
    dtype = q_ptr.dtype.element_ty
    M: tl.constexpr = GROUP * QLEN

    # -- this program's query rows: row r = g * QLEN + i is query head h*GROUP + g, token i --
    offs_r = tl.arange(0, MP)
    r_ok = offs_r < M
    head = h * GROUP + offs_r // QLEN
    tok = offs_r % QLEN
    pos_r = L - QLEN + tok  # causal: query i sits at position L - q + i
    offs_d = tl.arange(0, DP)
    d_ok = offs_d < D
    qt = tl.load(q_ptr + b * s_qb + head[:, None] * s_qh + tok[:, None] * s_qi + offs_d[None, :] * s_qd,
                 mask=r_ok[:, None] & d_ok[None, :], other=0.0)

    kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr = _head_ptrs(
        b, h, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
        s_kcb, s_kch, s_ksb, s_ksh, s_kmb, s_kmh, s_ktb, s_kth, s_vcb, s_vch, s_vsb, s_vsh, s_vmb, s_vmh,
        s_vwb, s_vwh, s_mb)

    m_i = tl.full((MP,), float("-inf"), tl.float32)
    l_i = tl.zeros((MP,), tl.float32)
    acc = tl.zeros((MP, DP), tl.float32)

    lo = split * chunk  # chunk is a multiple of BLOCK_N, so packed-key tiles start on word rows
    hi = tl.minimum(lo + chunk, L)
    CAUSAL: tl.constexpr = QLEN > 1

    # -- phase 1: [lo, min(hi, n_kq)): keys packed. Three branch-free loops (so Triton can pipeline the
    #    loads): tiles with V packed, the one tile that straddles n_vq (mixed), tiles with V in the window.
    kq_end = tl.minimum(hi, n_kq)
    vq_floor = (n_vq // BLOCK_N) * BLOCK_N  # tile starts are multiples of BLOCK_N (lo is)
    for start in range(lo, tl.minimum(kq_end, vq_floor), BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        k = _load_k_packed(kc_ptr, ks_ptr, km_ptr, s_kcw, s_kcd, s_ksg, s_ksd, s_kmg, s_kmd,
                           start, kq_end, offs_d, d_ok, K_BITS, G, BLOCK_N, DP, dtype)
        v = _load_v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, s_vcw, s_vst, s_vsg, s_vmt, s_vmg,
                           offs_n, offs_n < kq_end, D, V_BITS, G, BLOCK_N, DP, dtype)
        m_i, l_i, acc = _attend(qt, k, v, offs_n, kq_end, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, CAUSAL, PREC, DOT_F32, USE_DOT)
    for start in range(tl.maximum(lo, vq_floor), tl.minimum(kq_end, n_vq), BLOCK_N):  # at most one tile
        offs_n = start + tl.arange(0, BLOCK_N)
        k = _load_k_packed(kc_ptr, ks_ptr, km_ptr, s_kcw, s_kcd, s_ksg, s_ksd, s_kmg, s_kmd,
                           start, kq_end, offs_d, d_ok, K_BITS, G, BLOCK_N, DP, dtype)
        v_q = _load_v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, s_vcw, s_vst, s_vsg, s_vmt, s_vmg,
                             offs_n, offs_n < n_vq, D, V_BITS, G, BLOCK_N, DP, dtype)
        v_f = _load_fp(vw_ptr, s_vwt, s_vwd, _win_rows(offs_n, n_vq, WIN), (offs_n >= n_vq) & (offs_n < kq_end),
                       offs_d, d_ok, dtype)
        v = tl.where((offs_n < n_vq)[:, None], v_q, v_f)
        m_i, l_i, acc = _attend(qt, k, v, offs_n, kq_end, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, CAUSAL, PREC, DOT_F32, USE_DOT)
    for start in range(tl.maximum(lo, vq_floor + BLOCK_N * (vq_floor < n_vq)), kq_end, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        k = _load_k_packed(kc_ptr, ks_ptr, km_ptr, s_kcw, s_kcd, s_ksg, s_ksd, s_kmg, s_kmd,
                           start, kq_end, offs_d, d_ok, K_BITS, G, BLOCK_N, DP, dtype)
        v = _load_fp(vw_ptr, s_vwt, s_vwd, _win_rows(offs_n, n_vq, WIN), offs_n < kq_end, offs_d, d_ok, dtype)
        m_i, l_i, acc = _attend(qt, k, v, offs_n, kq_end, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, CAUSAL, PREC, DOT_F32, USE_DOT)

    # -- phase 2: [max(lo, n_kq), hi): both full precision (key tail, value window) --
    for start in range(tl.maximum(lo, n_kq), hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        k = _load_fp(kt_ptr, s_ktt, s_ktd, offs_n - n_kq, n_ok, offs_d, d_ok, dtype)
        v = _load_fp(vw_ptr, s_vwt, s_vwd, _win_rows(offs_n, n_vq, WIN), n_ok, offs_d, d_ok, dtype)
        m_i, l_i, acc = _attend(qt, k, v, offs_n, hi, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, CAUSAL, PREC, DOT_F32, USE_DOT)

    if SINGLE:
        out = acc / tl.where(l_i > 0.0, l_i, 1.0)[:, None]  # no valid key: l = 0, acc = 0 -> zeros
        o_ptrs = out_ptr + b * s_ob + tok[:, None] * s_oi + head[:, None] * s_oh + offs_d[None, :] * s_od
        tl.store(o_ptrs, out.to(out_ptr.dtype.element_ty), mask=r_ok[:, None] & d_ok[None, :])
    else:
        # workspace: acc [B*H, S, M, D], m and l [B*H, S, M], all fp32 contiguous
        row = (pid_bh * NUM_SPLITS + split) * M + offs_r
        tl.store(acc_ptr + row[:, None] * D + offs_d[None, :], acc, mask=r_ok[:, None] & d_ok[None, :])
        tl.store(m_ptr + row, m_i, mask=r_ok)
        tl.store(l_ptr + row, l_i, mask=r_ok)


@triton.jit
def _merge_row(acc_ptr, m_ptr, l_ptr, base, NUM_SPLITS, M: tl.constexpr, D: tl.constexpr, DP: tl.constexpr,
               SC: tl.constexpr):
    # One query row's splits (split s at workspace row base + s * M) merged by log-sum-exp (base 2) and
    # normalized, [DP] fp32. SC splits a step are loaded at once: a load a split in a loop is a chain of L2
    # round trips.
    offs_c = tl.arange(0, SC)
    offs_d = tl.arange(0, DP)
    d_ok = offs_d < D
    m_run = tl.max(tl.full((SC,), float("-inf"), tl.float32), axis=0)
    l_run = tl.sum(tl.zeros((SC,), tl.float32), axis=0)
    acc = tl.zeros((DP,), tl.float32)
    for s0 in range(0, NUM_SPLITS, SC):
        rows = base + (s0 + offs_c) * M
        ok = s0 + offs_c < NUM_SPLITS
        m = tl.load(m_ptr + rows, mask=ok, other=float("-inf"))
        l = tl.load(l_ptr + rows, mask=ok, other=0.0)
        a = tl.load(acc_ptr + rows[:, None] * D + offs_d[None, :], mask=ok[:, None] & d_ok[None, :], other=0.0)
        m_new = tl.maximum(m_run, tl.max(m, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        w = tl.exp2(m - m_safe)  # splits with no valid key weigh 0
        f = tl.exp2(m_run - m_safe)
        l_run = l_run * f + tl.sum(w * l, axis=0)
        acc = acc * f + tl.sum(w[:, None] * a, axis=0)
        m_run = m_new
    return acc / tl.where(l_run > 0.0, l_run, 1.0)  # no valid key: l = 0, acc = 0 -> zeros


@triton.jit
def _decode_attn_reduce_kernel(
    acc_ptr, m_ptr, l_ptr, out_ptr,
    H, NUM_SPLITS,
    s_ob, s_oi, s_oh, s_od,
    GROUP: tl.constexpr, QLEN: tl.constexpr, D: tl.constexpr, DP: tl.constexpr, SC: tl.constexpr,
    PDL: tl.constexpr,
):
    # One program per (batch, kv head, row): merge the splits' partial softmaxes. Launched with PDL (kernels/pdl.py)
    # its programs start while the splits finish and wait here for their stores
    pdl_wait(PDL)
    pid_bh = tl.program_id(0).to(tl.int64)
    r = tl.program_id(1)
    M: tl.constexpr = GROUP * QLEN
    b = pid_bh // H
    h = pid_bh % H
    out = _merge_row(acc_ptr, m_ptr, l_ptr, pid_bh * NUM_SPLITS * M + r, NUM_SPLITS, M, D, DP, SC)
    offs_d = tl.arange(0, DP)
    head = h * GROUP + r // QLEN
    tok = r % QLEN
    tl.store(out_ptr + b * s_ob + tok * s_oi + head * s_oh + offs_d * s_od, out.to(out_ptr.dtype.element_ty),
             mask=offs_d < D)


# ---------------------------------------------------------------------------------------------------
# Launcher
# ---------------------------------------------------------------------------------------------------


# Triton picks the interpreter when it decorates a kernel (triton.jit reads TRITON_INTERPRET then), so the launchers
# ask what was true at import; an environment lookup a launch cost ~6 us of a decode call's host path (this CPU)
_INTERPRET = os.environ.get("TRITON_INTERPRET", "0") == "1"


def _interpreting() -> bool:
    return _INTERPRET


@functools.lru_cache(maxsize=None)
def _num_sms(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def _default_block_n(head_dim: int) -> int:
    # 64 tokens a tile at D <= 128 (a 64x128 fp32 dequant tile is 64 registers a thread at 4 warps);
    # 32 at D = 256 to keep the same register footprint.
    return 64 if head_dim <= 128 else 32


# Short calls (at most this many tiles of block_n tokens in all): v1 with one tile a program, which "auto"
# picks for one-token decode (`short_call`). Where the call is one serial chain, the most parallel split wins:
# H200, Llama-2 shape, GPU time from CUDA graphs (benchmarks/results/h200_round11d/variants_short.log), us at
# 1x512 (256 tiles of 64): one tile a program 11.6 (tiles of 16: 15.2, of 32: 14.3; dot-free, tiles of 16:
# 12.0), v1's wave rule (2 splits) 17.4, one program a head 23.7, v3 20.1, fp16 SDPA 9.1; at 1x4096 (2048
# tiles) one tile a program 34.8, v3 33.2, SDPA 27.9.
SHORT_TILES = 512
# ... and the wave a short call's programs fill: SHORT_PROGRAMS_SM an SM (4 warps, 168 registers), for its tile rule
# (`_short_block_n`)
SHORT_PROGRAMS_SM = 3
# software-pipelining stages of v1's tile loops: None lets `_v1_stages` decide, a number forces it (benchmarks)
V1_STAGES = None
# splits a merge step loads at once (a [MERGE_SPLITS, D] fp32 tile: 64 registers a thread in the one-warp
# reduce kernel at D = 128)
MERGE_SPLITS = 16


# ... but where the GQA kernel's tensor-core bulk runs (k2v2 fp16, head_dim 128, G = 32, 4 or 8 query heads a kv
# head), it is the faster kernel above this many tiles: H200, Llama-3.1-8B, GPU time from CUDA graphs
# (h200_round31), us, "auto" (v1 short tiles, then v3) / the bulk at its best split: 1x2048 (256 tiles) 12.2 /
# 14.6, 1x4096 (512) 21.2 / 16.4, 1x8192 (1024) 33.1 / 20.3 (fp16 SDPA 10.0 / 13.4 / 18.8; 70B alike)
SHORT_TILES_GQA_MMA = 256


def _gqa_mma_runs(query: torch.Tensor, state: KiviState) -> bool:
    from .decode_attention_gqa import default_gqa_mma, unsupported_gqa

    return unsupported_gqa(query, state) is None and default_gqa_mma(query, state, 1.0)


def short_call(batch_heads: int, length: int, block_n: int) -> bool:
    return batch_heads * cdiv(length, block_n) <= SHORT_TILES


def _short_block_n(batch_heads: int, length: int, head_dim: int, device: torch.device) -> int:
    """v1's tile: `_default_block_n`, but on a short call half that where its one-tile programs then fit one wave of
    SHORT_PROGRAMS_SM an SM. H200, GPU time from CUDA graphs, us, one stage (`_v1_stages`), tiles of 64 / 32
    (h200_round59-60): Llama-3.1-8B (8 kv heads) 1x512 - / 6.6 (fp16 SDPA 8.2), 1x1024 - / 7.9 (7.5), 1x2048 9.2-9.3 /
    - (9.0-9.2); Llama-2 (32 heads) 1x512 8.2 / - (9.1-9.2), 1x1024 13.1 / 17.2 (11.6: 1.3 waves at 64, 2.6 at 32),
    2x512 12.5 / 17.3 (10.3). At 3 stages (h200_round52-56) the halved tile also won where it fit one wave (8B 1x512 8.7-9.1
    / 6.7-7.2), and at 2.6 waves (Llama-2 1x1024 17.3 / 14.9): measured slower then, at 64: half tiles only in the
    value window's region (Llama-2 1x512 10.9 against 10.3), 2 warps (9.9-10.3), tiles of 16 (8B 1x512 7.5)."""
    block_n = _default_block_n(head_dim)
    if device.type != "cuda" or block_n < 64 or not short_call(batch_heads, length, block_n):
        return block_n  # (head_dim 256's tiles of 32 are not measured halved)
    n_sm = _num_sms(device.index if device.index is not None else torch.cuda.current_device())
    return block_n // 2 if batch_heads * cdiv(length, block_n // 2) <= SHORT_PROGRAMS_SM * n_sm else block_n


def _v1_stages(splits: int, length: int, block_n: int, device: torch.device) -> int | None:
    """Software-pipelining stages for v1's launch (None: Triton's default, 3 on sm_90). One-tile programs (short calls)
    take 1: at 3 their loads went through shared memory by cp.async (60 a program) for a loop of one iteration. H200,
    GPU time from CUDA graphs, us, stages 3 / 1 / 2 (h200_round59-60): Llama-2 1x512 10.3-10.4 / 8.2-8.3 / 9.2 (fp16
    SDPA 9.1-9.2), 1x1024 (tiles of 64) - / 13.1 (11.6; 15.1-15.2 at 3 stages and tiles of 32, the rule then); Llama-3.1-8B
    1x512 6.9-7.0 / 6.6 / 6.4 (8.2), 1x1024 8.8 / 7.9 / 8.1 (7.5), 1x2048 10.9-11.1 / 9.2-9.3 / 10.4 (9.0-9.2); 70B
    1x512 7.2 / 6.9 (8.2), 1x1024 9.1 / 8.4 (7.7). Tiles of 32 over 2.6 waves ran slower at 1 (Llama-2 1x1024 17.2
    against 15.1), a case `_short_block_n` does not make."""
    if device.type != "cuda" or V1_STAGES:
        return V1_STAGES
    return 1 if splits == cdiv(length, block_n) else None


def _num_splits(batch_heads: int, length: int, block_n: int, device: torch.device) -> int:
    """Flash-decoding split count from Python ints only: enough programs for ~4 waves of the GPU, but
    at least MIN_BLOCKS tiles per split so that the merge stays negligible. (H200, Llama-3.1 shape, k2v2:
    8x32K 494 us with 4 waves vs 643 us with 2; 1x32K 84 vs 88 us.) Short calls: one tile a split."""
    n_blocks = cdiv(length, block_n)
    if short_call(batch_heads, length, block_n):
        return n_blocks
    n_sm = _num_sms(device.index if device.index is not None else torch.cuda.current_device()) \
        if device.type == "cuda" else 4
    min_blocks = 4
    want = cdiv(4 * n_sm, batch_heads)
    return max(1, min(want, cdiv(n_blocks, min_blocks)))


def _check(query: torch.Tensor, state: KiviState, valid: torch.Tensor | None) -> None:
    if query.dim() != 4:
        raise ValueError(f"query must be [B, Hq, q, D]; got shape {tuple(query.shape)}")
    B, Hq, q, D = query.shape
    if query.dtype not in _DTYPES:
        raise ValueError(f"query.dtype={query.dtype} is not supported: use one of {_DTYPES}")
    s = state
    for name in ("k_bits", "v_bits"):
        if getattr(s, name) not in (2, 4):
            raise ValueError(f"{name}={getattr(s, name)!r} is not supported: use 2 or 4")
    G = s.group_size
    if G <= 0 or G % 16 or D % G:
        raise ValueError(f"group_size={G} must be a positive multiple of 16 dividing head_dim={D}")
    if not 1 <= q <= MAX_QUERY:
        raise ValueError(f"q_len={q} is not supported by the fused kernel: use 1..{MAX_QUERY} (longer: SDPA path)")
    H = s.k_tail.shape[1]
    if Hq % H:
        raise ValueError(f"query heads Hq={Hq} must be a multiple of kv heads H={H}")
    if s.n_kq % 16 or s.n_kq % G or not 0 <= s.n_vq <= s.n_kq:
        raise ValueError(f"n_kq={s.n_kq} must be a multiple of group_size={G} and >= n_vq={s.n_vq} >= 0")
    L = s.length
    n_kt, n_vw = s.k_tail.shape[2], s.v_win.shape[2]
    if s.n_vq + n_vw != L:
        raise ValueError(f"n_vq={s.n_vq} + value window {n_vw} != length {L}")
    cpw_k, cpw_v = 32 // s.k_bits, 32 // s.v_bits
    qdt, i32 = query.dtype, torch.int32
    # (name, tensor, token rows it must hold (None: its capacity, at least `need`), need, last dim, dtype). Plain
    # tuples and comparisons: this runs on every decode call's host path (a dict of shapes and zip() cost ~2x)
    qdev = query.get_device()
    for name, t, rows, need, last, dtype in (
            ("k_codes", s.k_codes, None, s.n_kq // cpw_k, D, i32), ("k_scale", s.k_scale, None, s.n_kq // G, D, qdt),
            ("k_min", s.k_min, None, s.n_kq // G, D, qdt), ("k_tail", s.k_tail, n_kt, n_kt, D, qdt),
            ("v_codes", s.v_codes, None, s.n_vq, D // cpw_v, i32), ("v_scale", s.v_scale, None, s.n_vq, D // G, qdt),
            ("v_min", s.v_min, None, s.n_vq, D // G, qdt), ("v_win", s.v_win, n_vw, n_vw, D, qdt)):
        sh = t.shape
        if len(sh) != 4 or sh[0] != B or sh[1] != H or sh[3] != last or (rows is not None and sh[2] != rows):
            raise ValueError(f"state.{name} has shape {tuple(sh)}; expected {(B, H, rows, last)} (None = capacity)")
        if sh[2] < need:
            raise ValueError(f"state.{name} holds {sh[2]} rows along the token axis; need {need}")
        if t.dtype != dtype:
            raise ValueError(f"state.{name}.dtype={t.dtype}; expected {dtype}")
        if t.get_device() != qdev:  # an int: cheaper than comparing torch.device objects, per tensor a call
            raise ValueError(f"state.{name} is on {t.device}; query is on {query.device}")
    if valid is not None and (tuple(valid.shape) != (B, L) or valid.dtype != torch.bool):
        raise ValueError(f"valid must be a bool [B, L] = {(B, L)} mask; got {valid.dtype} {tuple(valid.shape)}")


def _ptr(t: torch.Tensor, fallback: torch.Tensor) -> torch.Tensor:
    # An empty segment (e.g. n_kq = 0 before the first flush) is never read; give Triton a live pointer.
    return t if t.numel() > 0 else fallback


def decode_attention_triton(
    query: torch.Tensor,
    state: KiviState,
    valid: torch.Tensor | None,
    scaling: float,
    *,
    impl: str = "auto",
    num_splits: int | None = None,
    block_n: int | None = None,
    block_w: int | None = None,
    num_warps: int | None = None,
    use_dot: bool | None = None,
) -> torch.Tensor:
    """Attention of the last q_len positions over all L positions of a KIVI layer, from packed storage.

    Same contract as `decode_attention_ref`: query [B, Hq, q, D] (q <= 8), valid [B, L] bool or None,
    returns [B, q, Hq, D] in query's dtype. `impl` picks the kernel: "auto" (the default, see
    `pick_impl`) runs, on one-token decode calls, "gqa" (`decode_attention_gqa.py`: a program a kv head,
    codes dequantized once for its query heads) where its fp16x2 pair path runs (k2v2, fp16, 4 or 8 query heads
    a kv head), v3 (`decode_attention_v3.py`: one query row a program, CUDA cores, scales folded) on the
    other MHA and GQA calls, all where measured faster, and v1 (this file: tensor-core tiles, any GQA group
    and q_len) elsewhere; "v1" / "v3" / "gqa" force one (v3 and gqa refuse what they cannot run, with why).
    The rest are tuning overrides (tests and benchmarks): `num_splits`, `num_warps` (all), `block_n` and
    `use_dot` (v1), `block_w` (v3 and gqa: key word rows a tile).
    """
    _check(query, state, valid)
    if impl not in ("auto", "v1", "v3", "gqa"):
        raise ValueError(f"impl={impl!r} is not known: use 'auto', 'v1', 'v3' or 'gqa'")
    picked = pick_impl(query, state, impl)
    if picked == "gqa":
        from .decode_attention_gqa import decode_attention_gqa

        return decode_attention_gqa(query, state, valid, scaling, num_splits=num_splits, block_w=block_w,
                                    num_warps=num_warps)
    if picked == "v3":
        from .decode_attention_v3 import decode_attention_v3

        return decode_attention_v3(query, state, valid, scaling, num_splits=num_splits, block_w=block_w,
                                   num_warps=num_warps)
    return _decode_attention_v1(query, state, valid, scaling, num_splits=num_splits, block_n=block_n,
                                num_warps=num_warps, use_dot=use_dot)


def decode_attention_static(query: torch.Tensor, state: KiviState, lens: torch.Tensor, win: int, max_len: int,
                            scaling: float) -> torch.Tensor:
    """Decode attention for the lean engine's static cache (kivi_core.static): the lengths are read on the
    device from `lens` = int32 [L, n_kq, n_vq] as they were before the step's token (which is already
    appended: attention covers L + 1 positions), the value window is a ring of `win` slots (position t
    at slot t % win), and the grid covers `max_len` positions, so the launch is the same at every step and a
    CUDA graph can replay it. `state` holds the full buffers (its n_kq / n_vq are not read). The caller
    checked the shapes once when it built the buffers."""
    if state.length > max_len or lens.dtype != torch.int32 or lens.numel() != 3 or win < 1:
        raise ValueError(f"static attention needs int32 lens[3], win >= 1, max_len >= buffers; got "
                         f"{lens.dtype} {tuple(lens.shape)}, win={win}, max_len={max_len}")
    picked = pick_impl(query, state)
    if picked == "gqa":
        from .decode_attention_gqa import decode_attention_gqa

        return decode_attention_gqa(query, state, None, scaling, lens=lens, win=win, max_len=max_len)
    if picked == "v3":
        from .decode_attention_v3 import decode_attention_v3

        return decode_attention_v3(query, state, None, scaling, lens=lens, win=win, max_len=max_len)
    return _decode_attention_v1(query, state, None, scaling, lens=lens, win=win, max_len=max_len)


def pick_impl(query: torch.Tensor, state: KiviState, impl: str = "auto") -> str:
    """The kernel a call runs: "v1", "v3" or "gqa" (a forced "v3" / "gqa" is refused with the reason when it
    cannot run the call)."""
    if impl == "v1":
        return "v1"
    from .decode_attention_gqa import gqa_beats_v3, packable_gqa, unsupported_gqa
    from .decode_attention_v3 import unsupported_v3

    B, Hq, q, D = query.shape
    H = state.k_tail.shape[1]
    if impl == "auto" and q == 1:
        tiles = B * H * cdiv(state.length, _default_block_n(D))
        if tiles <= min(SHORT_TILES, SHORT_TILES_GQA_MMA):
            return "v1"  # one tile a program: SHORT_TILES has the measurements
        if _gqa_mma_runs(query, state):
            return "gqa"  # the tensor-core bulk: SHORT_TILES_GQA_MMA has the measurements
        if tiles <= SHORT_TILES:
            return "v1"
    why_gqa = unsupported_gqa(query, state)
    if impl == "gqa":
        if why_gqa is not None:
            raise ValueError(f"impl='gqa' cannot run this call: {why_gqa}; use impl='v3', 'v1' or 'auto'")
        return "gqa"
    if (impl == "auto" and why_gqa is None and packable_gqa(query, state)
            and gqa_beats_v3(B, H, state.length, Hq // H)):
        # a program a kv head, each code dequantized once for its query heads: on tensor cores at head_dim 128
        # (decode_attention_gqa_mma.py; MMA_WARPS has the numbers), else as fp16x2 pairs: H200,
        # Llama-3.1-8B 32/8, us at 8x32K / 16x16K / 64x4096 / 128x4096: 229 / 229 / 242 / 449 vs v3's 291 /
        # 301 / 365 / 693 (benchmarks/results/h200_round11d/bench_gqa.log); 8 query heads (two programs a
        # kv head), Llama-3.1-70B 64/8: 417 / 416 / 430 / 831 vs 528 / 549 / 677 / 1334 (h200_round12).
        # v3 stays faster on small calls (batch 1, short contexts): gqa_beats_v3
        return "gqa"
    why = unsupported_v3(query, state)
    if impl == "v3":
        if why is not None:
            raise ValueError(f"impl='v3' cannot run this call: {why}; use impl='v1' or 'auto'")
        return "v3"
    # v3 is faster than v1 on every shape it runs (H200): MHA (h200_v3_round4.md: 8x32K 0.51 vs 1.62 ms,
    # 64x4096 0.52 vs 1.61 ms, 1x32K 124 vs 221 us) and GQA, a program a query head with its kv head's
    # bytes shared through L2 (h200_round9.md, Llama-3.1-8B 32/8: 8x32K 292 vs 510 us, 16x16K 302 vs 488,
    # 64x4096 366 vs 429, 128x4096 692 vs 822). bf16 / 4-bit GQA calls take v3's fp32 path, not timed on
    # GQA: on MHA it runs at 1.3x the packed path's time (486 vs 373 us at 8x32K), which would still be
    # under v1's there. v1 serves q_len > 1 and head_dim 256
    return "v3" if why is None else "v1"


def _decode_attention_v1(
    query: torch.Tensor,
    state: KiviState,
    valid: torch.Tensor | None,
    scaling: float,
    *,
    num_splits: int | None = None,
    block_n: int | None = None,
    num_warps: int | None = None,
    use_dot: bool | None = None,
    lens: torch.Tensor | None = None,
    win: int = 0,
    max_len: int = 0,
) -> torch.Tensor:
    """v1: `use_dot` False (default when one query row per kv head) computes in fp32 on CUDA cores
    without rounding the dequantized tile or the probabilities to the model dtype."""
    s = state
    B, Hq, q, D = query.shape
    H = s.k_tail.shape[1]
    L = max_len if lens is not None else s.length  # device lengths: the grid covers the capacity
    GROUP = Hq // H
    M = GROUP * q
    out = torch.empty((B, q, Hq, D), device=query.device, dtype=query.dtype)
    if L == 0 or B == 0:
        return out.zero_()
    BLOCK_N = block_n or _short_block_n(B * H, L, D, query.device)
    num_warps = num_warps or 4
    if BLOCK_N % 16 or BLOCK_N & (BLOCK_N - 1):
        raise ValueError(f"block_n={BLOCK_N} must be a power of two >= 16 (whole 2-bit words)")
    S = num_splits or _num_splits(B * H, L, BLOCK_N, query.device)
    chunk = cdiv(cdiv(L, S), BLOCK_N) * BLOCK_N
    S = cdiv(L, chunk)  # no empty splits
    stages = _v1_stages(S, L, BLOCK_N, query.device)
    single = S == 1
    if single:
        acc_ws = m_ws = l_ws = out  # unused
    else:
        acc_ws = torch.empty((B * H, S, M, D), device=query.device, dtype=torch.float32)
        m_ws = torch.empty((B * H, S, M), device=query.device, dtype=torch.float32)
        l_ws = torch.empty((B * H, S, M), device=query.device, dtype=torch.float32)
    mask = valid.view(torch.uint8) if valid is not None else None
    fb = query
    k_codes, k_scale, k_min = _ptr(s.k_codes, fb), _ptr(s.k_scale, fb), _ptr(s.k_min, fb)
    v_codes, v_scale, v_min = _ptr(s.v_codes, fb), _ptr(s.v_scale, fb), _ptr(s.v_min, fb)
    k_tail, v_win = _ptr(s.k_tail, fb), _ptr(s.v_win, fb)
    # Strides of an empty segment's stand-in are never used; pass them anyway (4 per tensor).
    if use_dot is None:
        # Tensor cores even for one row (padded to 16): on H200, Llama-2 shape 8x32K k2v2, 1.61 ms with
        # the dot vs 2.62 ms for the CUDA-core path (its per-tile reductions over D cost more shuffles).
        use_dot = True
    # tl.dot needs >= 16 rows (padding rows are masked); the dot-free path runs the one row alone.
    MP = max(16, next_power_of_2(M)) if use_dot else next_power_of_2(M)
    DP = next_power_of_2(D)
    dot_f32 = query.dtype == torch.float32 or (query.dtype == torch.bfloat16 and _interpreting())
    prec = "ieee" if dot_f32 else "tf32"  # fp32 dots exact (tests); fp16/bf16 dots ignore the setting
    dep = pdl_launch(query.device)  # the merge starts as the splits finish (kernels/pdl.py)
    first = dep and _pdl.PDL_FIRST
    _decode_attn_split_kernel[(B * H, S)](
        query, k_codes, k_scale, k_min, k_tail, v_codes, v_scale, v_min, v_win,
        mask if mask is not None else query, lens if lens is not None else query,
        acc_ws, m_ws, l_ws, out,
        H, L, s.n_kq, s.n_vq, chunk, scaling * _LOG2E,
        *query.stride(),
        *k_codes.stride(), *k_scale.stride(), *k_min.stride(), *k_tail.stride(),
        *v_codes.stride(), *v_scale.stride(), *v_min.stride(), *v_win.stride(),
        *(mask.stride() if mask is not None else (0, 0)),
        *out.stride(),
        S,
        GROUP=GROUP, QLEN=q, MP=MP, D=D, DP=DP, G=s.group_size, K_BITS=s.k_bits, V_BITS=s.v_bits,
        BLOCK_N=BLOCK_N, HAS_VALID=valid is not None, SINGLE=single, PREC=prec, DOT_F32=dot_f32,
        USE_DOT=use_dot, DEV_LENS=lens is not None, WIN=win, PDL=dep and not single, PDL_WAIT=first,
        num_warps=num_warps, **launch_kw(first), **({"num_stages": stages} if stages else {}),
    )
    if not single:
        _decode_attn_reduce_kernel[(B * H, M)](
            acc_ws, m_ws, l_ws, out, H, S, *out.stride(),
            GROUP=GROUP, QLEN=q, D=D, DP=DP, SC=MERGE_SPLITS, PDL=dep, num_warps=1, **launch_kw(dep),
        )
    return out
