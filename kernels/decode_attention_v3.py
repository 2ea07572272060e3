"""KIVI decode attention, v3: one query row a program (one-token decode, MHA or GQA) on CUDA cores, scales folded.

Same contract and oracle as v1 (`decode_attention.py`, torch twin `decode_attention_ref`); reached
through `decode_attention_triton` ("auto" runs it on every one-token decode call it supports, "v3" forces it).
GQA runs a program a query head; the QG query heads of a kv head read its bytes, from L2 after the first.

Why (SASS compiled for sm_90 without a GPU, counted per loop by `benchmarks/kernel_sass.py`): v1 spends
~12 instructions per K/V element in its main loop, most of them moving the dequantized tile through
shared memory into tensor-core operand layout, and for one query row the MMA does nothing useful (15 of
its 16 rows are padding). v3 keeps only the arithmetic:

  * Scales are folded into the other operand instead of dequantizing codes:
      keys   s[t]   = sum_d (q_d * sk[g(t), d]) * c[t, d] + sum_d q_d * mk[g(t), d]
      values out[d] = sum_t (p_t * sv[t, g(d)]) * c[t, d] + sum_t p_t * mv[t, g(d)]
    so a code costs one FFMA; the scale products are per (group, channel) or per (token, group).
  * Code -> float without I2F: (word & mask_j) | bits(2^23) is 2^23 + c_j * 2^(b*j) exactly, so one
    LOP3 + one FADD. The 2^23 pattern is a run-time argument: as an immediate, each LOP3 needed its
    mask in a register too (one MOV per code, 67 of 313 instructions in the key loop).
  * Every tile is laid out so that Triton's default layouts line up and nothing crosses lanes inside
    a loop (no shuffles, no shared-memory layout conversions):
      - keys: a thread owns one key word row (16 tokens at 2 bits) of a BW-row tile and walks all D
        channels, 4 at a time (one 16-byte load), into a [cpw, BW] score tile: the sum over channels is
        a chain of FFMAs in one thread, and the code index j lives in its registers;
      - the tile's probabilities go through a small global scratch (L1/L2-resident, one row per
        program), so that values can be walked in a different thread mapping;
      - values: a thread owns 4 consecutive words of the flattened [rows, D / cpw] code block (one
        16-byte load; rows are contiguous), accumulating into [cpv, 4, threads] that is reduced over
        rows once, at the end.
  * The window and key tail (<= R + 16 tokens, fp16) run as a split of their own, in v1's 16-token
    tiles, in parallel with the packed tiles.
Key loop ~3.9, value loop ~4.4 instructions an element (round 3: 5.0 and 6.7, plus per-tile shuffles).

The packed path (`packed`, default for k2v2 with fp16 inputs: `default_packed`) does the per-code
arithmetic in fp16x2 pairs with inline PTX (`_pairs_asm`): one LOP3 + 2 HFMA2 per two codes (the first
HFMA2 turns the magic-number pair into the codes, the second multiplies by the fp16 factor), 8-term fp16
sums added to fp32 once. Values run one word column a thread over 8 rows a step (so the pairs sum tokens),
with p * scale folded once per (token, group) into the scratch row, whole steps unmasked. SASS per tile
element: ~2.3 instructions (key loop 328, value loop 268 a 128-element step) vs 4.5 for the fp32 path;
under the interpreter its fp32 twin (`_dot16_ref`) runs the same tiles. Measured numbers:
`benchmarks/results/h200_v3_round7.md` (rounds 5-6: `h200_v3_round5.md`, `h200_v3_round6.md`; round 4:
`h200_v3_round4.md`, rounds 1-3: `h200_v3.md`); Nsight Compute finds the kernel latency-bound (54% of
cycles wait on global loads).
"""

from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from kivi_core.state import KiviState

from .decode_attention import (
    _LOG2E,
    MERGE_SPLITS,
    _attend,
    _decode_attn_reduce_kernel,
    _load_fp,
    _load_k_packed,
    _load_v_packed,
    _head_ptrs,
    _step_lens,
    _interpreting,
    _win_rows,
)
from .decode_attention_mma import _bulk_mma
from . import pdl as _pdl
from .host_math import cdiv
from .pdl import launch_kw, pdl_launch, pdl_trigger, pdl_wait


@triton.jit
def _code_x(words, j, magic, BITS: tl.constexpr):
    # Code j of each word times 2^(b*(j mod H)), exactly, as fp32, for H = 20 // b codes (10 at b = 2):
    # (bits & (mask << b*j)) | bits(2^23) is 2^23 + c * 2^(b*j) as long as the code sits below bit 23,
    # so subtracting 2^23 is exact: 1 LOP3 + 1 FADD an element (integer ops issue at half rate on
    # sm_90, so this beats shift + mask). `magic` is bits(2^23) = 0x4B000000 passed at run time: a LOP3
    # takes one immediate, and the mask is that one. Codes at or above bit 20 come from the word shifted once
    # (j is a per-register constant after layout: the select and the shift fold / CSE away).
    H: tl.constexpr = 20 // BITS
    QMAX: tl.constexpr = (1 << BITS) - 1
    hi = j >= H
    src = tl.where(hi, words >> (H * BITS), words)
    jj = tl.where(hi, j - H, j)
    x = (src & (QMAX << (jj * BITS))) | magic
    return x.to(tl.float32, bitcast=True) - 8388608.0


def _pairs_asm(n: int, half: bool = False) -> str:
    """PTX for `_dot16`: n words w_m of 16 2-bit codes, n factors s_m (fp32, or fp16 with `half`), 16 fp32
    accumulators f_j (tied): f_j += sum_m code_j(w_m) * s_m, the n-term sums in fp16x2 pairs, added to
    fp32 once. Codes j and j + 8 sit at bits 2j and 16 + 2j, so (w & (3 << 2j) * 0x10001) | 0x64006400 is
    the fp16 pair x = 1024 + c * 4^j (exact while 2j + 1 < 10; codes 5..7 come from w >> 10). One HFMA2
    x * 4^-j - 1024 * 4^-j gives c exactly (for j = 0, HSUB2 x - 1024), then HFMA2 with s_m: LOP3 + 2
    HFMA2 a pair and one s_m pair a word. Round 5 subtracted 1024 only and scaled s_m by 4^-j instead, 4
    HMUL2 a word more (SASS: key loop 350 -> 328 instructions a step)."""
    lines = ["{", ".reg .b32 k, x, wh, q0, a<8>, r<5>, z<5>;", ".reg .b16 h<2>;", ".reg .f32 t<2>;",
             "mov.b32 k, 0x64006400;"]  # fp16 pair 1024
    # pairs 4^-j and -1024 * 4^-j (j = 1..4)
    lines += [f"mov.b32 r{j}, {v:#x};" for j, v in ((1, 0x34003400), (2, 0x2C002C00), (3, 0x24002400),
                                                     (4, 0x1C001C00))]
    lines += [f"mov.b32 z{j}, {v:#x};" for j, v in ((1, 0xDC00DC00), (2, 0xD400D400), (3, 0xCC00CC00),
                                                     (4, 0xC400C400))]
    for m in range(n):
        if half:
            lines.append(f"mov.b32 q0, {{${16 + n + m}, ${16 + n + m}}};")
        else:
            lines += [f"cvt.rn.f16.f32 h0, ${16 + n + m};", "mov.b32 q0, {h0, h0};"]
        lines.append(f"shr.b32 wh, ${16 + m}, 10;")
        for j in range(8):
            src, jj = (f"${16 + m}", j) if j < 5 else ("wh", j - 5)
            lines.append(f"lop3.b32 x, {src}, {0x00030003 << (2 * jj):#x}, k, 0xEA;")
            lines.append("sub.rn.f16x2 x, x, k;" if jj == 0 else f"fma.rn.f16x2 x, x, r{jj}, z{jj};")
            lines.append(f"mul.rn.f16x2 a{j}, x, q0;" if m == 0 else f"fma.rn.f16x2 a{j}, x, q0, a{j};")
    for j in range(8):
        lines += [f"mov.b32 {{h0, h1}}, a{j};", "cvt.f32.f16 t0, h0;", "cvt.f32.f16 t1, h1;",
                  f"add.f32 ${j}, ${j}, t0;", f"add.f32 ${j + 8}, ${j + 8}, t1;"]
    lines.append("}")
    return "\n".join(lines)


# 8 words a call: fp16 pair sums of 8 terms, flushed to fp32 once per call (0.25 instructions an element).
# fp32 factors (keys: q * scale) or fp16 ones (values: u, stored fp16).
_PAIRS_SRC = {half: _pairs_asm(8, half) for half in (False, True)}


@triton.constexpr_function
def _pairs_src(factor_dtype):
    return _PAIRS_SRC[factor_dtype == tl.float16]


@triton.constexpr_function
def _pairs_constraints(factor_dtype):
    half = factor_dtype == tl.float16
    return ",".join(["=f"] * 16 + ["r"] * 8 + ["h" if half else "f"] * 8 + [str(i) for i in range(16)])


@triton.jit
def _dot16(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7,
           f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15):
    # f_j += sum_m code_j(w_m) * s_m over 8 words of 16 2-bit codes, in fp16x2 pairs (_pairs_asm)
    return tl.inline_asm_elementwise(
        _pairs_src(s0.dtype), _pairs_constraints(s0.dtype),
        [w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7,
         f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15],
        (tl.float32,) * 16, True, 1)


@triton.jit
def _c2(w, J: tl.constexpr):
    return ((w >> (2 * J)) & 3).to(tl.float32)


@triton.jit
def _f32(s0, s1, s2, s3, s4, s5, s6, s7):
    return (s0.to(tl.float32), s1.to(tl.float32), s2.to(tl.float32), s3.to(tl.float32), s4.to(tl.float32),
            s5.to(tl.float32), s6.to(tl.float32), s7.to(tl.float32))


@triton.jit
def _dot16_ref(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7,
               f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15):
    # _dot16 in fp32 (the interpreter cannot run PTX): the same contract, so CI runs the packed path's
    # tiles, joins and thread mapping; only the fp16 pair arithmetic is GPU-tested
    s0, s1, s2, s3, s4, s5, s6, s7 = _f32(s0, s1, s2, s3, s4, s5, s6, s7)
    f0 += (_c2(w0, 0) * s0 + _c2(w1, 0) * s1 + _c2(w2, 0) * s2 + _c2(w3, 0) * s3
           + _c2(w4, 0) * s4 + _c2(w5, 0) * s5 + _c2(w6, 0) * s6 + _c2(w7, 0) * s7)
    f1 += (_c2(w0, 1) * s0 + _c2(w1, 1) * s1 + _c2(w2, 1) * s2 + _c2(w3, 1) * s3
           + _c2(w4, 1) * s4 + _c2(w5, 1) * s5 + _c2(w6, 1) * s6 + _c2(w7, 1) * s7)
    f2 += (_c2(w0, 2) * s0 + _c2(w1, 2) * s1 + _c2(w2, 2) * s2 + _c2(w3, 2) * s3
           + _c2(w4, 2) * s4 + _c2(w5, 2) * s5 + _c2(w6, 2) * s6 + _c2(w7, 2) * s7)
    f3 += (_c2(w0, 3) * s0 + _c2(w1, 3) * s1 + _c2(w2, 3) * s2 + _c2(w3, 3) * s3
           + _c2(w4, 3) * s4 + _c2(w5, 3) * s5 + _c2(w6, 3) * s6 + _c2(w7, 3) * s7)
    f4 += (_c2(w0, 4) * s0 + _c2(w1, 4) * s1 + _c2(w2, 4) * s2 + _c2(w3, 4) * s3
           + _c2(w4, 4) * s4 + _c2(w5, 4) * s5 + _c2(w6, 4) * s6 + _c2(w7, 4) * s7)
    f5 += (_c2(w0, 5) * s0 + _c2(w1, 5) * s1 + _c2(w2, 5) * s2 + _c2(w3, 5) * s3
           + _c2(w4, 5) * s4 + _c2(w5, 5) * s5 + _c2(w6, 5) * s6 + _c2(w7, 5) * s7)
    f6 += (_c2(w0, 6) * s0 + _c2(w1, 6) * s1 + _c2(w2, 6) * s2 + _c2(w3, 6) * s3
           + _c2(w4, 6) * s4 + _c2(w5, 6) * s5 + _c2(w6, 6) * s6 + _c2(w7, 6) * s7)
    f7 += (_c2(w0, 7) * s0 + _c2(w1, 7) * s1 + _c2(w2, 7) * s2 + _c2(w3, 7) * s3
           + _c2(w4, 7) * s4 + _c2(w5, 7) * s5 + _c2(w6, 7) * s6 + _c2(w7, 7) * s7)
    f8 += (_c2(w0, 8) * s0 + _c2(w1, 8) * s1 + _c2(w2, 8) * s2 + _c2(w3, 8) * s3
           + _c2(w4, 8) * s4 + _c2(w5, 8) * s5 + _c2(w6, 8) * s6 + _c2(w7, 8) * s7)
    f9 += (_c2(w0, 9) * s0 + _c2(w1, 9) * s1 + _c2(w2, 9) * s2 + _c2(w3, 9) * s3
           + _c2(w4, 9) * s4 + _c2(w5, 9) * s5 + _c2(w6, 9) * s6 + _c2(w7, 9) * s7)
    f10 += (_c2(w0, 10) * s0 + _c2(w1, 10) * s1 + _c2(w2, 10) * s2 + _c2(w3, 10) * s3
            + _c2(w4, 10) * s4 + _c2(w5, 10) * s5 + _c2(w6, 10) * s6 + _c2(w7, 10) * s7)
    f11 += (_c2(w0, 11) * s0 + _c2(w1, 11) * s1 + _c2(w2, 11) * s2 + _c2(w3, 11) * s3
            + _c2(w4, 11) * s4 + _c2(w5, 11) * s5 + _c2(w6, 11) * s6 + _c2(w7, 11) * s7)
    f12 += (_c2(w0, 12) * s0 + _c2(w1, 12) * s1 + _c2(w2, 12) * s2 + _c2(w3, 12) * s3
            + _c2(w4, 12) * s4 + _c2(w5, 12) * s5 + _c2(w6, 12) * s6 + _c2(w7, 12) * s7)
    f13 += (_c2(w0, 13) * s0 + _c2(w1, 13) * s1 + _c2(w2, 13) * s2 + _c2(w3, 13) * s3
            + _c2(w4, 13) * s4 + _c2(w5, 13) * s5 + _c2(w6, 13) * s6 + _c2(w7, 13) * s7)
    f14 += (_c2(w0, 14) * s0 + _c2(w1, 14) * s1 + _c2(w2, 14) * s2 + _c2(w3, 14) * s3
            + _c2(w4, 14) * s4 + _c2(w5, 14) * s5 + _c2(w6, 14) * s6 + _c2(w7, 14) * s7)
    f15 += (_c2(w0, 15) * s0 + _c2(w1, 15) * s1 + _c2(w2, 15) * s2 + _c2(w3, 15) * s3
            + _c2(w4, 15) * s4 + _c2(w5, 15) * s5 + _c2(w6, 15) * s6 + _c2(w7, 15) * s7)
    return f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15


@triton.jit
def _pairs16(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7,
             f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, ASM: tl.constexpr):
    # _dot16 on the GPU, its fp32 twin under the interpreter
    if ASM:
        return _dot16(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7,
                      f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15)
    else:
        return _dot16_ref(w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7,
                          f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15)


@triton.jit
def _join16(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15):
    # 16 [N] tensors -> [N, 16] with column j = f_j (in-thread: joins add minor dimensions)
    a0 = tl.join(tl.join(tl.join(tl.join(f0, f8), tl.join(f4, f12)), tl.join(tl.join(f2, f10), tl.join(f6, f14))),
                 tl.join(tl.join(tl.join(f1, f9), tl.join(f5, f13)), tl.join(tl.join(f3, f11), tl.join(f7, f15))))
    return tl.reshape(a0, (f0.shape[0], 16))  # joins nest j's bits 8, 4, 2, 1 from the outside in


@triton.jit
def _code_unscale(j, BITS: tl.constexpr):
    # 2^-(b * (j mod H)): undoes _code_x's positional factor (applied after the sum over D or tokens)
    H: tl.constexpr = 20 // BITS
    jj = tl.where(j >= H, j - H, j)
    return tl.exp2(-(jj * BITS).to(tl.float32))


@triton.jit
def _split4(t):
    # [N, 4] -> its 4 columns as [N] tensors (in-thread when the 4 sit in one thread), order 0, 2, 1, 3
    a, b = tl.split(tl.reshape(t, (t.shape[0], 2, 2)))
    c0, c2 = tl.split(a)
    c1, c3 = tl.split(b)
    return c0, c2, c1, c3


@triton.jit
def _bulk(q_ptr, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_ptr,
          s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt,
          lo, end, qk_scale, m_i, l_i, acc, cpm, magic,
          D: tl.constexpr, DP: tl.constexpr, G: tl.constexpr, K_BITS: tl.constexpr, V_BITS: tl.constexpr,
          BW: tl.constexpr, VR: tl.constexpr, HAS_VALID: tl.constexpr, UK: tl.constexpr):
    # Tiles of BW key word rows (BW * cpw tokens) from lo, masked at end (all of [lo, end) has K and V
    # packed). Keys: thread = word row, channels 4 at a time (UK steps unrolled, so UK 16-byte loads are
    # in flight: 2 vs 1 is 582 vs 765 us at 64x4096). p goes to this program's scratch row, then values
    # are walked VR rows a step (4 words a thread).
    CPWK: tl.constexpr = 32 // K_BITS
    CPWV: tl.constexpr = 32 // V_BITS
    BT: tl.constexpr = BW * CPWK
    DW: tl.constexpr = D // CPWV
    VN: tl.constexpr = VR * DW // 4  # value words a step: 4 consecutive ones a thread
    f = tl.arange(0, VN)[None, :] * 4 + tl.arange(0, 4)[:, None]  # [4, VN] flat word index of the step
    r_of = f // DW
    g_of = ((f % DW) * CPWV) // G
    r_of1 = (tl.arange(0, VN)[None, :] * 4) // DW  # the thread's row: its 4 words share it
    g_of1 = ((tl.arange(0, VN)[None, :] * 4 % DW) * CPWV) // G
    GPT: tl.constexpr = (4 * CPWV + G - 1) // G  # scale groups in a thread's 4 value words
    jk = tl.arange(0, CPWK)
    jv = tl.arange(0, CPWV)
    offs_c = tl.arange(0, 4)
    tok_l = tl.arange(0, BW)[None, :] * CPWK + jk[:, None]  # [CPWK, BW]: the tile's token w*cpw + j
    uk = _code_unscale(jk, K_BITS)[:, None]
    for start in range(lo, end, BT):
        rows_w = (start // CPWK + tl.arange(0, BW)).to(tl.int64)
        w_ok = rows_w * CPWK < end
        gk = (rows_w * CPWK) // G
        sacc = tl.zeros((CPWK, BW), tl.float32)
        base = tl.zeros((BW, 4), tl.float32)
        for dc in tl.range(0, D, 4, loop_unroll_factor=UK):
            qc = tl.load(q_ptr + dc + offs_c).to(tl.float32)[None, :]
            kw = tl.load(kc_ptr + rows_w[:, None] * s_kcw + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0)
            sk = tl.load(ks_ptr + gk[:, None] * s_ksg + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0.0).to(tl.float32)
            mk = tl.load(km_ptr + gk[:, None] * s_kmg + (dc + offs_c)[None, :], mask=w_ok[:, None],
                         other=0.0).to(tl.float32)
            base += qc * mk
            w0, w1, w2, w3 = _split4(kw)
            s0, s1, s2, s3 = _split4(qc * sk)
            sacc += _code_x(w0[None, :], jk[:, None], magic, K_BITS) * s0[None, :]
            sacc += _code_x(w1[None, :], jk[:, None], magic, K_BITS) * s1[None, :]
            sacc += _code_x(w2[None, :], jk[:, None], magic, K_BITS) * s2[None, :]
            sacc += _code_x(w3[None, :], jk[:, None], magic, K_BITS) * s3[None, :]
        s = (sacc * uk + tl.sum(base, axis=1)[None, :]) * qk_scale  # [CPWK, BW]
        tok = start + tok_l
        t_ok = tok < end
        if HAS_VALID:
            t_ok = t_ok & (tl.load(valid_ptr + tok * s_mt, mask=t_ok, other=0) != 0)
        s = tl.where(t_ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(tl.max(s, axis=0), axis=0))  # in-thread over j first: 1 tree, not 16
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe)
        l_i = l_i * alpha + tl.sum(tl.sum(p, axis=0), axis=0)
        m_i = m_new
        acc = acc * alpha
        cpm = cpm * alpha
        tl.debug_barrier()  # the previous tile's p reads are done
        tl.store(p_ptr + tok_l, p)
        tl.debug_barrier()
        n_t = tl.minimum(end - start, BT)
        for r0 in range(0, n_t, VR):
            r_ok = r0 + r_of < n_t
            r_ok1 = r0 + r_of1 < n_t
            pv = tl.load(p_ptr + r0 + r_of1, mask=r_ok1, other=0.0)  # [1, VN]: one row a thread
            vw = tl.load(vc_ptr + (start + r0) * s_vct + f, mask=r_ok, other=0)  # rows contiguous
            rows1 = (start + r0 + r_of1).to(tl.int64)
            if GPT == 1:
                sv = tl.load(vs_ptr + rows1 * s_vst + g_of1, mask=r_ok1, other=0.0).to(tl.float32)
                mv = tl.load(vm_ptr + rows1 * s_vmt + g_of1, mask=r_ok1, other=0.0).to(tl.float32)
            else:
                rows_t = (start + r0 + r_of).to(tl.int64)
                sv = tl.load(vs_ptr + rows_t * s_vst + g_of, mask=r_ok, other=0.0).to(tl.float32)
                mv = tl.load(vm_ptr + rows_t * s_vmt + g_of, mask=r_ok, other=0.0).to(tl.float32)
            acc += _code_x(vw[None, :, :], jv[:, None, None], magic, V_BITS) * (pv * sv)[None, :, :]
            cpm += pv * mv
    return m_i, l_i, acc, cpm


@triton.jit
def _split8(t):
    # [N, 8] -> its 8 columns as [N] tensors (in-thread), in a fixed order (apply it to both operands)
    a, b = tl.split(tl.reshape(t, (t.shape[0], 4, 2)))
    c0, c1, c2, c3 = _split4(a)
    c4, c5, c6, c7 = _split4(b)
    return c0, c1, c2, c3, c4, c5, c6, c7


@triton.jit
def _vrow(vb, ub, k: tl.constexpr, RS: tl.constexpr, s_vct, NG: tl.constexpr, r, n_t, MASK: tl.constexpr):
    # row r + k RS of a value step: its code word and u = p * scale (fp16 until used: half the
    # registers), from the step's base pointers; with MASK, 0 past the tile's end. A constant offset
    # (s_vct constexpr: dense rows) lands in the load's immediate
    if MASK:
        ok = r + k * RS < n_t
        return (tl.load(vb + k * RS * s_vct, mask=ok, other=0),
                tl.load(ub + k * RS * NG, mask=ok, other=0.0))
    else:
        return tl.load(vb + k * RS * s_vct), tl.load(ub + k * RS * NG)


@triton.jit
def _vrows8(vc_ptr, u_ptr, s_vct, start, r, RS: tl.constexpr, n_t, col, gcol, NG: tl.constexpr,
            MASK: tl.constexpr):
    # the 8 rows r, r + RS, ..., r + 7 RS of one value step: one base pointer a step for the words and
    # one for u (the tile's scratch); 32-bit offsets (a head's rows x words stay far below 2^31): int64
    # ones cost ~15 instructions a row
    vb = vc_ptr + ((start + r) * s_vct + col)
    ub = u_ptr + (r * NG + gcol)
    v0, u0 = _vrow(vb, ub, 0, RS, s_vct, NG, r, n_t, MASK)
    v1, u1 = _vrow(vb, ub, 1, RS, s_vct, NG, r, n_t, MASK)
    v2, u2 = _vrow(vb, ub, 2, RS, s_vct, NG, r, n_t, MASK)
    v3, u3 = _vrow(vb, ub, 3, RS, s_vct, NG, r, n_t, MASK)
    v4, u4 = _vrow(vb, ub, 4, RS, s_vct, NG, r, n_t, MASK)
    v5, u5 = _vrow(vb, ub, 5, RS, s_vct, NG, r, n_t, MASK)
    v6, u6 = _vrow(vb, ub, 6, RS, s_vct, NG, r, n_t, MASK)
    v7, u7 = _vrow(vb, ub, 7, RS, s_vct, NG, r, n_t, MASK)
    return v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7


@triton.jit
def _kload8(kc_ptr, ks_ptr, km_ptr, rows_w, gk, w_ok, s_kcw, s_ksg, s_kmg, dc, offs_c):
    # one key step of the packed path: 8 channels' code words, scales and mins (fp16) of a thread's word row
    kw = tl.load(kc_ptr + rows_w[:, None] * s_kcw + (dc + offs_c)[None, :], mask=w_ok[:, None], other=0)
    sk = tl.load(ks_ptr + gk[:, None] * s_ksg + (dc + offs_c)[None, :], mask=w_ok[:, None], other=0.0)
    mk = tl.load(km_ptr + gk[:, None] * s_kmg + (dc + offs_c)[None, :], mask=w_ok[:, None], other=0.0)
    return kw, sk, mk


@triton.jit
def _bulk_packed(q_ptr, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_ptr,
                 s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt,
                 lo, end, qk_scale, m_i, l_i,
                 D: tl.constexpr, G: tl.constexpr, BW: tl.constexpr, HAS_VALID: tl.constexpr, NT: tl.constexpr,
                 ASM: tl.constexpr, UF: tl.constexpr, VDENSE: tl.constexpr):
    # _bulk at k2v2 with the per-code arithmetic in fp16x2 pairs (_dot16, 8 words a call). Keys: the same
    # tiles and thread mapping (a thread = a word row, 8 channels a step; its 16 token scores are 16 [BW]
    # accumulators). Values: a thread = one word column over 8 rows a step, so the pairs sum 8 tokens
    # before the fp32 accumulators. The query is scaled by qk_scale first: fp16 products stay small.
    DW: tl.constexpr = D // 16
    RS: tl.constexpr = NT // DW  # rows a step per row slot (8 slots)
    offs_c = tl.arange(0, 8)
    offs_t = tl.arange(0, NT)
    col = offs_t % DW
    rt = offs_t // DW
    gcol = (col * 16) // G
    tok_l = tl.arange(0, BW)[:, None] * 16 + tl.arange(0, 16)[None, :]  # [BW, 16]: token w*16 + j
    z = tl.zeros((NT,), tl.float32)
    g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = \
        z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
    NG: tl.constexpr = D // G
    cpm = tl.zeros((NG,), tl.float32)  # sum of p * min, a channel group each
    if VDENSE:
        vstride = DW
    else:
        vstride = s_vct
    u_ptr = (p_ptr + 16 * BW).to(tl.pointer_type(tl.float16))  # after the tile's p: u, [token, group] fp16
    for start in range(lo, end, 16 * BW):
        rows_w = (start // 16 + tl.arange(0, BW)).to(tl.int64)
        w_ok = rows_w * 16 < end
        gk = (rows_w * 16) // G
        y = tl.zeros((BW,), tl.float32)
        f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15 = \
            y, y, y, y, y, y, y, y, y, y, y, y, y, y, y, y
        base = tl.zeros((BW, 8), tl.float32)
        for dc in range(0, D, 8):
            qc = tl.load(q_ptr + dc + offs_c).to(tl.float32)[None, :] * qk_scale
            kw, sk, mk = _kload8(kc_ptr, ks_ptr, km_ptr, rows_w, gk, w_ok, s_kcw, s_ksg, s_kmg, dc, offs_c)
            sk = sk.to(tl.float32)
            base += qc * mk.to(tl.float32)
            w0, w1, w2, w3, w4, w5, w6, w7 = _split8(kw)
            s0, s1, s2, s3, s4, s5, s6, s7 = _split8(qc * sk)
            f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15 = _pairs16(
                w0, w1, w2, w3, w4, w5, w6, w7, s0, s1, s2, s3, s4, s5, s6, s7,
                f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15, ASM)
        s = _join16(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15) \
            + tl.sum(base, axis=1)[:, None]  # [BW, 16], scaled
        tok = start + tok_l
        t_ok = tok < end
        if HAS_VALID:
            t_ok = t_ok & (tl.load(valid_ptr + tok * s_mt, mask=t_ok, other=0) != 0)
        s = tl.where(t_ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(tl.max(s, axis=1), axis=0))  # in-thread over j first
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe)
        l_i = l_i * alpha + tl.sum(tl.sum(p, axis=1), axis=0)
        m_i = m_new
        g0, g1, g2, g3, g4, g5, g6, g7 = g0 * alpha, g1 * alpha, g2 * alpha, g3 * alpha, g4 * alpha, g5 * alpha, \
            g6 * alpha, g7 * alpha
        g8, g9, g10, g11, g12, g13, g14, g15 = g8 * alpha, g9 * alpha, g10 * alpha, g11 * alpha, g12 * alpha, \
            g13 * alpha, g14 * alpha, g15 * alpha
        tl.debug_barrier()  # the previous tile's reads are done
        tl.store(p_ptr + tok_l, p)
        tl.debug_barrier()
        n_t = tl.minimum(end - start, 16 * BW)
        # values' scale and min are per (token, channel group): fold them once a (token, group) here, in a
        # flat pass, so the value loop reads its word and one fp16 factor a row (not p, scale, min: 4 loads)
        # UF x NG (token, group) pairs a thread a pass: a pass is one round trip to memory (DEFAULT_UFOLD
        # has the measurements)
        cg = tl.zeros((NT * NG * UF,), tl.float32)
        for e0 in range(0, n_t * NG, NT * NG * UF):
            e = e0 + tl.arange(0, NT * NG * UF)
            t = e // NG
            ok = t < n_t
            pt = tl.load(p_ptr + t, mask=ok, other=0.0)
            x = (start + t) * s_vst + e % NG
            sv = tl.load(vs_ptr + x, mask=ok, other=0.0).to(tl.float32)
            mv = tl.load(vm_ptr + x, mask=ok, other=0.0).to(tl.float32)
            tl.store(u_ptr + e, (pt * sv).to(tl.float16), mask=ok)
            cg += pt * mv
        cpm = cpm * alpha + tl.sum(tl.reshape(cg, (NT * UF, NG)), axis=0)  # one cross-thread sum a tile
        tl.debug_barrier()
        # whole steps unmasked, then at most one masked step; with VDENSE (value rows DW words apart) the
        # row stride is a constant, so a step's 8 row addresses are one base + immediates. SASS (sm_90):
        # value loop 339 -> 268 instructions a step (strided rows: 284)
        n_full = (n_t // (8 * RS)) * (8 * RS)
        for r0 in range(0, n_full, 8 * RS):
            v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7 = _vrows8(
                vc_ptr, u_ptr, vstride, start, r0 + rt, RS, n_t, col, gcol, NG, False)
            g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = _pairs16(
                v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7,  # fp16 into the asm
                g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15, ASM)
        if n_full < n_t:
            v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7 = _vrows8(
                vc_ptr, u_ptr, vstride, start, n_full + rt, RS, n_t, col, gcol, NG, True)
            g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15 = _pairs16(
                v0, v1, v2, v3, v4, v5, v6, v7, u0, u1, u2, u3, u4, u5, u6, u7,
                g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15, ASM)
    out = _join16(g0, g1, g2, g3, g4, g5, g6, g7, g8, g9, g10, g11, g12, g13, g14, g15)  # [NT, 16]
    gsel = (tl.arange(0, DW) * 16 // G)[:, None] == tl.arange(0, NG)[None, :]
    out = tl.sum(tl.reshape(out, (RS, DW, 16)), axis=0) + tl.sum(tl.where(gsel, cpm[None, :], 0.0), axis=1)[:, None]
    return m_i, l_i, tl.reshape(out, (1, D))  # channel dw * 16 + i


@triton.jit
def _rest_tiles(q, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
                s_kcw, s_ksg, s_kmg, s_ktt, s_vct, s_vst, s_vmt, s_vwt, s_mt, start0, hi, L, n_kq, n_vq,
                m_i, l_i, acc, qk_scale, offs_d, d_ok,
                K_BITS: tl.constexpr, V_BITS: tl.constexpr, G: tl.constexpr, BLOCK_N: tl.constexpr,
                D: tl.constexpr, DP: tl.constexpr, HAS_VALID: tl.constexpr, WIN: tl.constexpr,
                USE_DOT: tl.constexpr = False):
    # the rest of a split's [start0, hi) after its bulk tiles, for query rows q [R, DP] (v3: one; the GQA
    # kernel: a program's query heads): v1's dot-free tiles, at most one straddling packed tile, then the
    # fp16 key tail with the value window. USE_DOT: tensor-core tiles in q's dtype (R >= 16 rows) instead.
    pos_r = tl.zeros_like(m_i).to(tl.int32) + L - 1
    kq_end = tl.minimum(hi, n_kq)
    CDT: tl.constexpr = q.dtype if USE_DOT else tl.float32
    for start in range(start0, kq_end, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        k = _load_k_packed(kc_ptr, ks_ptr, km_ptr, s_kcw, 1, s_ksg, 1, s_kmg, 1,
                           start, kq_end, offs_d, d_ok, K_BITS, G, BLOCK_N, DP, CDT)
        v_q = _load_v_packed(vc_ptr, vs_ptr, vm_ptr, s_vct, 1, s_vst, 1, s_vmt, 1,
                             offs_n, offs_n < n_vq, D, V_BITS, G, BLOCK_N, DP, CDT)
        v_f = _load_fp(vw_ptr, s_vwt, 1, _win_rows(offs_n, n_vq, WIN), (offs_n >= n_vq) & (offs_n < kq_end),
                       offs_d, d_ok, CDT)
        v = tl.where((offs_n < n_vq)[:, None], v_q, v_f)
        m_i, l_i, acc = _attend(q, k, v, offs_n, kq_end, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, False, "ieee", False, USE_DOT)
    for start in range(tl.maximum(start0, n_kq), hi, BLOCK_N):
        offs_n = start + tl.arange(0, BLOCK_N)
        n_ok = offs_n < hi
        k = _load_fp(kt_ptr, s_ktt, 1, offs_n - n_kq, n_ok, offs_d, d_ok, CDT)
        v = _load_fp(vw_ptr, s_vwt, 1, _win_rows(offs_n, n_vq, WIN), n_ok, offs_d, d_ok, CDT)
        m_i, l_i, acc = _attend(q, k, v, offs_n, hi, pos_r, valid_ptr, s_mt, m_i, l_i, acc, qk_scale,
                                HAS_VALID, False, "ieee", False, USE_DOT)
    return m_i, l_i, acc


@triton.jit
def _decode_attn_v3_kernel(
    q_ptr, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr, lens_ptr,
    acc_ptr, m_ptr, l_ptr, out_ptr, p_ptr,
    H, QG, L, n_kq, n_vq, chunk, qk_scale, magic,
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
    NUM_SPLITS, P_ROWS,
    D: tl.constexpr, DP: tl.constexpr, G: tl.constexpr, K_BITS: tl.constexpr, V_BITS: tl.constexpr,
    BW: tl.constexpr, VR: tl.constexpr, UK: tl.constexpr, BLOCK_N: tl.constexpr, HAS_VALID: tl.constexpr,
    SINGLE: tl.constexpr, SPLIT_REM: tl.constexpr, PACKED: tl.constexpr, ASM: tl.constexpr,
    UF: tl.constexpr, VDENSE: tl.constexpr, NUM_WARPS_C: tl.constexpr, MMA: tl.constexpr, MMA_SH: tl.constexpr,
    SDENSE: tl.constexpr,
    DEV_LENS: tl.constexpr, WIN: tl.constexpr, PDL: tl.constexpr, PDL_WAIT: tl.constexpr,
):
    # launched as a dependent of what ran before (kernels/pdl.py): wait before the first load, and before letting the
    # merge's launch start, so no later launch of the call runs ahead of what ran before
    pdl_wait(PDL_WAIT)
    pdl_trigger(PDL)
    L, n_kq, n_vq = _step_lens(lens_ptr, L, n_kq, n_vq, DEV_LENS)
    # Innermost strides are 1 (the launcher checks), which lets Triton vectorize every load.
    pid_bh = tl.program_id(0).to(tl.int64)
    split = tl.program_id(1)
    b = pid_bh // H
    h = pid_bh % H  # query head; its kv head is h // QG (GQA: QG query heads a kv head, each its own program)
    CPWV: tl.constexpr = 32 // V_BITS
    BT: tl.constexpr = BW * (32 // K_BITS)
    offs_d = tl.arange(0, DP)
    d_ok = offs_d < D
    q = tl.load(q_ptr + b * s_qb + h * s_qh + offs_d * s_qd, mask=d_ok, other=0.0).to(tl.float32)
    kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr = _head_ptrs(
        b, h // QG, kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
        s_kcb, s_kch, s_ksb, s_ksh, s_kmb, s_kmh, s_ktb, s_kth, s_vcb, s_vch, s_vsb, s_vsh, s_vmb, s_vmh,
        s_vwb, s_vwh, s_mb)
    packed_end = (n_vq // BLOCK_N) * BLOCK_N
    if SPLIT_REM:  # the last split holds [packed_end, L) alone; the others only whole packed tiles
        if split == NUM_SPLITS - 1:
            lo = packed_end
            hi = L
            bulk_end = lo
        else:
            lo = tl.minimum(split * chunk, packed_end)
            hi = tl.minimum(lo + chunk, packed_end)
            bulk_end = hi
    else:
        lo = split * chunk  # chunk is a multiple of BT
        hi = tl.minimum(lo + chunk, L)
        bulk_end = tl.maximum(lo, tl.minimum(hi, packed_end))
    m_b = tl.max(tl.full((1,), float("-inf"), tl.float32), axis=0)
    l_b = tl.sum(tl.zeros((1,), tl.float32), axis=0)
    # fp32 words a scratch row (= _scratch_words): p, and packed the fp16 u = p * scale; none with MMA_SH
    PSTR: tl.constexpr = 0 if MMA_SH else BT + (BT * (D // G) + 1) // 2 if PACKED else BT
    p_row = p_ptr + (pid_bh * P_ROWS + tl.minimum(split, P_ROWS - 1)) * PSTR  # this program's scratch
    if MMA:
        m_b, l_b, acc = _bulk_mma(q_ptr + b * s_qb + h * s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr,
                                  valid_ptr, p_row, s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt,
                                  lo, bulk_end, qk_scale, m_b, l_b, D, G, NUM_WARPS_C, MMA, HAS_VALID, ASM, UF, VDENSE,
                                  MMA_SH, SDENSE)
    elif PACKED:
        m_b, l_b, acc = _bulk_packed(q_ptr + b * s_qb + h * s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr,
                                     valid_ptr, p_row, s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt,
                                     lo, bulk_end, qk_scale, m_b, l_b, D, G, BW, HAS_VALID, NUM_WARPS_C * 32, ASM,
                                     UF, VDENSE)
    else:
        VN: tl.constexpr = VR * (D // CPWV) // 4
        acc3 = tl.zeros((CPWV, 4, VN), tl.float32)  # [code i, flat word]: reduced over rows once at the end
        cpm = tl.zeros((4, VN), tl.float32)
        m_b, l_b, acc3, cpm = _bulk(q_ptr + b * s_qb + h * s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr,
                                    vm_ptr, valid_ptr, p_row, s_kcw, s_ksg,
                                    s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, bulk_end, qk_scale, m_b, l_b, acc3, cpm,
                                    magic, D, DP, G, K_BITS, V_BITS, BW, VR, HAS_VALID, UK)
        jv = tl.arange(0, CPWV)
        gsum = tl.sum(tl.reshape(tl.permute(acc3, (0, 2, 1)), (CPWV, VR, D // CPWV)), axis=1)  # [i, dw]
        cps = tl.sum(tl.reshape(tl.trans(cpm), (VR, D // CPWV)), axis=0)  # [dw]: p * min, one group per word
        out_b = gsum * _code_unscale(jv, V_BITS)[:, None] + cps[None, :]
        acc = tl.reshape(tl.trans(out_b), (1, DP))  # [i, dw] -> channel dw * cpw + i
    m_i = tl.zeros((1,), tl.float32) + m_b
    l_i = tl.zeros((1,), tl.float32) + l_b

    # -- the rest of [lo, hi): v1's tiles (dot-free), at most one straddling tile + window + tail --
    m_i, l_i, acc = _rest_tiles(q[None, :], kc_ptr, ks_ptr, km_ptr, kt_ptr, vc_ptr, vs_ptr, vm_ptr, vw_ptr, valid_ptr,
                                s_kcw, s_ksg, s_kmg, s_ktt, s_vct, s_vst, s_vmt, s_vwt, s_mt, bulk_end, hi, L,
                                n_kq, n_vq, m_i, l_i, acc, qk_scale, offs_d, d_ok, K_BITS, V_BITS, G, BLOCK_N, D, DP,
                                HAS_VALID, WIN)

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


def unit_inner_strides(query: torch.Tensor, state: KiviState) -> str | None:
    """Why the query or a state tensor lacks innermost stride 1 (None when all have it): v3 and the GQA kernel
    index the channel axis without a stride."""
    for name in ("k_codes", "k_scale", "k_min", "k_tail", "v_codes", "v_scale", "v_min", "v_win"):
        t = getattr(state, name)
        if t.numel() and t.stride(3) != 1:
            return f"state.{name} has innermost stride {t.stride(3)} (needs 1)"
    if query.stride(3) != 1:
        return f"query has innermost stride {query.stride(3)} (needs 1)"
    return None


def unsupported_v3(query: torch.Tensor, state: KiviState) -> str | None:
    """Why v3 cannot run this call (None when it can). Callers have run v1's `_check` already."""
    B, Hq, q, D = query.shape
    H = state.k_tail.shape[1]
    if Hq % H or q != 1:
        return f"v3 computes one query row a query head, over its kv head (here Hq={Hq}, H={H}, q_len={q})"
    if D not in (64, 128):
        return f"v3 keeps a value row's {D} channels in registers: head_dim 64 or 128 only"
    why = unit_inner_strides(query, state)
    if why is not None:
        return why
    cpw = 32 // state.v_bits
    if state.v_codes.numel() and state.v_codes.stride(2) != D // cpw:
        return f"state.v_codes rows are not contiguous (stride {state.v_codes.stride(2)}; v3 reads rows as one run)"
    return None


# Round 4 (H200, Llama-2 shape k2v2, benchmarks/results/h200_v3_round4.md), BW x warps / unroll / cap:
#   128 x 4 / 2 / 128 regs: 64x4096 527 us, 8x32K 511, 128x4096 1031, 16x16K 473 (v3 round 3: 1298,
#   1290, 2525, 1377). Without the cap (167 regs): 582, 516, 1145, 544; unroll 1: 765, 657, 1507, 668;
#   64 x 2: 547, 534, 1058, 629; 256 x 8: 943, 699, 1868, 735; window / tail tiles of 32 tokens (more
#   registers): 733, 653, 1446, 655; the window / tail in the last bulk program instead of a split of
#   its own: 617, 518, 1177, 566.
DEFAULT_BLOCK_W, DEFAULT_WARPS, DEFAULT_UNROLL, MAXNREG, DEFAULT_BLOCK_N = 128, 4, 2, 128, 16
# Round 5 (h200_v3_round5/sweep/), packed path, us at 8x32K / 64x4096 / 128x4096 / 16x16K / 1x32K: cap 128
# (118 regs, 4 programs an SM) 477 / 484 / 942 / 435 / 93; cap 96 (5 programs; ~10 spill ops a tile, none
# in the inner loops) 447 / 457 / 884 / 434 / 94. Values loaded a step ahead (prefetch=2) at cap 128: 453 /
# 469 / 912 / 417 / 89 (ptxas moves half the loads late to stay under the cap); both loops a step ahead at
# 168 regs: 467 / 512 / 1001 / 471 / 84; Triton's async-copy pipelining of the key loop (key_stages 3):
# 493 / 508 / 984 / 452 / 93; 8 warps x 256-row tiles: 448 / 583 / 1155 / 464 / 97. The prefetch and
# key_stages options lost at cap 96 too (h200_engine_round5/variants_caps.log) and were removed after
# commit 67cf731; ptxas sinks a step-ahead load to the loop's end whenever registers are tight.
# Round 6-7 (h200_v3_round6/, h200_v3_round7/), same rows, tried and removed: value accumulators parked in
# the scratch row during the key phase (acc_in_scratch, cap 96 / 80 / 72): 477 / 532 / 1001, 487 / 542 /
# 1016, 464 / 525 / 955 (default 412 / 467 / 882); key and value code tiles through TMA descriptors,
# pipelined 2 / 3 / 4 / 6 deep: 419 / 481 / 909, 530 / 570 / 1087, 412 / 477 / 902, 420 / 487 / 921;
# 8 consecutive value rows a thread with u in one 16-byte load (urows): 441 / 492 / 931. Nsight Compute
# on the TMA kernel still showed 56% of warp cycles on L1TEX scoreboard stalls: the code tiles are not the
# only latency on the critical path (p and u cross global scratch between the phases). The TMA and urows
# code is in commit 0ce0694. Fewer instructions a step (_pairs_asm's fold, fp16 u, unmasked value steps;
# h200_v3_round7/final/): 373 / 427 / 807 (was 412 / 467 / 882). The scaled query written once a program
# to the scratch row and read back each key step (25 fewer key-loop instructions) was slower anyway:
# 390 / 445 / 843 (h200_v3_round7/qscratch/; commit d0fb350, reverted): its reads probably go to L2,
# where the query's own loads hit L1 (not profiled).
# Round 8 (h200_v3_round8.md; code in commits 958a651 and 28735cf), not shipped: the u fold done in the key
# phase by the thread holding p (no p in scratch, one barrier less), fp16 key factors, 16-term fp16 sums in
# both loops (SASS: key 328 -> 270, value 268 -> 241 instructions a step), cap 128: 373 / 416 / 775 us
# against this kernel's 373 / 426 / 803 in the same run, 1x32K 102-118 vs 102-153 us; but the lean
# engine's KIVI-2 step at b278 x 4096 took 87.8 ms (twice, also at cap 96: 90.5) against this kernel's
# 69.7 in the same call. Likely cause (SASS, kernel_sass.py nodiv=s_vsh,s_vmh): the engine's value rows
# (3967 a head) leave the scale head strides without 16-divisibility, so its key-phase fold's 16-byte loads
# became 128 scalar ones a tile (this kernel's flat fold loads scalars anyway). The static stores now pad
# value rows to 16 (kivi_core.static.VALUE_ROW_ALIGN); next: round 8 in the engine again, interleaved.
MAXNREG_PACKED = 96
# The packed path's u fold (p x value scale, a tile's (token, group) pairs) takes 2 x NG pairs a thread a
# pass (_bulk_packed): 3-5% faster than 1 on every benchmark row. H200, us at 8x32K / 64x4096 for 1 / 2 /
# 4 / 8: 415 / 467, 396 / 451, 407 / 460, 543 / 586 before this round's instruction cuts
# (h200_v3_round7/ufold/; at 8 the pass's registers overflow the cap); 393 / 444, 373 / 426, 379 / 431
# after them (final/variants.log).
DEFAULT_UFOLD = 2


MAXNREG_MMA = 128
# The tensor-core bulk's default shape: one block of 8 key word rows a warp, 2 warps (256-token tiles, 8
# programs an SM at cap 128). H200, Llama-2 shape, us at 8x32K / 64x4096 / 128x4096 / 16x16K / 1x32K
# (benchmarks/results/h200_round13b/variants.log; the packed path: 366.7 / 423.7 / 799.3 / 368.4 / 64.7):
# 2 warps 350.5 / 397.3 / 747.2 / 358.9 / 94.0; 4 warps 418.9 / 489.6 / 923.1 / 426.7 / 89.2; two blocks a
# warp (mma=2), 2 warps at cap 168: 402.8 / 439.6 / 846.0 / 405.4 / 83.1, 4 warps: 427.7 / 510.2 / 955.2 /
# 441.7 / 111.2. Before each block's loads were issued at once (eight dependent steps), 4 warps ran 444.9 /
# 517.9 / 976.1 / 456.3 (h200_round13/variants.log). Tried and removed (commit 63fd33f; h200_round13f/): a
# tile loading the u fold's scales and mins (pf1), and also its value code words (pf2), before its key
# phase, 2 warps, us at 8x32K / 64x4096 / 128x4096: pf1 466.8 / 518.2 / 988.3 (cap 168: 396.5 / 434.0 /
# 818.7), pf2 670.9 / 718.5 / 1386.7 (cap 168: 477.4 / 509.7 / 969.9; cap 255: 373.3 / 433.4 / 817.9),
# against 351.4 / 398.4 / 749.5: the held registers spill at cap 128 and cost programs above it.
MMA_WARPS = 2
# The tensor-core bulk's value operand by shuffles from the key lanes (`mma_shfl`; no scratch row, fold pass
# or barrier a tile; a running max a warp), at cap MAXNREG_MMA_SH with the split rule aiming at
# SPLIT_PROGRAMS_MMA_SH programs. H200, Llama-2 shape, us at 8x32K / 64x4096 / 128x4096 / 16x16K
# (benchmarks/results/h200_round15/variants.log): scratch row (cap 128, 4096 programs) 355.2 / 401.6 / 776.1 /
# 363.4; shuffles at cap 128 350.4 / 398.5 / 747.9 / 358.7, 144: 352.8 / 398.0 / 742.1 / 355.0, 168: 289.8 /
# 337.7 / 630.9 / 292.6, 184: 348.8 / 409.7 / 769.5 / 354.7, 200: 352.9 / 413.8 / 777.3 / 359.6 (168 is the
# last cap without a big spill: 22 spill loads a block; it leaves 6 programs an SM); at 168 with half the
# splits 283.0 / 329.1 / 629.2 / 285.9, with twice 306.4 / 352.4 / 641.9 / 310.6. One warp at cap 184:
# 350.7 / 380.7 / 726.9 / 355.2. Around the default (h200_round17/variants.log): 286.7 / 332.2 / 644.2 / 289.6;
# cap 160 290.4 / 337.8 / 650.5 / 294.3, 176 331.6 / 395.1 / 764.9 / 339.5; one warp at 168 355.1 / 373.3 /
# 657.7 / 357.5.
MMA_SHFL = True
MAXNREG_MMA_SH = 168
SPLIT_PROGRAMS_MMA_SH = 2048
# At and above this many (batch, head) programs a call "auto" runs the tensor-core bulk: measured faster
# than the packed path at 256 (8x32K) and more; slower at 32 (1x32K, 94.0 vs 64.7 us: fewer, longer
# programs), between the two not measured.
MMA_MIN_PROGRAMS = 256


def default_mma(query: torch.Tensor, state: KiviState) -> bool:
    """Whether a default v3 call runs the tensor-core bulk (MMA_MIN_PROGRAMS has the measurements)."""
    B, Hq = query.shape[:2]
    return mma_unsupported(query, state) is None and B * Hq >= MMA_MIN_PROGRAMS


def mma_unsupported(query: torch.Tensor, state: KiviState) -> str | None:
    """Why the tensor-core bulk cannot run this call (None when it can)."""
    D = query.shape[-1]
    if (state.k_bits, state.v_bits) != (2, 2) or query.dtype != torch.float16:
        return f"it computes k2v2 fp16 only (here k{state.k_bits}v{state.v_bits} {query.dtype})"
    if D != 128 or state.group_size != 32:
        return f"it maps head_dim 128 in groups of 32 onto its tiles (here {D}, G={state.group_size})"
    return None


def default_packed(query: torch.Tensor, state: KiviState) -> bool:
    """The fp16x2 path where it is exact enough and measured faster: k2v2 with fp16 inputs (the products
    q * scale and p * scale are then fp16-sized by construction; bf16 ranges could overflow fp16). H200,
    8x32K: 470 vs 510 us (benchmarks/results/h200_v3_round5/)."""
    return (state.k_bits, state.v_bits) == (2, 2) and query.dtype == torch.float16


def decode_attention_v3(query: torch.Tensor, state: KiviState, valid: torch.Tensor | None, scaling: float, *,
                        num_splits: int | None = None, block_w: int | None = None, num_warps: int | None = None,
                        lens: torch.Tensor | None = None, win: int = 0, max_len: int = 0,
                        maxnreg: int | None = None, unroll: int | None = None, split_rem: bool = True,
                        block_n: int | None = None, packed: bool | None = None,
                        ufold: int | None = None, mma: int | None = None,
                        mma_shfl: bool | None = None) -> torch.Tensor:
    """Launch v3 (caller: `decode_attention_triton`, which has checked the call and `unsupported_v3`).
    Tuning keywords (benchmarks and tests): block_w, num_warps, num_splits, unroll, maxnreg, split_rem,
    block_n; `packed` the fp16x2 path (None: `default_packed`); `ufold` the packed path's u-fold pass
    width (power of two; None: DEFAULT_UFOLD); `mma` the tensor-core bulk with that many blocks of 8 key
    word rows a warp a tile (1 or 2; 0: off; `decode_attention_mma.py`: k2v2, fp16, head_dim 128, G = 32;
    None: `default_mma` where no tuning keyword is given, with MMA_WARPS warps); `mma_shfl` its value
    operand by shuffles from the key lanes instead of the scratch row (mma=1; None: MMA_SHFL)."""
    s = state
    if mma is None:  # before `packed` resolves: a tuning keyword keeps the path it names
        mma = int(block_w is None and num_warps is None and packed is None and scaling > 0 and default_mma(query, s))
        num_warps = MMA_WARPS if mma else num_warps
    elif mma:  # an explicit request is checked here; default_mma has checked its own
        why = mma_unsupported(query, s) or (None if scaling > 0 else
                                            f"its softmax scales the maxima, so it needs scaling > 0 (here {scaling})")
        if why is not None:
            raise ValueError(f"mma={mma} cannot run this call: {why}; use mma=0")
        if mma not in (1, 2):
            raise ValueError(f"mma={mma} must be 0 (off), 1 or 2 (blocks of 8 key word rows a warp a tile)")
    mma = int(mma)
    if mma_shfl and mma != 1:
        raise ValueError(f"mma_shfl=True runs one block a warp: use mma=1 (here mma={mma})")
    sh = mma == 1 and (MMA_SHFL if mma_shfl is None else bool(mma_shfl))
    if packed is None:
        packed = default_packed(query, s)
    B, Hq, _, D = query.shape
    H = Hq  # programs go by query head (GQA: QG of them read one kv head, from L2 after the first)
    QG = Hq // s.k_tail.shape[1]
    L = max_len if lens is not None else s.length  # device lengths: the grid covers the capacity
    out = torch.empty((B, 1, Hq, D), device=query.device, dtype=query.dtype)
    if L == 0 or B == 0:
        return out.zero_()
    BW = block_w or DEFAULT_BLOCK_W
    nw = num_warps or DEFAULT_WARPS
    if mma:
        packed, BW = True, 8 * nw * mma
    if BW < 1 or BW & (BW - 1):
        raise ValueError(f"block_w={BW} must be a power of two")
    if packed and (s.k_bits, s.v_bits) != (2, 2):
        raise ValueError(f"packed=True computes k2v2 only (here k{s.k_bits}v{s.v_bits}); use packed=False")
    UF = ufold or DEFAULT_UFOLD
    if UF & (UF - 1):
        raise ValueError(f"ufold={UF} must be a power of two")
    BT = BW * (32 // s.k_bits)
    BLOCK_N = block_n or DEFAULT_BLOCK_N
    VR = 4 * 32 * nw // (D // (32 // s.v_bits))  # value rows a step: 4 words a thread
    if maxnreg is None and query.device.type == "cuda":
        maxnreg = MAXNREG_MMA_SH if sh else MAXNREG_MMA if mma else MAXNREG_PACKED if packed else MAXNREG
    S, chunk = splits_v3(B * H, L, BT, BLOCK_N, num_splits, split_rem,
                         SPLIT_PROGRAMS_MMA_SH if sh else SPLIT_PROGRAMS)
    single = S == 1
    mask = valid.view(torch.uint8) if valid is not None else None
    P = S - 1 if split_rem and S > 1 else S  # p scratch rows a (batch, head): the window split needs none
    pstr = _scratch_words(BT, D, s.group_size, packed, sh)
    n_ws = 0 if single else B * H * S * (D + 2)
    ws = torch.empty((n_ws + B * H * P * pstr,), device=query.device, dtype=torch.float32)  # one allocation
    p_ws = ws[n_ws:]
    if single:
        acc_ws = m_ws = l_ws = out  # unused
    else:
        acc_ws, m_ws, l_ws = ws[: B * H * S * D], ws[B * H * S * D: B * H * S * (D + 1)], ws[B * H * S * (D + 1): n_ws]

    def ptr(t):  # an empty segment is never read: give Triton a live pointer
        return t if t.numel() > 0 else query

    def st(t):
        return t.stride()[:3] if t.numel() > 0 else (0, 0, 0)

    dep = pdl_launch(query.device)  # the merge starts as the splits finish (kernels/pdl.py)
    first = dep and _pdl.PDL_FIRST
    _decode_attn_v3_kernel[(B * H, S)](
        query, ptr(s.k_codes), ptr(s.k_scale), ptr(s.k_min), ptr(s.k_tail),
        ptr(s.v_codes), ptr(s.v_scale), ptr(s.v_min), ptr(s.v_win), mask if mask is not None else query,
        lens if lens is not None else query,
        acc_ws, m_ws, l_ws, out, ptr(p_ws),
        H, QG, L, s.n_kq, s.n_vq, chunk, scaling * _LOG2E, 0x4B000000,
        query.stride(0), query.stride(1), query.stride(3),
        *st(s.k_codes), *st(s.k_scale), *st(s.k_min), *st(s.k_tail),
        *st(s.v_codes), *st(s.v_scale), *st(s.v_min), *st(s.v_win),
        *(mask.stride() if mask is not None else (0, 0)),
        out.stride(0), out.stride(2),
        S, P,
        D=D, DP=D, G=s.group_size, K_BITS=s.k_bits, V_BITS=s.v_bits, BW=BW, UK=unroll or DEFAULT_UNROLL, VR=VR,
        BLOCK_N=BLOCK_N, HAS_VALID=valid is not None, SINGLE=single, SPLIT_REM=split_rem, PACKED=packed,
        ASM=not _interpreting(), UF=UF, VDENSE=s.v_codes.numel() > 0 and s.v_codes.stride(2) == D // 16,
        NUM_WARPS_C=nw, MMA=mma, MMA_SH=sh,
        SDENSE=s.v_scale.numel() > 0 and s.v_scale.stride(2) == s.v_min.stride(2) == D // s.group_size,
        DEV_LENS=lens is not None, WIN=win, PDL=dep and not single, PDL_WAIT=first,
        num_warps=nw, **({"maxnreg": maxnreg} if maxnreg else {}), **launch_kw(first),
    )
    if not single:
        _decode_attn_reduce_kernel[(B * H, 1)](
            acc_ws, m_ws, l_ws, out, H, S, out.stride(0), out.stride(1), out.stride(2), out.stride(3),
            GROUP=1, QLEN=1, D=D, DP=D, SC=MERGE_SPLITS, PDL=dep, num_warps=1, **launch_kw(dep),
        )
    return out


# Programs a call aims for (num_splits_v3): measured on the H200 (h200_v3_round5/final/variants_splits.log,
# packed path, 5 programs an SM, us per call) for bulk splits a (batch, head) S = 1 / 2 / 3 / 4 / 8 / 16:
#   8x32K: 683 / 466 / 448 / 432 / 430 / 415;   16x16K: 465 / 433 / 417 / 428 / 415 / 414;
#   64x4096: 457 / 468;   128x4096: 896 / 916;   1x32K: S = 8 / 16: 94 / 85.
# More, smaller programs win until there are ~4096 of them (~6 waves of 660 slots; ncu at 8x32K with 768
# programs: 1.55 waves, a third of the second one busy); past that, the reduction's extra partials cost
# more than the balance gains (64x4096 at 4096 programs: 2.4% slower than at 2048).
SPLIT_PROGRAMS = 4096


@functools.lru_cache(maxsize=4096)
def num_splits_v3(batch_heads: int, length: int, tile: int, programs: int = SPLIT_PROGRAMS) -> int:
    """Flash-decoding bulk splits a (batch, head): c tiles a program, the smallest c (>= 1) that keeps the
    call at or below `programs` programs. Cached: it runs on every decode call's host path."""
    T = cdiv(length, tile)
    c = max(1, min(T, batch_heads * T // programs))
    return cdiv(T, c)


@functools.lru_cache(maxsize=4096)
def splits_v3(batch_heads: int, length: int, tile_tokens: int, block_n: int,
              num_splits: int | None = None, split_rem: bool = True,
              programs: int = SPLIT_PROGRAMS) -> tuple[int, int]:
    """(programs a (batch, head), tokens a bulk split): the bulk splits, plus one for the window / tail.
    Cached, like num_splits_v3: host time is the whole cost of a batch-1 call."""
    tile = max(tile_tokens, block_n)
    S = num_splits or num_splits_v3(batch_heads, length, tile, programs)
    chunk = -(-(-(-length // S)) // tile) * tile  # bulk tiles start at a split's start (ceil divisions)
    return -(-length // chunk) + (1 if split_rem else 0), chunk


def _scratch_words(tile_tokens: int, head_dim: int, group_size: int, packed: bool, shfl: bool) -> int:
    # fp32 words of a program's p scratch row (the kernel's PSTR): p, and on the packed paths u = p * scale
    # (fp16, a (token, group) pair); the mma_shfl bulk passes p by shuffles and needs none
    if shfl:
        return 0
    return tile_tokens + (tile_tokens * (head_dim // group_size) + 1) // 2 if packed else tile_tokens


def workspace_bytes(batch: int, heads: int, length: int, head_dim: int, k_bits: int,
                    packed: bool = False, group_size: int = 32) -> int:
    """Device memory one default call allocates besides its output: split partials + p scratch (packed:
    + the fp16 p * scale row, one per (token, group)). `packed` stands for k2v2 fp16 (default_packed), which
    at head_dim 128, G = 32 and MMA_MIN_PROGRAMS runs the tensor-core bulk (default_mma)."""
    BT = DEFAULT_BLOCK_W * (32 // k_bits)
    mma = packed and head_dim == 128 and group_size == 32 and batch * heads >= MMA_MIN_PROGRAMS
    if mma:
        BT = 8 * MMA_WARPS * 16
    S, _ = splits_v3(batch * heads, length, BT, DEFAULT_BLOCK_N,
                     programs=SPLIT_PROGRAMS_MMA_SH if mma and MMA_SHFL else SPLIT_PROGRAMS)
    P = S - 1 if S > 1 else S
    pstr = _scratch_words(BT, head_dim, group_size, packed, mma and MMA_SHFL)
    return batch * heads * S * ((head_dim + 2) if S > 1 else 0) * 4 + batch * heads * P * pstr * 4
