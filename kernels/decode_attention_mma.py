"""v3's bulk tiles on tensor cores: the key scores and the value sums as mma.sync straight from packed codes.

v3's packed path (`decode_attention_v3._bulk_packed`) spends ~2.1-2.6 instructions an element on CUDA
cores (LOP3 + 2 HFMA2 a code pair, then the fp16 -> fp32 flushes). Here a code pair costs one LOP3 and a
share of an MMA (`_mma8_asm`):

  * 2-bit codes become fp16 subnormals with one AND: the mask (3 << 2j) * 0x10001 keeps code j of each
    16-bit half, whose bits then are an fp16 mantissa, the value c * 4^j * 2^-24 exactly (j <= 4; codes
    5..7 come from the word shifted by 10). One PRMT first pairs the halves of two words, so that a
    register holds the fp16x2 pair an mma.sync operand wants. The scale 2^24 * 4^-j is undone once, on
    the accumulators.
  * Keys: s[t] = sum_d c[t, d] * (q_d * scale[g(t), d]) + sum_d q_d * min[g(t), d]. An MMA's A operand is
    16 tokens x 16 channels of codes (rows: code j of 8 word rows, low and high halves; a lane's row is
    its word row), its B operand the factors q * scale of the tile's 4 groups a warp (columns; lanes with
    gid >= 4 give zeros). Row r's score is in column g(r): one lane in four holds the useful C entries.
  * Values: out[d] = sum_t c[t, d] * (p_t * scale[t, g(d)]) + sum_t p_t * min[t, g(d)]. A = 16 channels
    (code j of the lane's word column, both halves) x 16 tokens (PRMT pairs two tokens' words), B = u =
    p * scale [token, group] from the scratch row; again column g(row) is the useful one.
  * A warp owns 8 key word rows (128 tokens) in both phases; a tile is 128 x warps tokens. By default
    (`mma_shfl`) p goes from the key lanes to the value B operand by warp shuffles and each warp keeps its
    own running max, merged once at the end: no scratch row, barrier or shared memory in the loop
    (288 against 350 us at 8x32K on the H200, benchmarks/results/h200_round14.md). Without it, p and
    u = p * scale cross through the program's scratch row, as in v3.
  * Key biases sum_d q_d * min[g, d] come from the lanes that build the B operand (they load q and the
    scales already): 32 channels a lane, two butterfly shuffles, one indexed shuffle to the rows' lanes.

Each lane's MMA operands are its elements of [lanes]-shaped tensors: Triton's layout of a 1-D tensor (and
of the rows of the [lanes, 4] tiles loaded here, one row a thread) puts element i in thread i, which is
what makes lane = i % 32 true. Under TRITON_INTERPRET=1 `_mma8_ref` computes the same warp-wide products
from those tensors with reshapes (the fragment layouts of PTX's m16n8k16), so CI runs the same tiles and
mapping; the PTX runs on the GPU only.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .tile_ops import _join16n, _split4n, _split16n


def mma_ptx(c: str, a: str, b: str) -> str:
    """One m16n8k16 (row.col, fp16 in, fp32 accumulate) in PTX: C registers c (also the addend), A a, B b."""
    return f"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {{{c}}}, {{{a}}}, {{{b}}}, {{{c}}};"


def prmt_ptx(x: str, y: str, suffix: str) -> list[str]:
    """PRMT the low halves (into l<suffix>) and the high halves (h<suffix>) of words x and y, x's first."""
    return [f"prmt.b32 l{suffix}, {x}, {y}, 0x5410;", f"prmt.b32 h{suffix}, {x}, {y}, 0x7632;"]


def _mma8_asm() -> str:
    """PTX for `_mma8`: words w0..w3 ($32..$35), B pairs b0, b1 ($36, $37), 32 fp32 accumulators ($0..$31,
    tied). PRMT pairs the low halves and the high halves of (w0, w1) and of (w2, w3); for j = 0..7 four ANDs
    make the A fragment of code j (rows: low halves, then high halves) and one m16n8k16 adds A x B into
    accumulators 4j..4j+3."""
    L = ["{", ".reg .b32 l01, h01, l23, h23, s01, t01, s23, t23;", ".reg .b32 a<32>;",
         *prmt_ptx("$32", "$33", "01"), *prmt_ptx("$34", "$35", "23"),
         "shr.u32 s01, l01, 10;", "shr.u32 t01, h01, 10;", "shr.u32 s23, l23, 10;", "shr.u32 t23, h23, 10;"]
    for j in range(8):
        src = ("l01", "h01", "l23", "h23") if j < 5 else ("s01", "t01", "s23", "t23")
        mask = 0x00030003 << (2 * (j if j < 5 else j - 5))
        L += [f"and.b32 a{4 * j + i}, {src[i]}, {mask:#x};" for i in range(4)]
        L.append(mma_ptx(", ".join(f"${4 * j + i}" for i in range(4)),
                         ", ".join(f"a{4 * j + i}" for i in range(4)), "$36, $37"))
    L.append("}")
    return "\n".join(L)


_MMA8_SRC = tl.constexpr(_mma8_asm())
_MMA8_CONSTRAINTS = tl.constexpr(",".join(["=f"] * 32 + ["r"] * 6 + [str(i) for i in range(32)]))


@triton.jit
def _mma8_gpu(w0, w1, w2, w3, b0, b1,
              c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
              c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31):
    return tl.inline_asm_elementwise(
        _MMA8_SRC, _MMA8_CONSTRAINTS,
        [w0, w1, w2, w3, b0, b1, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
         c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31],
        (tl.float32,) * 32, True, 1)


@triton.jit
def _h2f(x, HI: tl.constexpr):
    # one fp16 half of an fp16x2 pair (int32 bits) as fp32
    if HI:
        b = (x >> 16) & 0xFFFF
    else:
        b = x & 0xFFFF
    return b.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)


@triton.jit
def _pairs_k(x, NW: tl.constexpr):
    # a fragment register of every lane, [NW * 32] (lane 4 gid + tig: elements 2 tig, 2 tig + 1 of row gid)
    # -> [NW, 8, 8]: (warp, gid, k)
    lo = tl.reshape(_h2f(x, False), (NW, 8, 4))
    hi = tl.reshape(_h2f(x, True), (NW, 8, 4))
    return tl.reshape(tl.join(lo, hi), (NW, 8, 8))


@triton.jit
def _cat_k(a, b, NW: tl.constexpr):
    # [NW, 8, 8] x 2 -> [NW, 8, 16]: k of a, then k of b
    return tl.reshape(tl.permute(tl.join(a, b), (0, 1, 3, 2)), (NW, 8, 16))


@triton.jit
def _mma_ref(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3, NW: tl.constexpr):
    # one m16n8k16 (row.col, fp16 in, fp32 accumulate) per warp, from the lanes' fragments as PTX lays them
    # out: a0 = A[gid][2 tig + e], a1 = A[gid + 8][...], a2 / a3 the same at k + 8; b0 = B[2 tig + e][gid],
    # b1 at k + 8; c0, c1 = C[gid][2 tig + e], c2, c3 = C[gid + 8][...]
    top = _cat_k(_pairs_k(a0, NW), _pairs_k(a2, NW), NW)
    bot = _cat_k(_pairs_k(a1, NW), _pairs_k(a3, NW), NW)
    a = tl.reshape(tl.permute(tl.join(top, bot), (0, 3, 1, 2)), (NW, 16, 16))  # (warp, row, k)
    bt = _cat_k(_pairs_k(b0, NW), _pairs_k(b1, NW), NW)  # (warp, n, k)
    d = tl.sum(a[:, :, None, :] * bt[:, None, :, :], axis=3)  # (warp, row, n)
    d = tl.permute(tl.reshape(d, (NW, 2, 8, 4, 2)), (0, 2, 3, 1, 4))  # (warp, gid, tig, row half, e)
    d_e0, d_e1 = tl.split(d)
    d00, d10 = tl.split(d_e0)
    d01, d11 = tl.split(d_e1)
    NT: tl.constexpr = NW * 32
    return (c0 + tl.reshape(d00, (NT,)), c1 + tl.reshape(d01, (NT,)), c2 + tl.reshape(d10, (NT,)),
            c3 + tl.reshape(d11, (NT,)))


@triton.jit
def _prmt_ref(x, y, HI: tl.constexpr):
    # PRMT 0x5410 / 0x7632: the low (high) halves of x and y, x's in the low half
    if HI:
        return ((x >> 16) & 0xFFFF) | (y & -65536)
    else:
        return (x & 0xFFFF) | (y << 16)


@triton.jit
def _mma8_ref(w0, w1, w2, w3, b0, b1,
              c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
              c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31, NW: tl.constexpr):
    # _mma8_asm under the interpreter: the same operands, the warp's products by reshapes
    l01 = _prmt_ref(w0, w1, False)
    h01 = _prmt_ref(w0, w1, True)
    l23 = _prmt_ref(w2, w3, False)
    h23 = _prmt_ref(w2, w3, True)
    s01 = (l01 >> 10) & 0x3FFFFF
    t01 = (h01 >> 10) & 0x3FFFFF
    s23 = (l23 >> 10) & 0x3FFFFF
    t23 = (h23 >> 10) & 0x3FFFFF
    c0, c1, c2, c3 = _mma_ref(l01 & 0x00030003, h01 & 0x00030003, l23 & 0x00030003, h23 & 0x00030003,
                              b0, b1, c0, c1, c2, c3, NW)
    c4, c5, c6, c7 = _mma_ref(l01 & 0x000C000C, h01 & 0x000C000C, l23 & 0x000C000C, h23 & 0x000C000C,
                              b0, b1, c4, c5, c6, c7, NW)
    c8, c9, c10, c11 = _mma_ref(l01 & 0x00300030, h01 & 0x00300030, l23 & 0x00300030, h23 & 0x00300030,
                                b0, b1, c8, c9, c10, c11, NW)
    c12, c13, c14, c15 = _mma_ref(l01 & 0x00C000C0, h01 & 0x00C000C0, l23 & 0x00C000C0, h23 & 0x00C000C0,
                                  b0, b1, c12, c13, c14, c15, NW)
    c16, c17, c18, c19 = _mma_ref(l01 & 0x03000300, h01 & 0x03000300, l23 & 0x03000300, h23 & 0x03000300,
                                  b0, b1, c16, c17, c18, c19, NW)
    c20, c21, c22, c23 = _mma_ref(s01 & 0x00030003, t01 & 0x00030003, s23 & 0x00030003, t23 & 0x00030003,
                                  b0, b1, c20, c21, c22, c23, NW)
    c24, c25, c26, c27 = _mma_ref(s01 & 0x000C000C, t01 & 0x000C000C, s23 & 0x000C000C, t23 & 0x000C000C,
                                  b0, b1, c24, c25, c26, c27, NW)
    c28, c29, c30, c31 = _mma_ref(s01 & 0x00300030, t01 & 0x00300030, s23 & 0x00300030, t23 & 0x00300030,
                                  b0, b1, c28, c29, c30, c31, NW)
    return (c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
            c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31)


@triton.jit
def _mma8(w0, w1, w2, w3, b0, b1,
          c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
          c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31,
          NW: tl.constexpr, ASM: tl.constexpr):
    if ASM:
        return _mma8_gpu(w0, w1, w2, w3, b0, b1, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13,
                         c14, c15, c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31)
    else:
        return _mma8_ref(w0, w1, w2, w3, b0, b1, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13,
                         c14, c15, c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31,
                         NW)


@triton.jit
def _pack2(x0, x1, ASM: tl.constexpr):
    # two fp16 -> one fp16x2 register (int32), x0 in the low half
    if ASM:
        return tl.inline_asm_elementwise("mov.b32 $0, {$1, $2};", "=r,h,h", [x0, x1], tl.int32, True, 1)
    else:
        return ((x0.to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF)
                | (x1.to(tl.int16, bitcast=True).to(tl.int32) << 16))


@triton.jit
def _useful16(odd, c0, c1, c2, c3, c4, c5, c6, c7, c8, c9, c10, c11, c12, c13, c14, c15,
              c16, c17, c18, c19, c20, c21, c22, c23, c24, c25, c26, c27, c28, c29, c30, c31):
    # the lane's 16 useful C entries -> [lanes, 16], column j = code j of the lane's word (row gid: codes
    # 0..7 of the low halves, row gid + 8: codes 8..15 of the high halves); column g(row) is c1 / c3 where
    # it is odd, else c0 / c2
    return _join16n(tl.where(odd, c1, c0), tl.where(odd, c5, c4), tl.where(odd, c9, c8), tl.where(odd, c13, c12),
                    tl.where(odd, c17, c16), tl.where(odd, c21, c20), tl.where(odd, c25, c24),
                    tl.where(odd, c29, c28),
                    tl.where(odd, c3, c2), tl.where(odd, c7, c6), tl.where(odd, c11, c10), tl.where(odd, c15, c14),
                    tl.where(odd, c19, c18), tl.where(odd, c23, c22), tl.where(odd, c27, c26),
                    tl.where(odd, c31, c30))


@triton.jit
def quads8(p, ok):
    # eight [lanes, 4] loads at p + 16 k, k = 0..7: a lane's 4 channels of each 16-channel k step. Not one
    # [lanes, 32] load: Triton spreads a 32-wide row over 8 threads and the splits then cross lanes through
    # shared memory (SASS: 436 SHFL, 192 BAR a tile)
    # (ok None: unmasked)
    return (_ld0(p, ok), _ld0(p + 16, ok), _ld0(p + 32, ok), _ld0(p + 48, ok), _ld0(p + 64, ok), _ld0(p + 80, ok),
            _ld0(p + 96, ok), _ld0(p + 112, ok))


@triton.jit
def _ld0(p, ok):
    # a load, 0 where ok is False; unmasked when ok is None
    if ok is None:
        return tl.load(p)
    else:
        return tl.load(p, mask=ok, other=0)


@triton.jit
def words32(p, ok):
    # quads8 of a lane's key code words, as 32 [lanes] words (k step kk: words 4 kk .. 4 kk + 3)
    q0, q1, q2, q3, q4, q5, q6, q7 = quads8(p, ok)
    w0, w1, w2, w3 = _split4n(q0)
    w4, w5, w6, w7 = _split4n(q1)
    w8, w9, w10, w11 = _split4n(q2)
    w12, w13, w14, w15 = _split4n(q3)
    w16, w17, w18, w19 = _split4n(q4)
    w20, w21, w22, w23 = _split4n(q5)
    w24, w25, w26, w27 = _split4n(q6)
    w28, w29, w30, w31 = _split4n(q7)
    return (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
            w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31)


@triton.jit
def _factors4(sb, mb, qb, ok):
    # 4 channels of a B lane: the fp16 factors q * scale (one rounding: fp16 inputs; the cast is for fp32
    # ones) and the fp32 partial key bias sum q * min (as the [groups, D] tile it replaces)
    qv = tl.load(qb)
    f0, f1, f2, f3 = _split4n((tl.load(sb, mask=ok, other=0.0) * qv).to(tl.float16))
    part = tl.sum(tl.load(mb, mask=ok, other=0.0).to(tl.float32) * qv.to(tl.float32), axis=1)
    return f0, f1, f2, f3, part


@triton.jit
def _key_block(q_ptr, kc_ptr, ks_ptr, km_ptr, valid_ptr, s_kcw, s_ksg, s_kmg, s_mt, start, end, wrow, gk, b_ok,
               lane, tig, col, odd, useful, unscale,
               D: tl.constexpr, NW: tl.constexpr, HAS_VALID: tl.constexpr, ASM: tl.constexpr):
    # the scores of 8 key word rows a warp (a lane's A rows: word row wrow), [lanes, 16] (column j: token j of
    # the word row), biased, not yet times qk_scale (the softmax's FFMA applies it: 16 registers of scaled
    # column factors less); -inf where masked and in the lanes that hold no useful entry. A lane's k slots
    # are channels 16 kk + 4 tig + (0, 1) and (2, 3) at step kk (the sum runs over channels, so any split of
    # them across lanes and steps works if codes and factors agree). Its 32 code words, factors and
    # query channels are loaded at once (8 dependent steps of loads measured 445 us at 8x32K against v3's
    # 373: h200_round13/variants.log), and the 4 lanes of a word row read 64 contiguous bytes each load: with
    # 32 contiguous channels a lane (32 tig + 4 kk) every load used half of each 32-byte sector (Nsight: 51%
    # excessive sectors, h200_round14/ncu_mmash_8x32k.txt)
    rows_w = start // 16 + wrow
    ch4 = (4 * tig)[:, None] + tl.arange(0, 4)[None, :]
    kb_ = kc_ptr + rows_w[:, None] * s_kcw + ch4
    sb = ks_ptr + gk[:, None] * s_ksg + ch4
    mb = km_ptr + gk[:, None] * s_kmg + ch4
    qb = q_ptr + ch4
    w_ok = (rows_w * 16 < end)[:, None]
    (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
     w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31) = words32(kb_, w_ok)
    # the B lanes (gid < 4: group gk) also sum q * min over their 32 channels: two butterfly shuffles over
    # tig give each its group's bias, and one indexed shuffle takes it to the lanes whose rows are in that
    # group (lane 4 col). This replaced a [groups, D] min tile a tile, its cross-warp sum and the gather.
    okb = b_ok[:, None]
    f0, f1, f2, f3, kp = _factors4(sb, mb, qb, okb)
    f4, f5, f6, f7, kp1 = _factors4(sb + 16, mb + 16, qb + 16, okb)
    f8, f9, f10, f11, kp2 = _factors4(sb + 32, mb + 32, qb + 32, okb)
    f12, f13, f14, f15, kp3 = _factors4(sb + 48, mb + 48, qb + 48, okb)
    f16, f17, f18, f19, kp4 = _factors4(sb + 64, mb + 64, qb + 64, okb)
    f20, f21, f22, f23, kp5 = _factors4(sb + 80, mb + 80, qb + 80, okb)
    f24, f25, f26, f27, kp6 = _factors4(sb + 96, mb + 96, qb + 96, okb)
    f28, f29, f30, f31, kp7 = _factors4(sb + 112, mb + 112, qb + 112, okb)
    kp = (kp + kp1) + (kp2 + kp3) + ((kp4 + kp5) + (kp6 + kp7))
    kp += _shfl(kp, lane ^ 1, NW, ASM)
    kp += _shfl(kp, lane ^ 2, NW, ASM)
    kb_l = _shfl(kp, 4 * col, NW, ASM)
    z = tl.zeros_like(kb_l)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w0, w1, w2, w3, _pack2(f0, f1, ASM), _pack2(f2, f3, ASM),
            z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, NW, ASM)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w4, w5, w6, w7, _pack2(f4, f5, ASM), _pack2(f6, f7, ASM),
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
            k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w8, w9, w10, w11, _pack2(f8, f9, ASM), _pack2(f10, f11, ASM),
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
            k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w12, w13, w14, w15, _pack2(f12, f13, ASM), _pack2(f14, f15, ASM),
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
            k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w16, w17, w18, w19, _pack2(f16, f17, ASM), _pack2(f18, f19, ASM),
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
            k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w20, w21, w22, w23, _pack2(f20, f21, ASM), _pack2(f22, f23, ASM),
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
            k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w24, w25, w26, w27, _pack2(f24, f25, ASM), _pack2(f26, f27, ASM),
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
            k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
            w28, w29, w30, w31, _pack2(f28, f29, ASM), _pack2(f30, f31, ASM),
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
            k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
    s = _useful16(odd, k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
                  k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31)
    s = s * unscale[None, :] + kb_l[:, None]
    tok = start + wrow[:, None] * 16 + tl.arange(0, 16)[None, :]
    t_ok = (tok < end) & useful[:, None]
    if HAS_VALID:
        t_ok = t_ok & (tl.load(valid_ptr + tok * s_mt, mask=t_ok, other=0) != 0)
    return tl.where(t_ok, s, float("-inf"))


@triton.jit
def _vld4(vb, vstride, r: tl.constexpr, ok):
    # loads from 4 consecutive rows from row r (n_t is a multiple of 16, so 4 rows share one mask)
    return (tl.load(vb + r * vstride, mask=ok, other=0), tl.load(vb + (r + 1) * vstride, mask=ok, other=0),
            tl.load(vb + (r + 2) * vstride, mask=ok, other=0), tl.load(vb + (r + 3) * vstride, mask=ok, other=0))


@triton.jit
def _rows32(rp, stride, r0, lim):
    # one [lanes] load from each of 32 consecutive rows, the lane's first at rp (its row r0; rows from lim
    # on give 0), all issued together. 1-D tensors keep element i in thread i, so lane = i % 32
    w0, w1, w2, w3 = _vld4(rp, stride, 0, r0 < lim)
    w4, w5, w6, w7 = _vld4(rp, stride, 4, r0 + 4 < lim)
    w8, w9, w10, w11 = _vld4(rp, stride, 8, r0 + 8 < lim)
    w12, w13, w14, w15 = _vld4(rp, stride, 12, r0 + 12 < lim)
    w16, w17, w18, w19 = _vld4(rp, stride, 16, r0 + 16 < lim)
    w20, w21, w22, w23 = _vld4(rp, stride, 20, r0 + 20 < lim)
    w24, w25, w26, w27 = _vld4(rp, stride, 24, r0 + 24 < lim)
    w28, w29, w30, w31 = _vld4(rp, stride, 28, r0 + 28 < lim)
    return (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
            w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31)


@triton.jit
def _value_words(vc_ptr, vstride, start, base, n_t, gid, tig):
    # a lane's 32 value code words for the warp's 128 tokens from tile token `base` (word column gid): its k
    # slots at step kv are tokens 32 tig + 4 kv + (0, 1) and (2, 3); a column of strided rows
    r0 = start + base + 32 * tig
    return _rows32(vc_ptr + r0 * vstride + gid, vstride, r0, n_t + start)


@triton.jit
def _value_mma(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
               w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
               b00, b01, b10, b11, b20, b21, b30, b31, b40, b41, b50, b51, b60, b61, b70, b71,
               v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
               v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
               NW: tl.constexpr, ASM: tl.constexpr):
    # the 8 k steps of a block's value MMAs: step kv takes code words 4 kv .. 4 kv + 3 and B pairs b<kv>0, b<kv>1
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w0, w1, w2, w3, b00, b01, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w4, w5, w6, w7, b10, b11, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w8, w9, w10, w11, b20, b21, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w12, w13, w14, w15, b30, b31, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w16, w17, w18, w19, b40, b41, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w20, w21, w22, w23, b50, b51, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w24, w25, w26, w27, b60, b61, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _mma8(
            w28, w29, w30, w31, b70, b71, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    return (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31)


@triton.jit
def _value_block(vc_ptr, u32_ptr, vstride, start, base, n_t, gid, tig, bl,
                 v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                 v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
                 BT: tl.constexpr, NW: tl.constexpr, ASM: tl.constexpr):
    # the value sums over a warp's 128 tokens from tile token `base`, from its code words and its group's 32
    # u values from the scratch row (64 contiguous bytes: four [lanes, 4] loads)
    (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
     w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31) = \
        _value_words(vc_ptr, vstride, start, base, n_t, gid, tig)
    ub = u32_ptr + ((gid * BT + base + 32 * tig) // 2)[:, None] + tl.arange(0, 4)[None, :]
    b00, b01, b10, b11 = _split4n(tl.load(ub, mask=bl[:, None], other=0))
    b20, b21, b30, b31 = _split4n(tl.load(ub + 4, mask=bl[:, None], other=0))
    b40, b41, b50, b51 = _split4n(tl.load(ub + 8, mask=bl[:, None], other=0))
    b60, b61, b70, b71 = _split4n(tl.load(ub + 12, mask=bl[:, None], other=0))
    return _value_mma(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
                      w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
                      b00, b01, b10, b11, b20, b21, b30, b31, b40, b41, b50, b51, b60, b61, b70, b71,
                      v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                      v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)


@triton.jit
def _shfl_w(x, src, NW: tl.constexpr, ASM: tl.constexpr):
    # every lane's 32-bit x from lane src of its warp: one shfl.sync.idx; the interpreter gathers
    if ASM:
        return tl.inline_asm_elementwise("shfl.sync.idx.b32 $0, $1, $2, 0x1f, -1;", "=r,r,r", [x, src], tl.int32,
                                         True, 1)
    else:
        return tl.reshape(tl.gather(tl.reshape(x, (NW, 32)), tl.reshape(src, (NW, 32)), 1), (NW * 32,))


@triton.jit
def _shfl(x, src, NW: tl.constexpr, ASM: tl.constexpr):
    # `_shfl_w` of fp32 values
    return _shfl_w(x.to(tl.int32, bitcast=True), src, NW, ASM).to(tl.float32, bitcast=True)


@triton.jit
def _warp_max(x, NW: tl.constexpr):
    # the max of x over each warp, in every lane of it (fp32). Triton lowers the [NW, 32] reduction to
    # butterfly shuffles. (An inline-asm butterfly gave wrong maxima on the H200 once the kernel loads a
    # padding mask, though its SASS reads right: debug_sh_valid.py, h200_round15b.)
    m = tl.max(tl.reshape(x, (NW, 32)), axis=1)
    return tl.reshape(tl.broadcast_to(m[:, None], (NW, 32)), (NW * 32,))


@triton.jit
def _f16x2(lo, hi, ASM: tl.constexpr):
    # two fp32 -> one fp16x2 register (int32), lo in the low half: one F2FP
    if ASM:
        return tl.inline_asm_elementwise("cvt.rn.f16x2.f32 $0, $2, $1;", "=r,f,f", [lo, hi], tl.int32, True, 1)
    else:
        return _pack2(lo.to(tl.float16), hi.to(tl.float16), False)


@triton.jit
def _bstep(pa, pb, pc, pd, src, sa, sb, sc, sd, NW: tl.constexpr, ASM: tl.constexpr):
    # one value k step's B pairs: the p of 4 tokens from their key lane, times the lane's 4 scales (fp16)
    b0 = _f16x2(_shfl(pa, src, NW, ASM) * sa.to(tl.float32), _shfl(pb, src, NW, ASM) * sb.to(tl.float32), ASM)
    b1 = _f16x2(_shfl(pc, src, NW, ASM) * sc.to(tl.float32), _shfl(pd, src, NW, ASM) * sd.to(tl.float32), ASM)
    return b0, b1


@triton.jit
def _mma1(b0, b1, c0, c1, c2, c3, NW: tl.constexpr, ASM: tl.constexpr):
    # C += ones x B: every row gets the column sums of B over the k step (fp32, exact sums of fp16 values)
    if ASM:
        return tl.inline_asm_elementwise(
            "{ .reg .b32 o; mov.b32 o, 0x3C003C00; mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 "
            "{$0, $1, $2, $3}, {o, o, o, o}, {$4, $5}, {$0, $1, $2, $3}; }",
            "=f,=f,=f,=f,r,r,0,1,2,3", [b0, b1, c0, c1, c2, c3], (tl.float32,) * 4, True, 1)
    else:
        one = tl.full(b0.shape, 0x3C003C00, tl.int32)
        return _mma_ref(one, one, one, one, b0, b1, c0, c1, c2, c3, NW)


@triton.jit
def _value_block_sh(vc_ptr, vs_ptr, vm_ptr, vstride, s_vst, start, base, n_t, gid, tig, p0, alpha,
                    cm0, cm1, cm2, cm3, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                    v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
                    NG: tl.constexpr, SDENSE: tl.constexpr, NW: tl.constexpr, ASM: tl.constexpr):
    # mma_shfl's value phase for the warp's 128 tokens from tile token `base`: the B operand from the key
    # lanes' p (p0, the warp's [lanes, 16] probabilities) by shuffles, times the lanes' value scales (gid <
    # NG) or mins (gid >= NG); the min columns' sums by one MMA against ones a step (cm, rescaled by alpha
    # here). Returns cm0..cm3 and the 32 value accumulators
    (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
     w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31) = \
        _value_words(vc_ptr, vstride, start, base, n_t, gid, tig)
    r0 = start + base + 32 * tig
    if SDENSE:  # value scale / min rows NG apart: the 32 row offsets are immediates
        sst = NG
    else:
        sst = s_vst
    sp = tl.where(gid < NG, vs_ptr + gid, vm_ptr + (gid - NG)) + r0 * sst
    (sc0, sc1, sc2, sc3, sc4, sc5, sc6, sc7, sc8, sc9, sc10, sc11, sc12, sc13, sc14, sc15,
     sc16, sc17, sc18, sc19, sc20, sc21, sc22, sc23, sc24, sc25, sc26, sc27, sc28, sc29, sc30, sc31) = \
        _rows32(sp, sst, r0, n_t + start)
    cm0, cm1, cm2, cm3 = cm0 * alpha, cm1 * alpha, cm2 * alpha, cm3 * alpha
    # token 32 tig + 4 kv + i is code j = 4 (kv % 4) + i of word row 2 tig + kv // 4, whose p sits in
    # column j of that row's useful lane: 4 gid + gid // 4 with gid the word row
    q0, q1, q2, q3, q4, q5, q6, q7, q8, q9, q10, q11, q12, q13, q14, q15 = _split16n(p0)
    src_a = 8 * tig + (2 * tig) // 4
    src_b = 8 * tig + 4 + (2 * tig + 1) // 4
    b00, b01 = _bstep(q0, q1, q2, q3, src_a, sc0, sc1, sc2, sc3, NW, ASM)
    b10, b11 = _bstep(q4, q5, q6, q7, src_a, sc4, sc5, sc6, sc7, NW, ASM)
    b20, b21 = _bstep(q8, q9, q10, q11, src_a, sc8, sc9, sc10, sc11, NW, ASM)
    b30, b31 = _bstep(q12, q13, q14, q15, src_a, sc12, sc13, sc14, sc15, NW, ASM)
    b40, b41 = _bstep(q0, q1, q2, q3, src_b, sc16, sc17, sc18, sc19, NW, ASM)
    b50, b51 = _bstep(q4, q5, q6, q7, src_b, sc20, sc21, sc22, sc23, NW, ASM)
    b60, b61 = _bstep(q8, q9, q10, q11, src_b, sc24, sc25, sc26, sc27, NW, ASM)
    b70, b71 = _bstep(q12, q13, q14, q15, src_b, sc28, sc29, sc30, sc31, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b00, b01, cm0, cm1, cm2, cm3, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b10, b11, cm0, cm1, cm2, cm3, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b20, b21, cm0, cm1, cm2, cm3, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b30, b31, cm0, cm1, cm2, cm3, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b40, b41, cm0, cm1, cm2, cm3, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b50, b51, cm0, cm1, cm2, cm3, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b60, b61, cm0, cm1, cm2, cm3, NW, ASM)
    cm0, cm1, cm2, cm3 = _mma1(b70, b71, cm0, cm1, cm2, cm3, NW, ASM)
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, \
        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31 = _value_mma(
            w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
            w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
            b00, b01, b10, b11, b20, b21, b30, b31, b40, b41, b50, b51, b60, b61, b70, b71,
            v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    return (cm0, cm1, cm2, cm3, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31)


@triton.jit
def _bulk_mma(q_ptr, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_ptr,
              s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, end, qk_scale, m_i, l_i,
              D: tl.constexpr, G: tl.constexpr, NW: tl.constexpr, RB: tl.constexpr, HAS_VALID: tl.constexpr,
              ASM: tl.constexpr, UF: tl.constexpr, VDENSE: tl.constexpr, SH: tl.constexpr,
              SDENSE: tl.constexpr):
    # [lo, end) in tiles of 128 x RB x NW tokens (k2v2, fp16, D = 128, G = 32: the launcher checks); a warp
    # takes RB blocks of 8 key word rows. Returns the tiles' running max, sum and [1, D] output, like v3's
    # _bulk_packed. SH (RB = 1): the value B operand comes from the key lanes by shuffles instead of the
    # scratch row: lanes gid < 4 give u = p * scale of group gid, lanes gid >= 4 p * min of group gid - 4,
    # whose column sums one more MMA a step takes against a ones operand (no p / u store, no fold pass, no
    # barrier a tile).
    NT: tl.constexpr = NW * 32
    BT: tl.constexpr = NW * 128 * RB
    NG: tl.constexpr = D // G
    DW: tl.constexpr = D // 16
    t = tl.arange(0, NT)
    lane = t % 32
    warp = t // 32
    gid = lane // 4
    tig = lane % 4
    col = gid // 2  # the group (MMA column) of the lane's rows, in both phases
    useful = tig == col // 2  # the lane holding C[gid][col] and C[gid + 8][col]
    odd = (col % 2) == 1
    wrow = warp * 8 * RB + gid  # the lane's key word row in its first row block (tile-local)
    bl = gid < NG  # lanes giving B columns, a group each
    j16 = tl.arange(0, 16)
    jm = j16 % 8
    unscale = tl.exp2(24.0 - 2.0 * tl.where(jm >= 5, jm - 5, jm).to(tl.float32))  # 2^24 * 4^-(code's j)
    ch = tl.arange(0, D)
    u_ptr = (p_ptr + BT).to(tl.pointer_type(tl.float16))  # after the tile's p: u, [group, token] fp16
    u32_ptr = (p_ptr + BT).to(tl.pointer_type(tl.int32))
    if VDENSE:
        vstride = DW
    else:
        vstride = s_vct
    z = tl.zeros((NT,), tl.float32)
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = \
        z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
    v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31 = \
        z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
    cpm = tl.zeros((NG,), tl.float32)
    cm0, cm1, cm2, cm3 = z, z, z, z  # SH: ones x (p * min), columns 4 + group
    # SH: the warps' running maxes and the lanes' sums, merged once after the loop. A program-wide max
    # crossed the warps through shared memory twice a tile (max and sum), with barriers.
    m_w = tl.full((NT,), m_i, tl.float32)
    l_w = tl.where(t == 0, l_i, 0.0)
    for start in range(lo, end, BT):
        gk = start // G + warp * 4 * RB + gid  # a B lane's group (tile-local: warp * 4 * RB + gid)
        s0 = _key_block(q_ptr, kc_ptr, ks_ptr, km_ptr, valid_ptr, s_kcw, s_ksg, s_kmg, s_mt, start, end, wrow, gk,
                        bl & (gk * G < end), lane, tig, col, odd, useful, unscale, D, NW, HAS_VALID, ASM)
        m_t = tl.max(s0, axis=1) * qk_scale
        if RB == 2:
            s1 = _key_block(q_ptr, kc_ptr, ks_ptr, km_ptr, valid_ptr, s_kcw, s_ksg, s_kmg, s_mt, start, end,
                            wrow + 8, gk + 4, bl & ((gk + 4) * G < end), lane, tig, col, odd, useful, unscale,
                            D, NW, HAS_VALID, ASM)
            m_t = tl.maximum(m_t, tl.max(s1, axis=1) * qk_scale)
        if SH:  # each warp its own running max (uniform over its lanes) and each lane its own sum
            m_new = tl.maximum(m_w, _warp_max(m_t, NW))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_w - m_safe)
            p0 = tl.exp2(s0 * qk_scale - m_safe[:, None])
            l_w = l_w * alpha + tl.sum(p0, axis=1)
            m_w = m_new
        else:
            m_new = tl.maximum(m_i, tl.max(m_t, axis=0))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            alpha = tl.exp2(m_i - m_safe)
            p0 = tl.exp2(s0 * qk_scale - m_safe)
            l_t = tl.sum(p0, axis=1)
            if RB == 2:
                p1 = tl.exp2(s1 * qk_scale - m_safe)
                l_t += tl.sum(p1, axis=1)
            l_i = l_i * alpha + tl.sum(l_t, axis=0)
            m_i = m_new
        v0, v1, v2, v3, v4, v5, v6, v7 = v0 * alpha, v1 * alpha, v2 * alpha, v3 * alpha, v4 * alpha, v5 * alpha, \
            v6 * alpha, v7 * alpha
        v8, v9, v10, v11, v12, v13, v14, v15 = v8 * alpha, v9 * alpha, v10 * alpha, v11 * alpha, v12 * alpha, \
            v13 * alpha, v14 * alpha, v15 * alpha
        v16, v17, v18, v19, v20, v21, v22, v23 = v16 * alpha, v17 * alpha, v18 * alpha, v19 * alpha, \
            v20 * alpha, v21 * alpha, v22 * alpha, v23 * alpha
        v24, v25, v26, v27, v28, v29, v30, v31 = v24 * alpha, v25 * alpha, v26 * alpha, v27 * alpha, \
            v28 * alpha, v29 * alpha, v30 * alpha, v31 * alpha
        n_t = tl.minimum(end - start, BT)
        if SH:
            (cm0, cm1, cm2, cm3, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
             v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31) = _value_block_sh(
                vc_ptr, vs_ptr, vm_ptr, vstride, s_vst, start, warp * 128, n_t, gid, tig, p0, alpha,
                cm0, cm1, cm2, cm3, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
                NG, SDENSE, NW, ASM)
        else:
            tl.debug_barrier()  # the previous tile's reads of p and u are done
            tl.store(p_ptr + wrow[:, None] * 16 + j16[None, :], p0, mask=useful[:, None])  # every token: 0 past end
            if RB == 2:
                tl.store(p_ptr + (wrow + 8)[:, None] * 16 + j16[None, :], p1, mask=useful[:, None])
            tl.debug_barrier()
            # u = p * value scale, [group, token] fp16, for all BT tokens (0 past n_t: the value steps read whole
            # word rows), and the p * min sums, UF x NG (token, group) pairs a thread a pass (as v3)
            cg = tl.zeros((NT * NG * UF,), tl.float32)
            for e0 in range(0, BT * NG, NT * NG * UF):
                e = e0 + tl.arange(0, NT * NG * UF)
                tt = e // NG
                g = e % NG
                ok = tt < n_t
                pt = tl.load(p_ptr + tt)
                x = (start + tt) * s_vst + g
                sv = tl.load(vs_ptr + x, mask=ok, other=0.0).to(tl.float32)
                mv = tl.load(vm_ptr + x, mask=ok, other=0.0).to(tl.float32)
                tl.store(u_ptr + g * BT + tt, (pt * sv).to(tl.float16))
                cg += pt * mv
            cpm = cpm * alpha + tl.sum(tl.reshape(cg, (NT * UF, NG)), axis=0)
            tl.debug_barrier()
            for rb in tl.static_range(RB):  # the warp's 128 x RB tokens
                v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, \
                    v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31 = _value_block(
                        vc_ptr, u32_ptr, vstride, start, (warp * RB + rb) * 128, n_t, gid, tig, bl,
                        v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                        v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, BT, NW, ASM)
    o = _useful16(odd, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                  v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31)
    if SH:  # onto the program's max: each lane's sums and outputs times 2^(its warp's max - the max)
        m_i = tl.max(m_w, axis=0)
        f_w = tl.exp2(m_w - tl.where(m_i == float("-inf"), 0.0, m_i))
        l_i = tl.sum(l_w * f_w, axis=0)
        o = o * f_w[:, None]
        cm0, cm1 = cm0 * f_w, cm1 * f_w
    o = tl.where(useful[:, None], o * unscale[None, :], 0.0)  # [lanes, 16]: channel 16 gid + j
    o = tl.reshape(tl.sum(tl.sum(tl.reshape(o, (NW, 8, 4, 16)), axis=2), axis=0), (D,))  # over warps and tig
    gsel_d = (ch // G)[:, None] == tl.arange(0, NG)[None, :]
    if SH:  # C' row 0: lane 2 holds columns 4, 5 (groups 0, 1), lane 3 columns 6, 7
        cpm = tl.where(tl.arange(0, NG) == 0, tl.sum(tl.where(lane == 2, cm0, 0.0), axis=0), 0.0) \
            + tl.where(tl.arange(0, NG) == 1, tl.sum(tl.where(lane == 2, cm1, 0.0), axis=0), 0.0) \
            + tl.where(tl.arange(0, NG) == 2, tl.sum(tl.where(lane == 3, cm0, 0.0), axis=0), 0.0) \
            + tl.where(tl.arange(0, NG) == 3, tl.sum(tl.where(lane == 3, cm1, 0.0), axis=0), 0.0)
    o = o + tl.sum(tl.where(gsel_d, cpm[None, :], 0.0), axis=1)
    return m_i, l_i, tl.reshape(o, (1, D))
