"""KIVI decode attention for GQA with shared dequantization ("gqa"): a program a (batch, kv head, split).

v3 runs GQA a program a query head, so each of a kv head's QG query heads dequantizes its codes again;
measured on the H200 that left it at 0.70-0.89x fp16 SDPA (benchmarks/results/h200_round10.md). Here a
program takes a (batch, kv head, split) and all QG query heads: each code is turned into a value once and
multiplied into QG accumulators (benchmarks/results/decode_v4_plan.md, item 3). Reached through
`decode_attention_triton`: "auto" runs it on k2v2 fp16 calls with 4 or 8 query heads a kv head and at least
MIN_TILES_GQA key tiles, with its tensor-core bulk (`decode_attention_gqa_mma.py`: head_dim 128, G = 32; all
of a kv head's query heads in one program) where that maps, else the pair path below (8 heads: two programs a
kv head, 4 heads each); impl="gqa" forces the kernel (its fp32 path where neither can run).

The pair path (`_bulk_gqa_packed`, QG = 4, k2v2 fp16): per code pair LOP3 + HFMA2 give the exact codes (v3's
magic-number trick), one HFMA2 the fp16 values c * scale + min, then one HFMA2 a head (`_gqa_asm`); 8-term
fp16 sums go to fp32 once a call. Keys: two threads a key word row (4 code pairs each: the word shifted so
the thread's codes sit at the bottom of each half), 8 channels a step, 32 fp32 scores a thread. Values:
four threads a word column (2 pairs each), 8 rows a step, 16 fp32 sums a thread; p goes from the key to the
value mapping through a scratch row as fp16 [token, head]. SASS (sm_90): 1.34-1.36 instructions a (code,
head) in the key loop, 1.57 in the value loop, against ~2.5 for v3; H200, Llama-3.1-8B shape: 1.05-1.13x
fp16 SDPA, 1.3-1.5x v3 (benchmarks/results/h200_round11.md). Under TRITON_INTERPRET=1 fp32 twins of the asm
(`_pairs4_ref`, `_pairs2_ref`) run the same tiles, thread mapping and joins.

The fp32 path (`_bulk_gqa`; QG 2 or 4, 2/4-bit, bf16): the same program shape in fp32 arithmetic, scales
folded into the query and p as in v3's fp32 path; measured slower than v3 (not picked by "auto"). Both
paths run the fp16 window, the key tail and any straddling tile as v1's tiles with QG query rows
(`_attend`), and hand their partials to v1's reduce kernel (GROUP = QG). Contract and oracle:
`decode_attention_ref`.
"""

from __future__ import annotations

import functools
import math

import torch
import triton
import triton.language as tl

from kivi_core.state import KiviState

from .decode_attention import (
    _LOG2E,
    MERGE_SPLITS,
    _interpreting,
    _decode_attn_reduce_kernel,
    _head_ptrs,
    _step_lens,
)
from . import decode_attention_v3 as da3
from . import pdl as _pdl
from .decode_attention_gqa_mma import _bulk_gqa_mma
from .decode_attention_v3 import (
    _code_unscale,
    _code_x,
    _kload8,
    _rest_tiles,
    _split4,
    _split8,
    splits_v3,
    unit_inner_strides,
)
from .pdl import launch_kw, pdl_launch, pdl_trigger, pdl_wait
from .tile_ops import _join8n, _join16n, _join32n, _split4n, _split16n, _split32n

DEFAULT_BLOCK_W, DEFAULT_WARPS, DEFAULT_BLOCK_N = 64, 4, 16  # the fp32 path
# fp32 path, SASS (sm_90, triton 3.6, QG=4 k2v2 D=128, benchmarks/kernel_sass.py): 255 registers uncapped;
# at 128, 28 spill instructions, none in the key (314 a 4-channel step) or value (97 a row step) loops.
# H200, Llama-3.1-8B shape, us at 8x32K / 64x4096 / 16x16K / 128x4096: 429 / 466 / 426 / 890 (v3: 290 / 363
# / 300 / 688; benchmarks/results/h200_round11/variants_gqa.log).
MAXNREG = 128
# The pair path (same log), BW x warps at cap 128: 64 x 4: 248 / 295 / 258 / 557; 32 x 2: 246 / 270 / 245 /
# 474; 128 x 8: 282 / 346 / 283 / 669. 64 x 4 at cap 96 (spills in the loops): 362 / 376 / 361 / 718; at 168
# (3 programs an SM): 282 / 327 / 288 / 622; uncapped (254): 356 / 413 / 370 / 795.
PACKED_BLOCK_W = 32
# Programs a call aims for (splits_v3's rule with this target): one wave of the pair path's 2-warp programs,
# 8 an SM at cap 128 (1056 on the H200). Measured (h200_round11c/variants_splits.log, us) for bulk splits a
# kv head at 8x32K S = 8 / 16 / 32 / 64: 316 / 228 / 230 / 246; 16x16K S = 4 / 8 / 16 / 32: 317 / 229 / 234 /
# 245; 64x4096 S = 1 / 2 / 4 / 8: 354 / 242 / 252 / 270; 128x4096 S = 1 / 2 / 4: 449 / 460 / 474. This
# target picks 16 / 8 / 2 / 1; v3's (4096) picked 64 / 32 / 8 / 4.
SPLIT_PROGRAMS_GQA = 1024


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


def _gqa_asm(n_pairs: int, qg: int = 4, n_words: int = 8) -> str:
    """PTX for `_pairs4` / `_pairs2`: n_words words w_m with their fp16 scale s_m and min m_m, qg fp16
    operands x_{m,h} a word, and n_pairs * 2 * qg tied fp32 accumulators f_o, o = (j * 2 + hi) * qg + h:
    f_o += sum_m value(j, hi, m) * x_{m,h}, where value = code * s_m + m_m is the dequantized element at
    bits 2j + 16 hi of w_m. Per code pair: LOP3 + HFMA2 turn bits into the exact codes (as `_pairs_asm`),
    one HFMA2 makes the fp16 value pair (dequantized once for all qg heads), then one HFMA2 a head; the
    n_words-term fp16 sums go to fp32 once a call."""
    na = n_pairs * 2 * qg
    L = ["{", f".reg .b32 k, x, v, s2, m2, q<{qg}>, a<{n_pairs * qg}>, r<4>, z<4>;", ".reg .b16 h<2>;",
         ".reg .f32 t<2>;", "mov.b32 k, 0x64006400;"]  # fp16 pair 1024
    L += [f"mov.b32 r{j}, {v:#x};" for j, v in ((1, 0x34003400), (2, 0x2C002C00), (3, 0x24002400))]  # 4^-j
    L += [f"mov.b32 z{j}, {v:#x};" for j, v in ((1, 0xDC00DC00), (2, 0xD400D400), (3, 0xCC00CC00))]  # -1024 4^-j
    w0, s0, m0, x0 = na, na + n_words, na + 2 * n_words, na + 3 * n_words
    for m in range(n_words):
        L += [f"mov.b32 s2, {{${s0 + m}, ${s0 + m}}};", f"mov.b32 m2, {{${m0 + m}, ${m0 + m}}};"]
        L += [f"mov.b32 q{h}, {{${x0 + m * qg + h}, ${x0 + m * qg + h}}};" for h in range(qg)]
        for j in range(n_pairs):
            L.append(f"lop3.b32 x, ${w0 + m}, {0x00030003 << (2 * j):#x}, k, 0xEA;")
            L.append("sub.rn.f16x2 x, x, k;" if j == 0 else f"fma.rn.f16x2 x, x, r{j}, z{j};")
            L.append("fma.rn.f16x2 v, x, s2, m2;")
            for h in range(qg):
                a = f"a{j * qg + h}"
                L.append(f"mul.rn.f16x2 {a}, v, q{h};" if m == 0 else f"fma.rn.f16x2 {a}, v, q{h}, {a};")
    for j in range(n_pairs):
        for h in range(qg):
            lo, hi = (j * 2) * qg + h, (j * 2 + 1) * qg + h
            L += [f"mov.b32 {{h0, h1}}, a{j * qg + h};", "cvt.f32.f16 t0, h0;", "cvt.f32.f16 t1, h1;",
                  f"add.f32 ${lo}, ${lo}, t0;", f"add.f32 ${hi}, ${hi}, t1;"]
    L.append("}")
    return "\n".join(L)


_GQA_SRC = {n: _gqa_asm(n) for n in (2, 4)}


@triton.constexpr_function
def _gqa_src(n_pairs):
    return _GQA_SRC[n_pairs]


@triton.constexpr_function
def _gqa_constraints(n_pairs):
    na = n_pairs * 2 * 4
    return ",".join(["=f"] * na + ["r"] * 8 + ["h"] * (16 + 32) + [str(i) for i in range(na)])


@triton.jit
def _pairs_inc(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7, x0_0,
               x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3, x4_0, x4_1,
               x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3, NK: tl.constexpr):
    # the asm's contract in fp32 (the interpreter cannot run PTX): the increment of the NK * 4 accumulators,
    # [N, NK * 4] with column (j * 2 + hi) * 4 + h
    w = _join8n(w0, w1, w2, w3, w4, w5, w6, w7)
    s = _join8n(s0, s1, s2, s3, s4, s5, s6, s7).to(tl.float32)
    mn = _join8n(m0, m1, m2, m3, m4, m5, m6, m7).to(tl.float32)
    x = _join32n(x0_0, x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3,
                 x4_0, x4_1, x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3)
    x = tl.reshape(x, (w.shape[0], 8, 4)).to(tl.float32)  # [N, word, head]
    k = tl.arange(0, NK)
    c = ((w[:, :, None] >> (2 * (k // 2) + 16 * (k % 2))[None, None, :]) & 3).to(tl.float32)  # [N, word, k]
    v = c * s[:, :, None] + mn[:, :, None]
    return tl.reshape(tl.sum(v[:, :, :, None] * x[:, :, None, :], axis=1), (w.shape[0], NK * 4))


@triton.jit
def _pairs4(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7, x0_0,
            x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3, x4_0, x4_1,
            x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3, f0, f1, f2, f3, f4,
            f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26,
            f27, f28, f29, f30, f31, ASM: tl.constexpr):
    # keys: 8 channel words of a thread's half word row (4 code pairs: tokens j, j + 8);
    # x{m}_{h}: the per-head operand of word m (query channel / p of the row); f{(j * 2 + hi) * 4 + h} += ...
    if ASM:
        return tl.inline_asm_elementwise(
            _gqa_src(4), _gqa_constraints(4),
            [w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7, x0_0,
             x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3, x4_0, x4_1,
             x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3, f0, f1, f2, f3, f4,
             f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17, f18, f19, f20, f21, f22, f23, f24, f25,
             f26, f27, f28, f29, f30, f31],
            (tl.float32,) * 32, True, 1)
    else:  # the fp32 twin
        inc = _pairs_inc(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6,
                         m7, x0_0, x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1,
                         x3_2, x3_3, x4_0, x4_1, x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0,
                         x7_1, x7_2, x7_3, 8)
        return _split32n(_join32n(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, f16, f17,
                                  f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31) + inc)


@triton.jit
def _pairs2(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7, x0_0,
            x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3, x4_0, x4_1,
            x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3, f0, f1, f2, f3, f4,
            f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, ASM: tl.constexpr):
    # values: 8 rows of a thread's quarter word column (2 code pairs: channels j, j + 8);
    # x{m}_{h}: the per-head operand of word m (query channel / p of the row); f{(j * 2 + hi) * 4 + h} += ...
    if ASM:
        return tl.inline_asm_elementwise(
            _gqa_src(2), _gqa_constraints(2),
            [w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7, x0_0,
             x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3, x4_0, x4_1,
             x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3, f0, f1, f2, f3, f4,
             f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15],
            (tl.float32,) * 16, True, 1)
    else:  # the fp32 twin
        inc = _pairs_inc(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6,
                         m7, x0_0, x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1,
                         x3_2, x3_3, x4_0, x4_1, x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0,
                         x7_1, x7_2, x7_3, 4)
        return _split16n(_join16n(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15) + inc)


@triton.jit
def _qrow8(q_ptr, zc, dc, offs_c):
    # 8 channels of one query head, the same 16 bytes in every thread (an L1 broadcast), split like the words
    return _split8(tl.load(q_ptr + (dc + offs_c)[None, :] + zc))


@triton.jit
def _vrow_gqa(vb, sb, mb, pb, k: tl.constexpr, RS: tl.constexpr, s_vct, s_vst, s_vmt, vsh, r, n_t,
              MASK: tl.constexpr):
    # row r + k RS of a value step: its word (shifted to the thread's pairs), scale, min and the row's 4
    # probabilities (fp16, one 8-byte load); with MASK, zeros past the tile's end
    hh = tl.arange(0, 4)
    if MASK:
        ok = r + k * RS < n_t
        w = tl.load(vb + k * RS * s_vct, mask=ok, other=0)
        s = tl.load(sb + k * RS * s_vst, mask=ok, other=0.0)
        m = tl.load(mb + k * RS * s_vmt, mask=ok, other=0.0)
        p = tl.load(pb + k * RS * 4 + hh[None, :], mask=ok[:, None], other=0.0)
    else:
        w = tl.load(vb + k * RS * s_vct)
        s = tl.load(sb + k * RS * s_vst)
        m = tl.load(mb + k * RS * s_vmt)
        p = tl.load(pb + k * RS * 4 + hh[None, :])
    p0, p1, p2, p3 = _split4n(p)
    return w >> vsh, s, m, p0, p1, p2, p3


@triton.jit
def _vstep_gqa(vc_ptr, vs_ptr, vm_ptr, p16, s_vct, s_vst, s_vmt, start, r, RS: tl.constexpr, n_t, col, gcol, vsh,
               g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15,
               MASK: tl.constexpr, ASM: tl.constexpr):
    # one value step: rows r, r + RS, ..., r + 7 RS of the tile into the thread's 16 sums. 32-bit offsets
    # from one base pointer a step (a head's rows x words stay far below 2^31), as v3's _vrows8
    t = start + r
    vb = vc_ptr + (t * s_vct + col)
    sb = vs_ptr + (t * s_vst + gcol)
    mb = vm_ptr + (t * s_vmt + gcol)
    pb = p16 + (r * 4)[:, None]
    w0, s0, m0, x0_0, x0_1, x0_2, x0_3 = _vrow_gqa(vb, sb, mb, pb, 0, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    w1, s1, m1, x1_0, x1_1, x1_2, x1_3 = _vrow_gqa(vb, sb, mb, pb, 1, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    w2, s2, m2, x2_0, x2_1, x2_2, x2_3 = _vrow_gqa(vb, sb, mb, pb, 2, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    w3, s3, m3, x3_0, x3_1, x3_2, x3_3 = _vrow_gqa(vb, sb, mb, pb, 3, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    w4, s4, m4, x4_0, x4_1, x4_2, x4_3 = _vrow_gqa(vb, sb, mb, pb, 4, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    w5, s5, m5, x5_0, x5_1, x5_2, x5_3 = _vrow_gqa(vb, sb, mb, pb, 5, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    w6, s6, m6, x6_0, x6_1, x6_2, x6_3 = _vrow_gqa(vb, sb, mb, pb, 6, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    w7, s7, m7, x7_0, x7_1, x7_2, x7_3 = _vrow_gqa(vb, sb, mb, pb, 7, RS, s_vct, s_vst, s_vmt, vsh, r, n_t, MASK)
    return _pairs2(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7,
                   x0_0, x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3,
                   x4_0, x4_1, x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3,
                   g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15, ASM)


@triton.jit
def _pick4(x, h: tl.constexpr):
    # element h of a [4] tensor that every thread holds whole, as a scalar
    return tl.sum(tl.where(tl.arange(0, 4) == h, x, 0.0), axis=0)


@triton.jit
def _key_scores(q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, rows_w, gk, w_ok, s_kcw, s_ksg, s_kmg, sh, zc, offs_c,
                E: tl.constexpr, D: tl.constexpr, ASM: tl.constexpr):
    # a key tile's unscaled scores [element, k, head], two elements a word row (4 code pairs each)
    y = tl.zeros((E,), tl.float32)
    f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15 = \
        y, y, y, y, y, y, y, y, y, y, y, y, y, y, y, y
    f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31 = \
        y, y, y, y, y, y, y, y, y, y, y, y, y, y, y, y
    for dc in range(0, D, 8):
        kw, sk, mk = _kload8(kc_ptr, ks_ptr, km_ptr, rows_w, gk, w_ok, s_kcw, s_ksg, s_kmg, dc, offs_c)
        w0, w1, w2, w3, w4, w5, w6, w7 = _split8(kw >> sh[:, None])
        s0, s1, s2, s3, s4, s5, s6, s7 = _split8(sk)
        m0, m1, m2, m3, m4, m5, m6, m7 = _split8(mk)
        x0_0, x1_0, x2_0, x3_0, x4_0, x5_0, x6_0, x7_0 = _qrow8(q_ptr, zc, dc, offs_c)
        x0_1, x1_1, x2_1, x3_1, x4_1, x5_1, x6_1, x7_1 = _qrow8(q_ptr + s_qh, zc, dc, offs_c)
        x0_2, x1_2, x2_2, x3_2, x4_2, x5_2, x6_2, x7_2 = _qrow8(q_ptr + 2 * s_qh, zc, dc, offs_c)
        x0_3, x1_3, x2_3, x3_3, x4_3, x5_3, x6_3, x7_3 = _qrow8(q_ptr + 3 * s_qh, zc, dc, offs_c)
        (f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15,
         f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31) = _pairs4(
            w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7, m0, m1, m2, m3, m4, m5, m6, m7,
            x0_0, x0_1, x0_2, x0_3, x1_0, x1_1, x1_2, x1_3, x2_0, x2_1, x2_2, x2_3, x3_0, x3_1, x3_2, x3_3,
            x4_0, x4_1, x4_2, x4_3, x5_0, x5_1, x5_2, x5_3, x6_0, x6_1, x6_2, x6_3, x7_0, x7_1, x7_2, x7_3,
            f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15,
            f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31, ASM)
    return tl.reshape(_join32n(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15,
                            f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31),
                   (E, 8, 4))


@triton.jit
def _bulk_gqa_packed(q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_ptr,
                     s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, end, qk_scale, m_i, l_i,
                     D: tl.constexpr, G: tl.constexpr, BW: tl.constexpr, HAS_VALID: tl.constexpr,
                     NT: tl.constexpr, ASM: tl.constexpr, VDENSE: tl.constexpr):
    # _bulk_gqa at k2v2, fp16, QG = 4, with the per-code arithmetic in fp16x2 pairs (_gqa_asm): each code
    # pair is dequantized once to its fp16 values and multiplied into the 4 heads' sums.
    # Keys: two threads a word row (element e: row e // 2, pairs j = 0..3 of the word shifted by 8 (e % 2),
    # i.e. tokens j + 4 (e % 2) and + 8), 8 channels a step, 32 fp32 scores a thread (8 tokens x 4 heads).
    # Values: four threads a word column (pairs j = 0, 1 of the word shifted by 4 (t % 4): channels
    # 2 (t % 4) + j and + 8), 8 rows a step, 16 fp32 sums a thread; p goes through the scratch row as fp16
    # [token, head]. The query is unscaled in the pairs (qk_scale multiplies the fp32 scores).
    # two threads a key word row: four (16 scores a thread, fits a cap of 96 without spills) were slower at
    # every cap and tile, 257-353 vs 246-270 us at 8x32K / 64x4096 (h200_round11.md; code in commit 5cf7a30)
    KT: tl.constexpr = 2
    E: tl.constexpr = KT * BW
    NK: tl.constexpr = 16 // KT  # a thread's scores a head: tokens j + NK / 2 (e % KT) and + 8, j < NK / 2
    BT: tl.constexpr = 16 * BW
    DW: tl.constexpr = D // 16
    RS: tl.constexpr = NT // (4 * DW)  # value rows a step per row slot (8 slots a step)
    e = tl.arange(0, E)
    sh = (e % KT) * NK  # bits: the thread's pairs at the bottom of each half word
    offs_c = tl.arange(0, 8)
    zc = tl.zeros((E, 8), tl.int32)
    kk = tl.arange(0, NK)  # score column k = j * 2 + hi: token NK / 2 (e % KT) + j + 8 hi of the word row
    tok_l = ((e // KT) * 16 + (e % KT) * (NK // 2))[:, None] + (kk // 2 + 8 * (kk % 2))[None, :]  # [E, NK]
    hh = tl.arange(0, 4)
    vt = tl.arange(0, NT)
    col = (vt // 4) % DW
    rt = vt // (4 * DW)
    vsh = (vt % 4) * 4
    gcol = (col * 16) // G
    p16 = p_ptr.to(tl.pointer_type(tl.float16))
    if VDENSE:  # value rows DW words and scale rows D / G apart: a step's 8 row offsets become immediates
        s_vct = DW
        s_vst = D // G
        s_vmt = D // G
    z = tl.zeros((NT,), tl.float32)
    g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = \
        z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
    for start in range(lo, end, BT):
        rows_w = (start // 16 + e // KT).to(tl.int64)
        w_ok = rows_w * 16 < end
        gk = (rows_w * 16) // G
        s = _key_scores(q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, rows_w, gk, w_ok, s_kcw, s_ksg, s_kmg, sh, zc,
                        offs_c, E, D, ASM) * qk_scale  # [element, k, head]
        tok = start + tok_l
        t_ok = tok < end
        if HAS_VALID:
            t_ok = t_ok & (tl.load(valid_ptr + tok * s_mt, mask=t_ok, other=0) != 0)
        s = tl.where(t_ok[:, :, None], s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(tl.max(s, axis=1), axis=0))  # [4], in-thread over k first
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe[None, None, :])
        l_i = l_i * alpha + tl.sum(tl.sum(p, axis=1), axis=0)
        m_i = m_new
        a0, a1, a2, a3 = _pick4(alpha, 0), _pick4(alpha, 1), _pick4(alpha, 2), _pick4(alpha, 3)
        g0, g1, g2, g3, g4, g5, g6, g7 = g0 * a0, g1 * a1, g2 * a2, g3 * a3, g4 * a0, g5 * a1, g6 * a2, g7 * a3
        g8, g9, g10, g11, g12, g13, g14, g15 = g8 * a0, g9 * a1, g10 * a2, g11 * a3, g12 * a0, g13 * a1, \
            g14 * a2, g15 * a3
        tl.debug_barrier()  # the previous tile's p reads are done
        tl.store(p16 + tok_l[:, :, None] * 4 + hh[None, None, :], p.to(tl.float16))
        tl.debug_barrier()
        n_t = tl.minimum(end - start, BT)
        n_full = (n_t // (8 * RS)) * (8 * RS)
        for r0 in range(0, n_full, 8 * RS):  # whole steps unmasked, then at most one masked step
            g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = _vstep_gqa(
                vc_ptr, vs_ptr, vm_ptr, p16, s_vct, s_vst, s_vmt, start, r0 + rt, RS, n_t, col, gcol, vsh,
                g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15, False, ASM)
        if n_full < n_t:
            g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = _vstep_gqa(
                vc_ptr, vs_ptr, vm_ptr, p16, s_vct, s_vst, s_vmt, start, n_full + rt, RS, n_t, col, gcol, vsh,
                g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15, True, ASM)
    out = _join16n(g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15)
    out = tl.reshape(out, (RS, DW, 4, 2, 2, 4))  # [slot, column, quarter, j, hi, head]
    out = tl.permute(tl.sum(out, axis=0), (4, 0, 3, 1, 2))  # [head, column, hi, quarter, j]
    return m_i, l_i, tl.reshape(out, (4, D))  # channel column * 16 + hi * 8 + quarter * 2 + j


@triton.jit
def _twice_rows(x):
    # x [R] or [R, D] with R zero rows after it
    if len(x.shape) == 1:
        return tl.reshape(tl.permute(tl.join(x, tl.zeros_like(x)), (1, 0)), (2 * x.shape[0],))
    else:
        return tl.reshape(tl.permute(tl.join(x, tl.zeros_like(x)), (2, 0, 1)), (2 * x.shape[0], x.shape[1]))


@triton.jit
def _rows16(x, QG: tl.constexpr):
    # x [QG] or [QG, D] (QG = 4 or 8) as 16 rows, zeros past QG: the tensor-core rest tiles' M
    if QG == 4:
        x = _twice_rows(x)
    return _twice_rows(x)


@triton.jit
def _decode_attn_gqa_kernel(
    q_ptr, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr, lens_ptr,
    acc_ptr, m_ptr, l_ptr, p_ptr,
    H, L, n_kq, n_vq, chunk, qk_scale, magic,
    s_qb, s_qh,
    s_kcb, s_kch, s_kcw, s_ksb, s_ksh, s_ksg, s_kmb, s_kmh, s_kmg, s_ktb, s_kth, s_ktt,
    s_vcb, s_vch, s_vct, s_vsb, s_vsh, s_vst, s_vmb, s_vmh, s_vmt, s_vwb, s_vwh, s_vwt,
    s_mb, s_mt,
    NUM_SPLITS, P_ROWS, W_SPLITS, SPLIT0,
    QG: tl.constexpr, D: tl.constexpr, G: tl.constexpr, BITS: tl.constexpr, BW: tl.constexpr,
    BLOCK_N: tl.constexpr, HAS_VALID: tl.constexpr, NT: tl.constexpr,
    DEV_LENS: tl.constexpr, WIN: tl.constexpr, PACKED: tl.constexpr, ASM: tl.constexpr, VDENSE: tl.constexpr,
    REP: tl.constexpr, MMA: tl.constexpr, EARLY: tl.constexpr, RDOT: tl.constexpr, PF: tl.constexpr,
    PART: tl.constexpr, TAU: tl.constexpr, PDL: tl.constexpr, PDL_WAIT: tl.constexpr,
):
    # PDL (kernels/pdl.py): every program lets the next launch start; PDL_WAIT 1: launched as a dependent of what ran
    # before, so wait before the first load and before that (the window's own launch, which never waits on the bulk
    # before its loads, must not start before what ran before the bulk is done); 2: the window's own launch, which
    # needs nothing from the bulk's, waits at its end, so the merge waiting on it also waits on the bulk
    pdl_wait(PDL_WAIT == 1)
    pdl_trigger(PDL)
    # H here counts program heads: REP of them a kv head (REP = 2 at 8 query heads a kv head), each with QG
    # query heads: program head hv runs query heads hv * QG .. hv * QG + QG - 1 over kv head hv // REP
    L, n_kq, n_vq = _step_lens(lens_ptr, L, n_kq, n_vq, DEV_LENS)
    # PART 0: one launch runs every split; 1: the bulk splits alone (whole tensor-core tiles, so no v1 tile and no
    # shared memory); 2: the window's splits alone (their index from SPLIT0 = the bulk splits)
    pid_bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1) + SPLIT0
    b = pid_bh // H
    hv = pid_bh % H
    h = hv // REP  # the kv head
    BT: tl.constexpr = BW * (32 // BITS)
    offs_d = tl.arange(0, D)
    d_ok = offs_d < D
    q_head = q_ptr + b * s_qb + hv * QG * s_qh
    if RDOT:  # the rest on tensor cores: 16 query rows (zeros past QG), in q's dtype
        g_i = tl.arange(0, 16)
        q = tl.load(q_head + g_i[:, None] * s_qh + offs_d[None, :], mask=(g_i < QG)[:, None], other=0.0)
    else:
        g_i = tl.arange(0, QG)
        q = tl.load(q_head + g_i[:, None] * s_qh + offs_d[None, :]).to(tl.float32)  # [QG, D]
    kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr = _head_ptrs(
        b, h, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
        s_kcb, s_kch, s_ksb, s_ksh, s_kmb, s_kmh, s_ktb, s_kth, s_vcb, s_vch, s_vsb, s_vsh, s_vmb, s_vmh,
        s_vwb, s_vwh, s_mb)
    # the bulk's end: whole v1 tiles, or whole tensor-core tiles when the window's splits take the rest
    ALIGN: tl.constexpr = BLOCK_N if PART == 0 else NT
    packed_end = (n_vq // ALIGN) * ALIGN
    if split >= NUM_SPLITS - W_SPLITS:  # the last W_SPLITS splits share [packed_end, L) in whole 16-token tiles
        w = split - (NUM_SPLITS - W_SPLITS)
        wc = tl.cdiv(tl.cdiv(L - packed_end, W_SPLITS), BLOCK_N) * BLOCK_N
        lo = tl.minimum(packed_end + w * wc, L)
        hi = tl.minimum(lo + wc, L)
        bulk_end = lo
    else:  # the bulk splits: whole packed tiles
        lo = tl.minimum(split * chunk, packed_end)
        hi = tl.minimum(lo + chunk, packed_end)
        bulk_end = hi
    m_i = tl.full((QG,), float("-inf"), tl.float32)
    l_i = tl.zeros((QG,), tl.float32)
    # fp32 words a scratch row (packed: fp16 p; the tensor-core bulk keeps p in registers)
    PSTR: tl.constexpr = 0 if MMA else BT * QG // 2 if PACKED else BT * QG
    p_row = p_ptr + (pid_bh * P_ROWS + tl.minimum(split, P_ROWS - 1)) * PSTR
    if PART == 2:  # the window's splits: v1's tiles alone
        if RDOT:
            m_i, l_i = _rows16(m_i, QG), _rows16(l_i, QG)
            acc = tl.zeros((16, D), tl.float32)
        else:
            acc = tl.zeros((QG, D), tl.float32)
    elif MMA:
        bulk_end = lo + ((bulk_end - lo) // NT) * NT  # whole tiles (unmasked loads); v1's tiles take the rest
        m_i, l_i, acc = _bulk_gqa_mma(q_head, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr,
                                      s_kcw, s_ksg, s_kmg, s_mt, lo, bulk_end, qk_scale,
                                      QG, D, NT // 32, HAS_VALID, ASM, EARLY, PF, TAU)
        if RDOT:
            m_i, l_i, acc = _rows16(m_i, QG), _rows16(l_i, QG), _rows16(acc, QG)
    elif PACKED:
        m_i, l_i, acc = _bulk_gqa_packed(q_head, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr,
                                         p_row, s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, bulk_end,
                                         qk_scale, m_i, l_i, D, G, BW, HAS_VALID, NT, ASM, VDENSE)
    else:
        m_i, l_i, acc = _bulk_gqa(q_head, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_row,
                                  s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, bulk_end, qk_scale, m_i, l_i,
                                  magic, QG, D, G, BITS, BW, HAS_VALID, NT)
    # the rest of [lo, hi): v1's tiles with QG query rows (one straddling tile, the window, the key tail); none
    # in the bulk's own launch
    if PART != 1:
        m_i, l_i, acc = _rest_tiles(q, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
                                    s_kcw, s_ksg, s_kmg, s_ktt, s_vct, s_vst, s_vmt, s_vwt, s_mt, bulk_end, hi, L,
                                    n_kq, n_vq, m_i, l_i, acc, qk_scale, offs_d, d_ok, BITS, BITS, G, BLOCK_N, D, D,
                                    HAS_VALID, WIN, RDOT)
    rows = (pid_bh * NUM_SPLITS + split) * QG + g_i  # v1's workspace rows (M = QG)
    r_ok = g_i < QG
    tl.store(acc_ptr + rows[:, None] * D + offs_d[None, :], acc, mask=r_ok[:, None])
    tl.store(m_ptr + rows, m_i, mask=r_ok)
    tl.store(l_ptr + rows, l_i, mask=r_ok)
    pdl_wait(PDL_WAIT == 2)


def unsupported_gqa(query: torch.Tensor, state: KiviState) -> str | None:
    """Why the shared-dequantization kernel cannot run this call (None when it can); after v1's `_check`."""
    B, Hq, q, D = query.shape
    H = state.k_tail.shape[1]
    QG = Hq // H
    if q != 1 or QG not in (2, 4, 8):
        return f"it computes one query row for 2, 4 or 8 query heads a kv head (here Hq={Hq}, H={H}, q_len={q})"
    if D not in (64, 128) or state.k_bits != state.v_bits:
        return f"head_dim 64 or 128 and equal key / value bits only (here {D}, k{state.k_bits}v{state.v_bits})"
    return unit_inner_strides(query, state)


def packable_gqa(query: torch.Tensor, state: KiviState) -> bool:
    """Whether the fp16x2 pair path can run: k2v2, fp16 query and scales, 4 or 8 query heads a kv head (8: two
    programs a kv head, 4 query heads each)."""
    return ((state.k_bits, state.v_bits) == (2, 2) and query.dtype == torch.float16
            and query.shape[1] in (4 * state.k_tail.shape[1], 8 * state.k_tail.shape[1]))


# Below this many key tiles a call (batch x kv heads x tiles of PACKED_BLOCK_W x 16 tokens), v3 is faster: its
# 4-warp programs a query head put twice the warps in flight. H200, Llama-3.1-8B shape, GPU time from CUDA
# graphs (h200_round11c/variants_small.log), us, v3 / gqa, with the tiles: 1x512 20.5 / 33.9 (8); 1x4096
# 31.5 / 39.7 (64); 2x8192 36.9 / 44.8 (256); 1x32K 49.1 / 54.5 (512); 8x4096 61.7 / 53.3 (512); 2x32K 84.7
# / 73.3 (1024); 4x16K 84.6 / 71.2 (1024); 16x4096 103.4 / 93.3 (1024); at 512 tiles the two split.
MIN_TILES_GQA = 512


def gqa_beats_v3(batch: int, kv_heads: int, length: int, group: int = 4) -> bool:
    """Whether the pair path is the faster kernel for a call of this size (see MIN_TILES_GQA). 8 query heads a
    kv head (two programs a kv head) beat v3 at 512 tiles and above too: H200, Llama-3.1-70B shape (64/8), us,
    v3 / gqa: 1x32K 184 / 151 (graphs 81.5 / 71.2; 512 tiles), 8x32K 528 / 417, 64x4096 677 / 430, 128x4096
    1334 / 831 (benchmarks/results/h200_round12/bench_70b.log); smaller calls are not timed at 8 and take
    the same rule."""
    return group in (4, 8) and batch * kv_heads * -(-length // (PACKED_BLOCK_W * 16)) >= MIN_TILES_GQA


# The tensor-core bulk (decode_attention_gqa_mma.py): warps a program, register cap, split target and load
# order, from the H200 sweeps. Session 11 (benchmarks/results/h200_round20.md), us at 8x32K / 64x4096 /
# 128x4096 / 16x16K, Llama-3.1-8B (32/8): the pair path 228.6 / 242.3 / 450.0 / 229.3; one warp, every load of
# a tile first, no cap (255 registers, 8 programs an SM) 211.0 / 196.5 / 358.1 / 191.3; two warps with the
# value loads after the key MMAs at cap 168: 187.3 / 220.3 / 367.0 / 198.0. Session 12, with ~30% fewer
# instructions a tile (h200_round23, h200_round24; 8x32K / 64x4096 / 16x16K / 128x4096): one warp, no cap, the
# loads where ptxas puts them 142.7-147.0 / 173.6-202.7 / 167.1-170.4 / 298.5-299.6, every load first 153.6 /
# 180.6 / 177.5 / 309.7; caps 112-168 (10-18 programs an SM, no spills in the loop) ranged 129.9-233.5 on 8B
# but lost on 70B (64/8; 8x32K / 64x4096 / 128x4096: 183.2 / 287.4 / 577.8 at cap 128 against 152.4 / 198.6 /
# 343.1 uncapped) and at batch 1 (the window's split runs v1's tiles for 8 heads in one warp and spills:
# 1x32K 59.1 us from graphs at cap 128 against 45.9). Split targets 1024-4096 at cap 128 were no better
# than 2048 on the whole. Session 13, with the window's split on tensor cores (REST_DOT, below: no spills at
# 168 registers), h200_round26, us, uncapped / cap 168 / cap 128: 8B 8x32K 149.4 / 148.3 / 229.2, 64x4096
# 163.3 / 144.4 / 226.2, 16x16K 155.4 / 145.8 / 226.9, 128x4096 286.0 / 268.6 / 419.2; 70B 8x32K 145.7 /
# 150.6 / 227.6, 64x4096 161.6 / 149.7 / 227.1, 128x4096 280.9 / 275.6 / 418.0; batch 1 from graphs within
# 1 us of each other (8B 1x32K 43.3 / 43.0, 70B 42.1 / 43.4)
MMA_WARPS = 1
MAXNREG_GQA_MMA = 168
SPLIT_PROGRAMS_GQA_MMA = 2048
# ... and below it, sqrt(L / 2) splits in at most one wave of MMA_WAVE_PROGRAMS programs (9 an SM at 23 KB of
# shared memory: 1,188 on the H200). Session 14 (h200_round30, h200_round31), GPU time from CUDA graphs,
# Llama-3.1-8B, us at 64 / 128 / 256 / 512 tokens a split: 1x512 11.0 / 13.3 / 19.1 / 25.8, 1x2048 14.6 / 14.7 /
# 20.3 / 33.3, 1x4096 18.7 / 16.4 / 21.3 / 33.5, 1x8192 26.4 / 20.3 / 23.1 / 34.9, 2x16K 60.8 / 41.3 / 31.7 /
# 40.2, 1x32K 83.2 / 52.9 / 37.5 / 42.8 (fp16 SDPA 8.3 / 10.0 / 13.4 / 18.8 / 45.7 / 46.1; 70B alike): about
# 1.5 us a 32-token tile a split plus 0.13 us a split (the merge), least at sqrt(L / 2) splits while the
# programs fit a wave. Larger calls: one wave or two (eager, us, h200_round30: 8x32K at 16 / 18 / 24 / 32 / 36
# splits 142.7 / 141.5 / 175.4 / 148.3 / 145.0; 16x16K at 8 / 12 / 16 / 18 142.1 / 173.9 / 145.7 / 139.3;
# 128x4096 at 2 / 3 / 4 269.3 / 270.2 / 271.6). Before the window's split ran on tensor cores
# (h200_round22b), 512 tokens a split won at batch 1: that split was the critical path
MMA_WAVE_PROGRAMS = 1024
# ... where one wave holds fewer: h200_round32, from graphs, us, 64x4096 at 2 / 4 splits 142.7 / 139.6 (8B),
# 145.6 / 143.3 (70B); that rule's other rows there (auto / the 2048-program rule alone): 8B 8x32K 137.1 /
# 142.6, 16x16K 136.7 / 140.1, 128x4096 263.7 / 263.5 (2 splits both); 70B 8x32K 137.3 / 143.6, 128x4096 268.7 /
# 268.6
MMA_MIN_SPLITS = 4
# The window's tiles cost about this many bulk tokens a token: 1,496 (packed keys) and 431 (fp16 keys)
# instructions a 16-token tile on tensor cores against the bulk's 609 a 32-token tile (sm_90). H200, h200_round31,
# GPU time from graphs, Llama-3.1-8B at 256 tokens a bulk split, us at W = 1 / 2 (this rule) / 3 / 9 window
# programs a kv head: 1x512 21.5 / 19.1 / 19.3 / 19.4, 1x4096 22.7 / 21.3 / 21.4 / 21.7, 1x32K 38.4 / 37.5 / 37.5 /
# 38.0; at large batch the rule gives 1, and 2 / 3 cost 0.3-4% (eager, 8x32K 147.6 / 148.0 / 148.6, 128x4096
# 266.3 / 271.5 / 276.3)
WIN_TOKEN_COST = 3
# Whether its key MMAs wait for the value loads too (decode_attention_gqa_mma._after), so that a tile's loads issue
# together: it was the faster order in session 11, and 3-9% slower once the tile lost its address and mask
# instructions (above)
MMA_EARLY = False
# With the tensor-core bulk, the split with the value window and the key tail runs v1's dot-free tiles for its
# 4 or 8 query heads in the program's one warp: ~4,800 / ~3,500 instructions a 16-token tile of packed / fp16
# keys, with spills (sm_90, 8 heads, no cap), the critical path at batch 1 (1x32K: 46 us against fp16 SDPA's 46,
# 74 on 70B). REST_DOT runs those tiles on tensor cores (tl.dot, 16 query rows, fp16 k and v: 1,476 / 435
# instructions, no spills). H200, h200_round26, us, without / with it (uncapped): from graphs, 8B 1x32K 45.7 /
# 43.3, 2x16K 45.2 / 40.1, 1x8192 41.2 / 35.3; 70B 1x32K 73.5 / 42.1, 2x16K 73.7 / 39.5, 1x8192 67.5 / 34.5
# (fp16 SDPA 44.8 / 45.2 / 18.9); 8B 64x4096 178.2 / 163.3, 128x4096 307.9 / 286.0; 70B 64x4096 224.2 /
# 161.6, 128x4096 406.7 / 280.9; 8x32K 148.5 / 149.4 (8B), 160.7 / 145.7 (70B)
REST_DOT = True
# Measured and dropped (session 14, h200_round29): Triton's cp.async pipelining of the bulk's loop (2 / 3
# stages: the next tile copied into shared memory while one computes) took 8x32K from 146.1 to 352.3 / 339.7 us,
# 128x4096 from 265.3 to 663.1 / 669.8 (Llama-3.1-8B); the window's split in 1 / 2 stages (20 KB of shared memory
# instead of 23) moved within the run's noise (8x32K 146.7 / 146.8, 128x4096 263.1 / 263.1)
# Tiles ahead that the tensor-core bulk prefetches into L2 (decode_attention_gqa_mma._prefetch_lanes; 0: none).
# Without it a program has one tile's loads in flight (~3 KB against the ~30 KB an SM needs at ~1 us under load),
# and they wait for the last tile's MMAs. H200, GPU time from graphs, Llama-3.1-8B, us at 0 / 1 / 2 / 4 / 8 tiles
# ahead (h200_round33): 8x32K 137.2 / 110.5 / 111.9 / 116.5 / 138.9, 16x16K 136.6 / 110.3 / 112.0 / 116.5 / 138.2,
# 64x4096 139.1 / 123.7 / 125.7 / 131.8 / 143.0, 128x4096 263.0 / 222.3 / 225.7 / 234.7 / 270.8 (fp16 SDPA 252.0 /
# 250.6 / 251.5 / 487.6); at 0 / 1 / 2 / 3 (h200_round34): 1x4096 15.6 / 14.9 / 15.2 / 15.0, 1x8192 20.7 / 19.8 /
# 20.5 / 20.7, 2x16K 32.1 / 27.9 / 29.1 / 30.5, 1x32K 37.9 / 33.8 / 35.3 / 36.6, 4x8192 29.6 / 27.4 / 28.0 / 29.0,
# 8x4096 28.3 / 25.9 / 26.6 / 27.7. Farther ahead, a wave's prefetched lines crowd L2 (8 tiles: ~28 MB). The same
# prefetch in MHA's tensor-core bulk (a 256-token tile ahead) was 5-16% slower there (h200_round34: 8x32K 277.7
# against 322.8 us) and was removed
MMA_PREFETCH = 1
# The window's splits on a launch of their own after the bulk's (decode_attention_gqa(window_launch=), one 16-token
# tile a program), where the one-launch grid is held to one wave (MMA_WAVE_PROGRAMS) and a call has at least
# WINDOW_LAUNCH_MIN_HEADS (batch, kv head) pairs (`window_launch_pays`). The bulk's launch then has no v1 tiles, so no
# shared memory (23 KB a program held an SM to 9 of them, beside a ~28 KB L1): 12 fit at cap 168, and its splits fill
# MMA_WAVE_PROGRAMS_SEP. Nsight at 8x32K (Llama-3.1-8B, h200_round38 / round 39): one launch, 7.5 warps an SM at 3.97
# cycles an instruction each; the bulk alone at 24 splits, 10.1 warps at 5.04. H200, GPU time from graphs, us
# (h200_round39): 8x32K 110.7 one launch, 110.4 two at the same 16 splits, 102.1 two at 24; 64x4096 (its grid is
# 2 waves: not taken) 124.0 / 124.2; 128x4096 223.8 / 239.2; 1x32K 33.6 / 37.5, 2x16K 27.7 / 31.6 (the serial
# window launch costs ~4 us, so small calls keep one launch). Also measured in round 39 and dropped: the prefetch
# into L1 (prefetch.global.L1: no change, 8x32K 110.6 us, L1 hit rate 47.84% with and without), L1 and the tile after
# into L2 (112.0), two tiles ahead (112.8 with the window launch), cap 128 (16 programs an SM: 125.5 at 16 splits,
# 106.1 at 32)
WINDOW_LAUNCH = True
WINDOW_LAUNCH_TILES = 1
WINDOW_LAUNCH_MIN_HEADS = 64
# Lower caps, now that the bulk's loop holds no register moves (SASS: no spills at 152, 13 programs an SM), lose:
# h200_round47, us, 8x32K / 16x16K / 32x8192 at caps 144 / 152 / 160 / 168 and a wave of 12 an SM: 99.0 / 99.4 / 99.7 /
# 96.5, 101.1 / 101.6 / 101.8 / 98.9, 106.1 / 106.6 / 106.3 / 103.4; a wave of 13 or 14 an SM, 118-134 at 8x32K
MMA_WAVE_PROGRAMS_SEP = 1536  # 12 an SM (1,584 on the H200)
# With the window on its own launch the bulk runs whole waves of these (`mma_splits`): the fewest waves that give a kv
# head 2 splits, filled. Where one launch of the rule's splits ran more than a wave, the session-16 compact loads (each
# word of a group loaded once a warp, shuffled to its lanes; removed in session 18 after commit 60cf50e) won 2-5%; the
# whole waves win more. H200, GPU time from graphs, Llama-3.1-8B, us, compact one launch / the window's own launch at
# 2 / 3 / 4 splits (h200_round52, with PDL): 64x4096 115.3 / 112.3 / 106.8 / 112.6 (one wave at 3), 96x4096 172.4 /
# 157.5 / 167.1 / 156.7 (one at 2), 128x4096 209.6 / 220.8 / 205.2 / 205.1 (two at 3); the rule in round 53: 106.4,
# 156.2, 204.1 (70B 64x4096 119.2 -> 111.7, 128x4096 216.7 -> 216.6). Batch 1-4 keep one launch (h200_round52, with
# PDL too: 1x32K 31.6 / 35.5, 2x16K 26.1 / 32.1, 4x32K 57.5 / 59.3).
# Measured and dropped with the compact loads (session 17, h200_round44, commit daa3b63): more of the next tile a
# tile ahead in their registers, and the L2 prefetch skipping the lines so held. ptxas places those loads at the end of
# the tile, ~100 instructions before their use, so the prefetch is what hides their latency. 8x32K / 128x4096, us, at
# cap 184: prefetch of all 24 lines (the compact loads) 115.8 / 208.0; skipping the 12 key lines 125.7 / 223.9; the
# value words ahead too, prefetch of the 4 value scale / min lines 134.2 / 235.9; everything ahead, no prefetch 146.3 /
# 262.3 (caps 168 / 200 / 216: 131.4 / 134.3 / 137.4 and 315.0 / 239.0 / 225.5). Nsight on the last at 8x32K: DRAM
# 31.8%, L2 41.4%
# The bulk's softmax moves a head's running max (and rescales its sums and 32 accumulators) only where a tile's max
# passes it by more than this (log2 units, a warp-uniform branch; 0: every tile). The result is the same up to
# rounding, as the final sums and outputs share the max they were taken against, but its p reach 2^TAU, and the value
# MMAs' B is p * scale in fp16: 2 keeps that finite for value scales up to 16,376 (8 would for 256 only), and 2 / 4 / 8
# run alike (h200_round49, us: 8x32K 96.4 / 96.6 / 96.9, 16x16K 99.3 / 99.3 / 99.4, 32x8192 103.6 / 103.8 / 103.6,
# 1x32K 32.9 / 32.9 / 33.1; every tile 101.2, 103.3, 107.7, 33.3). A tile skips ~52 instructions for ~8 (a REDUX and
# the branch). H200, GPU time from graphs,
# Llama-3.1-8B, us, lazy / every tile (h200_round45): 8x32K 96.6 / 101.2, 16x16K 99.4 / 103.7, 32x8192 103.9 / 108.6,
# 4x32K 58.2 / 59.1, 1x32K 32.9 / 33.2; 70B 8x32K 98.3 / 102.3. (With the compact loads the branch cost more than it
# saved: 8x32K 126.7 / 107.2.)
MMA_LAZY_RESCALE = 2.0
# "auto" runs the tensor-core bulk wherever it maps (default_gqa_mma); the pair path keeps head_dim 64
GQA_MMA = True


@functools.lru_cache(maxsize=4096)
def mma_splits(batch_kv_heads: int, length: int, window_launch: bool = False) -> int:
    """The tensor-core bulk's splits a kv head. One launch: at most SPLIT_PROGRAMS_GQA_MMA programs; below that,
    sqrt(L / 2) splits, no more than one wave of MMA_WAVE_PROGRAMS programs, but at least MMA_MIN_SPLITS. With the
    window on a launch of its own: whole waves of MMA_WAVE_PROGRAMS_SEP programs, the fewest that give 2 splits a kv
    head, at most sqrt(L / 2) and a tile a split. Cached: it runs on every decode call's host path."""
    if window_launch:  # whole waves: the fewest that give 2 splits a kv head, filled (MMA_WAVE_PROGRAMS_SEP has why)
        waves = -(-2 * batch_kv_heads // MMA_WAVE_PROGRAMS_SEP)
        S = min(math.isqrt(length // 2), waves * MMA_WAVE_PROGRAMS_SEP // batch_kv_heads)
        return max(1, min(S, -(-length // (32 * MMA_WARPS))))
    S = da3.num_splits_v3(batch_kv_heads, length, 32 * MMA_WARPS, SPLIT_PROGRAMS_GQA_MMA)
    return max(1, min(S, max(MMA_MIN_SPLITS, min(math.isqrt(length // 2), MMA_WAVE_PROGRAMS // batch_kv_heads))))


@functools.lru_cache(maxsize=4096)
def window_launch_pays(batch_kv_heads: int, length: int) -> bool:
    """Whether a default tensor-core call runs the window's splits on a launch of their own (WINDOW_LAUNCH)."""
    return WINDOW_LAUNCH and batch_kv_heads >= WINDOW_LAUNCH_MIN_HEADS


def window_splits(chunk: int, span: int, mma: bool) -> int:
    """Programs a kv head for the window region (`span` tokens: the value window and the key tail) where the bulk
    runs splits of `chunk` tokens: as many as make a window program no longer than a bulk one (the pair paths:
    one)."""
    if not mma:
        return 1
    return max(1, -(-WIN_TOKEN_COST * span // chunk))


def window_programs(chunk: int, span: int, mma: bool, window_launch: bool, win_splits: int | None = None) -> int:
    """The window region's programs a kv head as a call launches them: `win_splits` if given, else one 16-token tile
    a program on the window's own launch (WINDOW_LAUNCH_TILES) or `window_splits`; never more than its tiles."""
    W = win_splits or (-(-span // (WINDOW_LAUNCH_TILES * DEFAULT_BLOCK_N)) if window_launch else
                       window_splits(chunk, span, mma))
    return min(W, max(1, -(-span // DEFAULT_BLOCK_N)))


def unmappable_gqa_mma(query: torch.Tensor, state: KiviState, scaling: float) -> str | None:
    """Why the tensor-core bulk cannot run this call (None when it can)."""
    B, Hq, _, D = query.shape
    QG = Hq // state.k_tail.shape[1]
    if ((state.k_bits, state.v_bits) != (2, 2) or query.dtype != torch.float16 or D != 128
            or state.group_size != 32 or QG not in (4, 8)):
        return (f"it maps k2v2 fp16, head_dim 128, G = 32 with 4 or 8 query heads a kv head (here "
                f"k{state.k_bits}v{state.v_bits} {query.dtype}, head_dim {D}, G = {state.group_size}, {QG} heads)")
    if not scaling > 0:
        return f"its softmax scales the maxima, so scaling must be > 0 (here {scaling})"
    if query.stride(0) % 2 or query.stride(1) % 2 or query.data_ptr() % 4:
        return (f"it loads the query's head rows as fp16 pairs, which must start on 4-byte boundaries (here strides "
                f"{query.stride()[:2]}, address mod 4 = {query.data_ptr() % 4})")
    for name, t in (("k_scale", state.k_scale), ("k_min", state.k_min)):
        if t.numel() > 0 and (t.stride(2) % 2 or t.data_ptr() % 4):
            return (f"it loads {name} rows as fp16 pairs, which must start on 4-byte boundaries (here row stride "
                    f"{t.stride(2)}, address mod 4 = {t.data_ptr() % 4})")
    dense = (D // 16, D // state.group_size, D // state.group_size)
    for name, t, want in zip(("v_codes", "v_scale", "v_min"), (state.v_codes, state.v_scale, state.v_min), dense):
        if t.numel() > 0 and t.stride(2) != want:
            return (f"it takes dense value rows ({name} rows {want} elements apart, here {t.stride(2)}: "
                    f"pass .contiguous() tensors)")
    return None


def default_gqa_mma(query: torch.Tensor, state: KiviState, scaling: float) -> bool:
    """Whether a call without tuning keywords runs the tensor-core bulk."""
    return GQA_MMA and unmappable_gqa_mma(query, state, scaling) is None


def decode_attention_gqa(query: torch.Tensor, state: KiviState, valid: torch.Tensor | None, scaling: float, *,
                         num_splits: int | None = None, block_w: int | None = None, num_warps: int | None = None,
                         lens: torch.Tensor | None = None, win: int = 0, max_len: int = 0,
                         maxnreg: int | None = None, packed: bool | None = None,
                         mma: bool | None = None, mma_early: bool | None = None,
                         rest_dot: bool | None = None, win_splits: int | None = None,
                         mma_prefetch: int | None = None, window_launch: bool | None = None) -> torch.Tensor:
    """Launch the shared-dequantization GQA kernel (the caller has run `_check` and `unsupported_gqa`).
    `packed`: the fp16x2 pair path (k2v2, fp16, 4 or 8 query heads a kv head); None: wherever it can run
    (`packable_gqa`; as v3's `default_packed`, fp16 inputs keep its products in range). `mma`: the
    tensor-core bulk (`decode_attention_gqa_mma.py`; k2v2, fp16, head_dim 128, G = 32, 4 or 8 query heads a kv
    head, scaling > 0); None: `default_gqa_mma`. `mma_early`: its key MMAs wait for the tile's value loads too
    (None: MMA_EARLY). `rest_dot`: with it, the split with the value window and the key tail runs v1's tiles on
    tensor cores (16 query rows, fp16 products) instead of CUDA cores (None: REST_DOT). `win_splits`: programs a
    kv head that share the value window and the key tail, a whole number of 16-token tiles each (None:
    `window_splits`; on the window's own launch, WINDOW_LAUNCH_TILES 16-token tiles a program). `mma_prefetch`:
    tiles ahead the tensor-core bulk prefetches into L2, 0 for none (None: MMA_PREFETCH). `window_launch`: the
    tensor-core bulk's window splits on a launch of their own, after the bulk's (whole tensor-core tiles, no shared
    memory; None: `window_launch_pays`).
    Tuning keywords (benchmarks and tests): num_splits, block_w (key word rows a tile), num_warps (the pair
    path: one thread an element by default, 2 x block_w / 32; mma: MMA_WARPS, a key group a warp), maxnreg."""
    s = state
    asked = mma is not None  # an explicit request is checked below; default_gqa_mma has checked its own
    if not asked:
        mma = block_w is None and packed is None and default_gqa_mma(query, s, scaling)
    if win_splits is not None and (not isinstance(win_splits, int) or win_splits < 1):
        raise ValueError(f"win_splits={win_splits!r}: the window's programs a kv head are an integer >= 1")
    if mma_prefetch is not None and (not isinstance(mma_prefetch, int) or mma_prefetch < 0):
        raise ValueError(f"mma_prefetch={mma_prefetch!r}: tiles ahead to prefetch are an integer >= 0 (0: none)")
    if window_launch and not mma:
        raise ValueError("window_launch=True splits the tensor-core bulk's launch; pass mma=True or drop it")
    if mma_prefetch and not mma:
        raise ValueError(f"mma_prefetch={mma_prefetch}: only the tensor-core bulk prefetches; pass mma=True or drop it")
    if mma and asked:
        why = unmappable_gqa_mma(query, s, scaling)
        if why is not None:
            raise ValueError(f"mma=True cannot run this call: {why}; use mma=False")
        if block_w is not None:
            raise ValueError(f"block_w={block_w}: the tensor-core bulk takes a key group a warp (set num_warps)")
    if packed is None:
        packed = packable_gqa(query, s) and not mma
    B, Hq, _, D = query.shape
    QG = Hq // s.k_tail.shape[1]
    REP = 2 if QG == 8 and not mma else 1  # programs a kv head: the pair path runs 8 heads as two groups of 4
    QG //= REP
    H = s.k_tail.shape[1] * REP  # program heads
    L = max_len if lens is not None else s.length
    out = torch.empty((B, 1, Hq, D), device=query.device, dtype=query.dtype)
    if L == 0 or B == 0:
        return out.zero_()
    if packed and not packable_gqa(query, s):
        raise ValueError(f"packed=True computes k2v2 fp16 with 4 or 8 query heads a kv head (here "
                         f"k{s.k_bits}v{s.v_bits} {query.dtype}, {Hq // s.k_tail.shape[1]} heads); use packed=False")
    if mma and packed:
        raise ValueError("packed=True and mma=True name two different bulks: pick one")
    if mma:
        nw = num_warps or MMA_WARPS
        BW = 2 * nw  # a key group (2 word rows) a warp
    else:
        BW = block_w or (PACKED_BLOCK_W if packed else DEFAULT_BLOCK_W)
    if BW < 1 or BW & (BW - 1):
        raise ValueError(f"block_w={BW} must be a power of two")
    if mma:
        NT = 32 * nw
    elif packed:  # value lanes = key elements (two a word row), one a thread by default
        NT = 2 * BW
        if NT % (4 * D // 16):
            raise ValueError(f"packed: block_w={BW} must be at least {2 * D // 16} (a value row's 4 x {D // 16} "
                             "lanes)")
        nw = num_warps or max(1, NT // 32)
    else:
        nw = num_warps or DEFAULT_WARPS
        NT = 32 * nw
    if NT % (2 * D // (32 // s.v_bits)):
        raise ValueError(f"num_warps={nw}: a step's {NT} threads must cover whole value rows")
    BT = BW * (32 // s.k_bits)
    sep = bool(mma) and (window_launch_pays(B * H, L) if window_launch is None else bool(window_launch))
    if mma and num_splits is None:
        num_splits = mma_splits(B * H, L, sep)
    S, chunk = splits_v3(B * H, L, BT, DEFAULT_BLOCK_N, num_splits,  # bulk splits + the window's (S >= 2)
                         programs=SPLIT_PROGRAMS_GQA if packed else da3.SPLIT_PROGRAMS)
    align = NT if sep else DEFAULT_BLOCK_N  # the bulk's end: whole tensor-core tiles on its own launch
    # the window region [packed_end, L): exact here; on the static path at most the ring plus a straddling tile
    span = min(L, win + align) if lens is not None else L - (s.n_vq // align) * align
    W = window_programs(chunk, span, bool(mma), sep, win_splits)
    P = S - 1  # bulk splits (a p scratch row each)
    S += W - 1
    n = B * H * S * QG  # partial rows
    pstr = 0 if mma else BT * QG // 2 if packed else BT * QG  # fp32 words of p scratch a program (packed: fp16 p)
    ws = torch.empty((n * (D + 2) + B * H * P * pstr,), device=query.device, dtype=torch.float32)
    acc_ws, m_ws, l_ws, p_ws = ws.split((n * D, n, n, B * H * P * pstr))  # one call: four slices cost ~3x
    mask = valid.view(torch.uint8) if valid is not None else None

    def ptr(t):  # an empty segment is never read: give Triton a live pointer
        return t if t.numel() > 0 else query

    def st(t):
        return t.stride()[:3] if t.numel() > 0 else (0, 0, 0)

    vdense = (s.v_codes.numel() > 0 and s.v_codes.stride(2) == D // 16 and s.v_scale.stride(2) == D // s.group_size
              and s.v_min.stride(2) == D // s.group_size)

    def launch(splits, split0, part, wait):
        _decode_attn_gqa_kernel[(B * H, splits)](
            query, ptr(s.k_codes), ptr(s.k_scale), ptr(s.k_min), ptr(s.k_tail),
            ptr(s.v_codes), ptr(s.v_scale), ptr(s.v_min), ptr(s.v_win), mask if mask is not None else query,
            lens if lens is not None else query,
            acc_ws, m_ws, l_ws, p_ws,
            H, L, s.n_kq, s.n_vq, chunk, scaling * _LOG2E, 0x4B000000,
            query.stride(0), query.stride(1),
            *st(s.k_codes), *st(s.k_scale), *st(s.k_min), *st(s.k_tail),
            *st(s.v_codes), *st(s.v_scale), *st(s.v_min), *st(s.v_win),
            *(mask.stride() if mask is not None else (0, 0)),
            S, P, W, split0,
            QG=QG, D=D, G=s.group_size, BITS=s.k_bits, BW=BW, BLOCK_N=DEFAULT_BLOCK_N, HAS_VALID=valid is not None,
            NT=NT, DEV_LENS=lens is not None, WIN=win, PACKED=packed, ASM=not _interpreting(), VDENSE=vdense,
            num_warps=nw, REP=REP, MMA=bool(mma), EARLY=MMA_EARLY if mma_early is None else bool(mma_early),
            RDOT=bool(mma) and (REST_DOT if rest_dot is None else bool(rest_dot)),
            PF=(MMA_PREFETCH if mma_prefetch is None else mma_prefetch) if mma else 0,
            PART=part, TAU=float(MMA_LAZY_RESCALE) if mma else 0.0,
            PDL=dep, PDL_WAIT=wait,
            **({"maxnreg": maxnreg or (MAXNREG_GQA_MMA if mma else MAXNREG)}
               if query.device.type == "cuda" else {}), **launch_kw(wait > 0),
        )

    dep = pdl_launch(query.device)  # each launch starts as the one before finishes (kernels/pdl.py)
    first = 1 if dep and _pdl.PDL_FIRST else 0
    if sep:  # the bulk's splits without v1's tiles, then the window's
        launch(P, 0, 1, first)
        launch(W, P, 2, 2 if dep else 0)
    else:
        launch(S, 0, 0, first)
    _decode_attn_reduce_kernel[(B * H, QG)](
        acc_ws, m_ws, l_ws, out, H, S, out.stride(0), out.stride(1), out.stride(2), out.stride(3),
        GROUP=QG, QLEN=1, D=D, DP=D, SC=MERGE_SPLITS, PDL=dep, num_warps=1, **launch_kw(dep),
    )
    return out


def workspace_bytes(batch: int, kv_heads: int, group: int, length: int, head_dim: int,
                    packed: bool = True, mma: bool = False, window: int = 143) -> int:
    """Device memory one default call allocates besides its output: split partials (a row a query head) + p
    scratch (a row a bulk program: the tile's p for its query heads, fp16 on the pair path; none on the
    tensor-core bulk, `mma`). `window`: tokens from the last whole packed value tile to the end (the value
    window and the key tail; R = 128: 128-143), which the tensor-core bulk's window programs share."""
    if mma:  # a program a kv head, a key group a warp
        sep = window_launch_pays(batch * kv_heads, length)
        S, chunk = splits_v3(batch * kv_heads, length, 32 * MMA_WARPS, DEFAULT_BLOCK_N,
                             mma_splits(batch * kv_heads, length, sep))
        if sep:  # its window region ends the bulk at whole tensor-core tiles: up to 16 tokens more
            window += 16
        W = window_programs(chunk, window, True, sep)
        return batch * kv_heads * (S - 1 + W) * group * (head_dim + 2) * 4
    if group == 8:  # two programs a kv head, 4 query heads each
        kv_heads, group = kv_heads * 2, 4
    BT = (PACKED_BLOCK_W if packed else DEFAULT_BLOCK_W) * 16
    S, _ = splits_v3(batch * kv_heads, length, BT, DEFAULT_BLOCK_N,
                     programs=SPLIT_PROGRAMS_GQA if packed else da3.SPLIT_PROGRAMS)
    pstr = BT * group // 2 if packed else BT * group
    return (batch * kv_heads * S * group * (head_dim + 2) + batch * kv_heads * (S - 1) * pstr) * 4
