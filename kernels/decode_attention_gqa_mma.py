"""The GQA kernel's bulk on tensor cores: a kv head's 4 or 8 query heads as the MMA's n columns.

The pair path (`decode_attention_gqa._bulk_gqa_packed`) dequantizes each code once on CUDA cores and spends
~1.4 instructions a (code, head); on the H200 it reads the Llama-3.1-8B cache at ~0.9 TB/s (1.05-1.13x fp16
SDPA). MHA's tensor-core bulk (`decode_attention_mma.py`) feeds mma.sync straight from the packed words, but
its n columns are the 4 groups of its rows, one useful in 8. Here the columns are the query heads, so
every product is useful at 8 heads a kv head and half of them at 4, and a warp's MMAs serve all heads:

  * A block is one key group (32 tokens) a warp. Its rows must share a group (the B operand holds q *
    scale of one group), so a word row's 16 codes are spread over 4 lanes: lane gid = 4 a + b takes word
    row a of the group with its words shifted right by 2 b, so that the same AND masks as MHA's give it
    codes b and b + 4 (low halves; b + 8 and b + 12 from the high halves). Two MMAs a k step (masks j = 0
    and 4) then cover the group: row gid of MMA j is token 16 a + j + b, row gid + 8 token 16 a + 8 + j + b.
    Each word is loaded by 4 lanes (L1 serves the repeats).
  * Keys: A = codes (16 tokens x 16 channels), B = q * scale (16 channels x 8 heads: lane gid gives head
    gid; zeros past the kv head's heads; one HMUL2 a register of the scales, loaded as fp16x2 pairs),
    C = scores (tokens x heads: lane (gid, tig) holds heads 2 tig, 2 tig + 1). A lane's channels are 8
    consecutive ones of each 32-channel block, two k steps a block (`_key_mma2`). The biases sum q * min are
    one more MMA a k step, whose A is the block's 16-byte mins load as it stands (every row alike; rows gid
    with the even step's B = q, rows gid + 8 with the odd step's): exact products, no register moves (session
    17: 38 -> 10 moves a tile, 72 -> 64 loads).
  * Softmax per head: a running max a warp (butterflies over gid), a sum a lane. With TAU (the launcher's
    MMA_LAZY_RESCALE) the max moves, and the sums and accumulators are rescaled,
    only where a tile's max passes it by more than TAU, in a warp-uniform branch: most tiles skip ~52
    instructions (H200, Llama-3.1-8B 8x32K 101.2 -> 96.6 us, h200_round44.md).
  * Values: out[h, d] = sum_t p[h, t] (c[t, d] scale[t, g(d)] + min[t, g(d)]). A = codes (16 channels of one
    group x 16 tokens, the same lane shifts: row gid of MMA j is channel 16 (2 g + a) + j + b), B = p * scale
    (tokens x heads). The key MMA's C tile is that B transposed, tile by tile: one F2FP packs two heads of a
    row and movmatrix.trans turns the 8 x 8 fp16 tile so that lane (gid, tig) holds head gid at the tokens
    of k slots 2 tig, 2 tig + 1. One HMUL2 a register applies a token pair's scales.
  * Value mins: sum_t p[h, t] min[t, g] for all heads and groups is one MMA a k step with A = p (heads x
    tokens: the transposed tiles again) and B = min (tokens x groups).
  * Whole tiles only (the caller leaves a partial one to v1's tiles), so no load is masked by the length, and
    each kind of load is one address a tile plus immediates (dense value rows, constant strides): a
    tile is ~610 instructions, ~870 before (session 11: ~130 of them address and mask arithmetic, ~70 the
    fp32 bias products and their shuffles).
  * Load order: with EARLY a tile's loads (72 then, 64 now) all issue before its first MMA (`_after`; ptxas
    otherwise puts the value loads after the key MMAs, two memory round trips a tile). It was the faster order for the
    ~870-instruction tile and is 3-9% slower for this one, so the launcher's default leaves the order to
    ptxas. One warp a program, capped at 168 registers (no spills since the window's split runs on tensor
    cores, REST_DOT; 12 programs an SM by registers, 9 by the kernel's 23 KB of shared memory, which that
    split's tl.dot tiles take). H200, GPU time from graphs (benchmarks/results/h200_round28.md):
    Llama-3.1-8B 140.0-262.8 us at 8x32K-128x4096, 1.72-1.82x fp16 SDPA (session 12, eager: 145.9-307.2,
    1.44-1.76x); Llama-3.1-70B 144.3-269.8 us, 1.70-1.78x (session 12: 159.4-403.5, 1.15-1.61x).

  * The next tile into L2 (PF, `_prefetch_lanes`): at the top of each tile every lane issues one
    prefetch.global.L2 for a line of the next tile, so its bytes are on the way while this tile computes; a
    program otherwise had one tile's ~3 KB in flight, its loads issued after the last tile's MMAs. H200, from
    graphs (h200_round33.md): Llama-3.1-8B 8x32K 137.2 -> 110.5 us, 128x4096 263.0 -> 222.3, 1x32K 37.9 -> 33.8.

  * Compact loads, measured and removed (session 16, h200_round38.md; removed in session 18 after commit 60cf50e):
    each key and value word of a group loaded once a warp and handed to the lanes that use it by 64 shuffles a
    tile, the next tile's key words, scales and mins a tile ahead in registers. They won 2-5% where one launch ran
    two waves; the window's own launch at whole waves of splits (h200_round52-53) beat them there: Llama-3.1-8B
    64x4096 115.3 -> 106.4 us, 128x4096 209.6 -> 204.1, 70B 128x4096 216.7 -> 216.6.

Under TRITON_INTERPRET=1 the asm has twins built from `decode_attention_mma._mma_ref` (PTX's m16n8k16
fragment layouts), so CI runs the same lanes, shifts and transposes; the PTX runs on the GPU only.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .decode_attention_mma import (_f16x2, _h2f, _ld0, _mma_ref, _pack2, _pairs_k, _prmt_ref, _shfl, mma_ptx,
                                   prmt_ptx)
from .tile_ops import _join32n, _split4n


def _mma2s_asm() -> str:
    """PTX for `_mma2s`: words w0..w3 ($8..$11) shifted right by $12, B pairs $13, $14, 8 accumulators ($0..$7,
    tied). PRMT pairs the low and the high halves of (w0, w1) and (w2, w3); masks j = 0 and 4 make the A
    fragments of two m16n8k16 (accumulators 0..3 and 4..7)."""
    L = ["{", ".reg .b32 x0, x1, x2, x3, l01, h01, l23, h23, a0, a1, a2, a3;"]
    L += [f"shr.u32 x{i}, ${8 + i}, $12;" for i in range(4)]
    L += prmt_ptx("x0", "x1", "01") + prmt_ptx("x2", "x3", "23")
    for j, mask in ((0, 0x00030003), (1, 0x03000300)):
        L += [f"and.b32 a{i}, {src}, {mask:#x};" for i, src in enumerate(("l01", "h01", "l23", "h23"))]
        L.append(mma_ptx(", ".join(f"${4 * j + i}" for i in range(4)), "a0, a1, a2, a3", "$13, $14"))
    L.append("}")
    return "\n".join(L)


_MMA2S_SRC = tl.constexpr(_mma2s_asm())
_MMA2S_CONSTRAINTS = tl.constexpr(",".join(["=f"] * 8 + ["r"] * 7 + [str(i) for i in range(8)]))


@triton.jit
def _mma2s(w0, w1, w2, w3, sh, b0, b1, c0, c1, c2, c3, c4, c5, c6, c7, NW: tl.constexpr, ASM: tl.constexpr):
    # two m16n8k16 from 4 packed words shifted right by the lane's sh: codes at masks j = 0 (c0..c3) and 4
    # (c4..c7), as fp16 subnormals c * 4^j * 2^-24
    if ASM:
        return tl.inline_asm_elementwise(_MMA2S_SRC, _MMA2S_CONSTRAINTS,
                                         [w0, w1, w2, w3, sh, b0, b1, c0, c1, c2, c3, c4, c5, c6, c7],
                                         (tl.float32,) * 8, True, 1)
    else:
        # the arithmetic shift's sign bits reach bit 26 at most (sh <= 6), above every bit the masks keep
        x0, x1, x2, x3 = w0 >> sh, w1 >> sh, w2 >> sh, w3 >> sh
        l01, h01 = _prmt_ref(x0, x1, False), _prmt_ref(x0, x1, True)
        l23, h23 = _prmt_ref(x2, x3, False), _prmt_ref(x2, x3, True)
        c0, c1, c2, c3 = _mma_ref(l01 & 0x00030003, h01 & 0x00030003, l23 & 0x00030003, h23 & 0x00030003,
                                  b0, b1, c0, c1, c2, c3, NW)
        c4, c5, c6, c7 = _mma_ref(l01 & 0x03000300, h01 & 0x03000300, l23 & 0x03000300, h23 & 0x03000300,
                                  b0, b1, c4, c5, c6, c7, NW)
        return c0, c1, c2, c3, c4, c5, c6, c7


def _after_asm(n_words: int, n_halves: int) -> str:
    """PTX for `_after`: $1 plus a zero computed from the words $2.. and the fp16 halves after them (XORed,
    converted to fp32, times 0: ptxas cannot fold a float product with 0, so the zero waits for every input)."""
    L = ["{", ".reg .b32 x, h; .reg .f32 f;", "xor.b32 x, $2, $3;"]
    L += [f"xor.b32 x, x, ${i};" for i in range(4, 2 + n_words)]
    for i in range(2 + n_words, 2 + n_words + n_halves, 2):
        L += [f"mov.b32 h, {{${i}, ${i + 1}}};", "xor.b32 x, x, h;"]
    L += ["cvt.rn.f32.u32 f, x;", "mul.rn.f32 f, f, 0f00000000;", "cvt.rzi.s32.f32 x, f;", "add.s32 $0, $1, x;", "}"]
    return "\n".join(L)


_AFTER_SRC = tl.constexpr(_after_asm(32, 16))
_AFTER_CONSTRAINTS = tl.constexpr(",".join(["=r", "r"] + ["r"] * 32 + ["h"] * 16))


@triton.jit
def _after(x, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
           w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
           h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15, ASM: tl.constexpr):
    # x (int32), once the 32 words and 16 fp16 values have arrived: ptxas otherwise places the value phase's
    # loads after the key MMAs, which wait for the key loads (a warp issues in order), so each tile paid two
    # memory round trips instead of one
    if ASM:
        return tl.inline_asm_elementwise(
            _AFTER_SRC, _AFTER_CONSTRAINTS,
            [x, w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
             w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
             h0, h1, h2, h3, h4, h5, h6, h7, h8, h9, h10, h11, h12, h13, h14, h15], tl.int32, True, 1)
    else:
        return x


_MMA_A_SRC = tl.constexpr(mma_ptx("$0, $1, $2, $3", "$4, $5, $6, $7", "$8, $9"))


@triton.jit
def _mma_a(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3, NW: tl.constexpr, ASM: tl.constexpr):
    # one m16n8k16 from A and B fragments in registers
    if ASM:
        return tl.inline_asm_elementwise(_MMA_A_SRC, "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3",
                                         [a0, a1, a2, a3, b0, b1, c0, c1, c2, c3], (tl.float32,) * 4, True, 1)
    else:
        return _mma_ref(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3, NW)


@triton.jit
def _movt(x, NW: tl.constexpr, ASM: tl.constexpr):
    # movmatrix.trans: the warp's 8 x 8 fp16 tile (lane 4 r + t holds row r, columns 2 t, 2 t + 1) transposed
    if ASM:
        return tl.inline_asm_elementwise("movmatrix.sync.aligned.m8n8.trans.b16 $0, $1;", "=r,r", [x], tl.int32,
                                         True, 1)
    else:
        t = tl.permute(_pairs_k(x, NW), (0, 2, 1))  # (warp, row, column) -> (warp, column, row)
        lo, hi = tl.split(tl.reshape(t, (NW, 8, 4, 2)))
        return tl.reshape(_pack2(lo.to(tl.float16), hi.to(tl.float16), False), (NW * 32,))


@triton.jit
def _hmul2(x, y, ASM: tl.constexpr):
    # fp16x2 product (one rounding a half)
    if ASM:
        return tl.inline_asm_elementwise("mul.rn.f16x2 $0, $1, $2;", "=r,r,r", [x, y], tl.int32, True, 1)
    else:
        lo = (_h2f(x, False) * _h2f(y, False)).to(tl.float16)  # an fp16 x fp16 product is exact in fp32
        hi = (_h2f(x, True) * _h2f(y, True)).to(tl.float16)
        return _pack2(lo, hi, False)


@triton.jit
def _tig_max(x, NW: tl.constexpr):
    # the max of x over the 8 lanes of each (warp, tig), in each of them (fp32; butterflies over gid)
    m = tl.max(tl.reshape(x, (NW, 8, 4)), axis=1)
    return tl.reshape(tl.broadcast_to(m[:, None, :], (NW, 8, 4)), (NW * 32,))


@triton.jit
def _key_mma2(w0, w1, w2, w3, w4, w5, w6, w7, sq, mq, qe, qo, sh, c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3,
              y0, y1, y2, y3, NW: tl.constexpr, ASM: tl.constexpr):
    # key k steps 2 j (even) and 2 j + 1 (odd), channels c + 0..7 with c = 32 j + 8 tig: the even step's k slots 2 tig,
    # 2 tig + 1, + 8, + 9 are channels c, c + 1, c + 4, c + 5 (words w0..w3), the odd step's c + 2, c + 3, c + 6, c + 7
    # (w4..w7). sq, mq: the 8 channels' scales and mins as 4 fp16x2 registers ([lanes, 4], one 16-byte load); qe, qo:
    # the query at each step's channels ([lanes, 2]). B = q * scale (one HMUL2 a register) and two code MMAs a step
    # into c. The bias sum q * min is two MMAs with A = the mins as loaded, every row alike: rows gid of the one with
    # the even step's B = q take channels c, c + 1, c + 4, c + 5 (x), rows gid + 8 of the one with the odd step's the
    # others (y), so each lane's bias is x0 + y2, x1 + y3. Exact products, and the A operand is the load's 4
    # registers as they are: an A of (mins, mins) pairs took 4 register moves an MMA, 32 a tile (round 38's
    # long-scoreboard stalls on IMAD: those moves waiting for the mins)
    sA, sB, sC, sD = _split4n(sq)
    mA, mB, mC, mD = _split4n(mq)
    qA, qC = tl.split(qe)
    qB, qD = tl.split(qo)
    x0, x1, x2, x3 = _mma_a(mA, mB, mC, mD, qA, qC, x0, x1, x2, x3, NW, ASM)
    y0, y1, y2, y3 = _mma_a(mA, mB, mC, mD, qB, qD, y0, y1, y2, y3, NW, ASM)
    c0, c1, c2, c3, c4, c5, c6, c7 = _mma2s(w0, w1, w2, w3, sh, _hmul2(sA, qA, ASM), _hmul2(sC, qC, ASM),
                                            c0, c1, c2, c3, c4, c5, c6, c7, NW, ASM)
    c0, c1, c2, c3, c4, c5, c6, c7 = _mma2s(w4, w5, w6, w7, sh, _hmul2(sB, qB, ASM), _hmul2(sD, qD, ASM),
                                            c0, c1, c2, c3, c4, c5, c6, c7, NW, ASM)
    return c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3, y0, y1, y2, y3


@triton.jit
def octs4(p):
    # a lane's 8 channels c + 0..7 (c = 32 j + 8 tig) of each 32-channel block j as two [lanes, 4] loads, at p + 32 j
    # and p + 32 j + 4 (p: the lane's first channel + 0..3)
    return (tl.load(p), tl.load(p + 4), tl.load(p + 32), tl.load(p + 36), tl.load(p + 64), tl.load(p + 68),
            tl.load(p + 96), tl.load(p + 100))


@triton.jit
def quads4(p):
    # four [lanes, 4] loads at p + 16 j: a lane's 8 fp16 channels c + 0..7 of each block j as fp16x2 pairs (int32 p)
    return tl.load(p), tl.load(p + 16), tl.load(p + 32), tl.load(p + 48)


@triton.jit
def _kwords(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
            w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31):
    # a lane's 32 key words from block order (block j: words c + 0..7, c = 32 j + 8 tig) to k-step order
    # (`_key_mma2`: step 2 j takes words c, c + 1, c + 4, c + 5, step 2 j + 1 the others)
    return (w0, w1, w4, w5, w2, w3, w6, w7, w8, w9, w12, w13, w10, w11, w14, w15,
            w16, w17, w20, w21, w18, w19, w22, w23, w24, w25, w28, w29, w26, w27, w30, w31)


@triton.jit
def _qsteps(q32, ok):
    # the query of block j's two k steps as fp16x2 pairs, [lanes, 2] each (even: channels c, c + 1 | c + 4, c + 5;
    # odd: c + 2, c + 3 | c + 6, c + 7), from q32: the lane's channel pair c, c + 1 (int32). One 4-byte load a pair:
    # with the 4 pairs of a block from one load, the B operands' pairs (c, c + 4), (c + 2, c + 6) took 16 register moves
    # a tile (ptxas re-formed them in the loop)
    qA, qB, qC, qD = _ld0(q32, ok), _ld0(q32 + 1, ok), _ld0(q32 + 2, ok), _ld0(q32 + 3, ok)
    return tl.join(qA, qC), tl.join(qB, qD)


@triton.jit
def _l2_prefetch(p, ASM: tl.constexpr):
    # prefetch.global.L2 of the line holding each lane's address (int8 pointers): the bytes come into L2 without
    # a register waiting for them, so they add to a program's loads in flight at one instruction. Not pure, so
    # nothing removes it though its zero result is unused. A no-op off the GPU
    if ASM:
        tl.inline_asm_elementwise("prefetch.global.L2 [$1];\nmov.u32 $0, 0;", "=r,l", [p], tl.int32, False, 1)


@triton.jit
def _prefetch_lanes(kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, s_kcw, s_ksg, s_kmg, lane, D: tl.constexpr):
    # a lane's line of key group 0 and its step a group (bytes) for `_l2_prefetch`: a group's 24 lines (128 B),
    # one a lane (lanes 24..31 repeat 0..7): key words (2 rows of D words, 8 lines), value words (32 dense rows of
    # D / 16 words, 8), key scales and mins (a row of D halves each, 2 + 2), value scales and mins (32 dense rows
    # of D / 32 halves each, 2 + 2). Out of the loop: in it a prefetch is one multiply-add and the instruction
    tl.static_assert(D == 128, "the prefetch lines are laid out for head_dim 128")
    i8: tl.constexpr = tl.pointer_type(tl.int8)
    j = lane % 24
    line = (j % 4) * 128
    base = tl.where(j < 8, kc_ptr.to(i8) + (j // 4) * (s_kcw * 4) + line,
                    tl.where(j < 16, vc_ptr.to(i8) + (j - 8) * 128,
                             tl.where(j < 18, ks_ptr.to(i8), tl.where(j < 20, km_ptr.to(i8),
                                      tl.where(j < 22, vs_ptr.to(i8), vm_ptr.to(i8)))) + (j % 2) * 128))
    step = tl.where(j < 8, 8 * s_kcw, tl.where(j < 16, 32 * (D // 16) * 4, tl.where(j < 18, 2 * s_ksg,
                    tl.where(j < 20, 2 * s_kmg, 32 * (D // 32) * 2)))).to(tl.int64)
    return base, step


@triton.jit
def _key_scores(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
                w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
                s0, s1, s2, s3, m0, m1, m2, m3, q0, q1, q2, q3, q4, q5, q6, q7, valid_ptr, s_mt, tok0, a, sh,
                NW: tl.constexpr, HAS_VALID: tl.constexpr, ASM: tl.constexpr):
    # the scores of the warp's group (tokens tok0 .. tok0 + 31) from its loaded words, scales, mins (block j: w 8 j ..
    # 8 j + 7 in k-step order, s j, m j) and query (k step kk: q kk), for the lane's heads 2 tig (x0) and 2 tig + 1
    # (x1): sJH_x is token tok0 + 16 a + b + 4 J + 8 H, biased, not yet times qk_scale, -inf where masked (the group is
    # whole)
    z = tl.zeros_like(tok0.to(tl.float32))
    c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3, y0, y1, y2, y3 = z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
    c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3, y0, y1, y2, y3 = _key_mma2(
        w0, w1, w2, w3, w4, w5, w6, w7, s0, m0, q0, q1, sh, c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3,
        y0, y1, y2, y3, NW, ASM)
    c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3, y0, y1, y2, y3 = _key_mma2(
        w8, w9, w10, w11, w12, w13, w14, w15, s1, m1, q2, q3, sh, c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3,
        y0, y1, y2, y3, NW, ASM)
    c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3, y0, y1, y2, y3 = _key_mma2(
        w16, w17, w18, w19, w20, w21, w22, w23, s2, m2, q4, q5, sh, c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3,
        y0, y1, y2, y3, NW, ASM)
    c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3, y0, y1, y2, y3 = _key_mma2(
        w24, w25, w26, w27, w28, w29, w30, w31, s3, m3, q6, q7, sh, c0, c1, c2, c3, c4, c5, c6, c7, x0, x1, x2, x3,
        y0, y1, y2, y3, NW, ASM)
    bias0, bias1 = x0 + y2, x1 + y3
    t00 = tok0 + 16 * a + (sh // 2)
    u0 = 16777216.0  # 2^24: mask j = 0 gives c * 2^-24
    u4 = 65536.0  # 2^16: mask j = 4 gives c * 4^4 * 2^-24
    s00_0, s00_1 = c0 * u0 + bias0, c1 * u0 + bias1
    s01_0, s01_1 = c2 * u0 + bias0, c3 * u0 + bias1
    s10_0, s10_1 = c4 * u4 + bias0, c5 * u4 + bias1
    s11_0, s11_1 = c6 * u4 + bias0, c7 * u4 + bias1
    if HAS_VALID:
        ok00 = tl.load(valid_ptr + t00 * s_mt) != 0
        ok01 = tl.load(valid_ptr + (t00 + 8) * s_mt) != 0
        ok10 = tl.load(valid_ptr + (t00 + 4) * s_mt) != 0
        ok11 = tl.load(valid_ptr + (t00 + 12) * s_mt) != 0
        ninf = float("-inf")
        s00_0, s00_1 = tl.where(ok00, s00_0, ninf), tl.where(ok00, s00_1, ninf)
        s01_0, s01_1 = tl.where(ok01, s01_0, ninf), tl.where(ok01, s01_1, ninf)
        s10_0, s10_1 = tl.where(ok10, s10_0, ninf), tl.where(ok10, s10_1, ninf)
        s11_0, s11_1 = tl.where(ok11, s11_0, ninf), tl.where(ok11, s11_1, ninf)
    return s00_0, s00_1, s01_0, s01_1, s10_0, s10_1, s11_0, s11_1


@triton.jit
def _vwords(p, s_vct):
    # the value code words at p (a lane's token t, word column) and at tokens t + 1, t + 8, t + 9. Offsets on a
    # pointer: with the constant strides they become the loads' immediates; an int32 index t + k would be
    # sign-extended once per k (SASS: ~60 address instructions a tile)
    return tl.load(p), tl.load(p + s_vct), tl.load(p + 8 * s_vct), tl.load(p + 9 * s_vct)


@triton.jit
def _vrow(p):
    # a token's 4 value scales (or mins) from its row pointer p, [lanes, 4]
    return tl.load(p[:, None] + tl.arange(0, 4)[None, :])


@triton.jit
def _vmin(p, gid):
    # the min MMA's B entries: lane gid < 4 gives group gid's min of its token (p: the token's min row + gid)
    return tl.load(p, mask=gid < 4, other=0.0)


@triton.jit
def _value_step(w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15, r0, r1, r8, r9,
                n0, n1, n8, n9, sh, pb0, pb1,
                v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
                cm0, cm1, cm2, cm3, NW: tl.constexpr, ASM: tl.constexpr):
    # one value k step (16 tokens: t, t + 1, t + 8, t + 9 for the lane's k slots) from its loaded words (group
    # g: w 4 g .. 4 g + 3), scale rows r and min entries n: the 4 groups' MMAs (accumulators 8 g .. 8 g + 7)
    # and the min MMA
    z = tl.zeros_like(w0)
    cm0, cm1, cm2, cm3 = _mma_a(pb0, z, pb1, z, _pack2(n0, n1, ASM), _pack2(n8, n9, ASM), cm0, cm1, cm2, cm3,
                                NW, ASM)
    a0, a1, a2, a3 = _split4n(r0)
    b0, b1, b2, b3 = _split4n(r1)
    e0, e1, e2, e3 = _split4n(r8)
    f0, f1, f2, f3 = _split4n(r9)
    v0, v1, v2, v3, v4, v5, v6, v7 = _mma2s(w0, w1, w2, w3, sh, _hmul2(pb0, _pack2(a0, b0, ASM), ASM),
                                            _hmul2(pb1, _pack2(e0, f0, ASM), ASM),
                                            v0, v1, v2, v3, v4, v5, v6, v7, NW, ASM)
    v8, v9, v10, v11, v12, v13, v14, v15 = _mma2s(w4, w5, w6, w7, sh, _hmul2(pb0, _pack2(a1, b1, ASM), ASM),
                                                  _hmul2(pb1, _pack2(e1, f1, ASM), ASM),
                                                  v8, v9, v10, v11, v12, v13, v14, v15, NW, ASM)
    v16, v17, v18, v19, v20, v21, v22, v23 = _mma2s(w8, w9, w10, w11, sh, _hmul2(pb0, _pack2(a2, b2, ASM), ASM),
                                                    _hmul2(pb1, _pack2(e2, f2, ASM), ASM),
                                                    v16, v17, v18, v19, v20, v21, v22, v23, NW, ASM)
    v24, v25, v26, v27, v28, v29, v30, v31 = _mma2s(w12, w13, w14, w15, sh, _hmul2(pb0, _pack2(a3, b3, ASM), ASM),
                                                    _hmul2(pb1, _pack2(e3, f3, ASM), ASM),
                                                    v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    return (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, cm0, cm1, cm2, cm3)


@triton.jit
def _first_heads(x, QG: tl.constexpr):
    # rows 0..QG-1 of an [8, ...] tensor (QG = 4 or 8)
    if QG == 8:
        return x
    else:
        lo, hi = tl.split(tl.permute(tl.reshape(x, (2, 4, x.shape[1])), (1, 2, 0)))
        return lo


@triton.jit
def _rescale(al0, al1, al_g, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
             v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, cm0, cm1):
    # the lane's sums and accumulators onto a new max: group g's c0..c7 are v[8 g ..], (J, H, x) = rows of mask
    # 4 J, high half H, head 2 tig + x; the min sums' C rows are heads (al_g: head gid's factor)
    return (l0 * al0, l1 * al1, v0 * al0, v1 * al1, v2 * al0, v3 * al1, v4 * al0, v5 * al1, v6 * al0, v7 * al1,
            v8 * al0, v9 * al1, v10 * al0, v11 * al1, v12 * al0, v13 * al1, v14 * al0, v15 * al1,
            v16 * al0, v17 * al1, v18 * al0, v19 * al1, v20 * al0, v21 * al1, v22 * al0, v23 * al1,
            v24 * al0, v25 * al1, v26 * al0, v27 * al1, v28 * al0, v29 * al1, v30 * al0, v31 * al1,
            cm0 * al_g, cm1 * al_g)


@triton.jit
def _onto_max(m0, m1, mt0, mt1, gid, h_src, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14,
              v15, v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, cm0, cm1,
              NW: tl.constexpr, ASM: tl.constexpr):
    # the running maxes of heads 2 tig, 2 tig + 1 onto the tile's (mt0, mt1), the sums and accumulators rescaled
    n0, n1 = tl.maximum(m0, mt0), tl.maximum(m1, mt1)
    al0 = tl.exp2(m0 - tl.where(n0 == float("-inf"), 0.0, n0))
    al1 = tl.exp2(m1 - tl.where(n1 == float("-inf"), 0.0, n1))
    al_g = tl.where(gid % 2 == 0, _shfl(al0, h_src, NW, ASM), _shfl(al1, h_src, NW, ASM))  # head gid's
    (l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
     v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, cm0, cm1) = \
        _rescale(al0, al1, al_g, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13,
                 v14, v15, v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30,
                 v31, cm0, cm1)
    return (n0, n1, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, cm0, cm1)


@triton.jit
def _bulk_gqa_mma(q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr,
                  s_kcw, s_ksg, s_kmg, s_mt, lo, end, qk_scale,
                  QG: tl.constexpr, D: tl.constexpr, NW: tl.constexpr, HAS_VALID: tl.constexpr, ASM: tl.constexpr,
                  EARLY: tl.constexpr, PF: tl.constexpr, TAU: tl.constexpr = 0.0):
    # [lo, end) in whole tiles of 32 x NW tokens (k2v2, fp16, D = 128, G = 32, qk_scale > 0, dense value rows:
    # the launcher checks; the caller leaves a partial tile to v1's tiles), a key group a warp, so no load is
    # masked by the length. Returns the QG heads' max [QG], sum [QG] and output [QG, D] (not normalized), as the
    # other GQA bulks.
    # Value rows 8 words and scale / min rows 4 halves apart, so a tile's value loads share one address and
    # immediate offsets. Rows at other strides are refused: with scale rows 5 halves apart (and 16-divisible head
    # strides) the GPU faulted, "misaligned address" (h200_round27: every such call at 9,000 tokens, none at
    # 4,133, whose odd head strides leave Triton no alignment to assume). The likely cause: a token's 4 scales
    # (_vrow), the one vector load whose alignment depends on the row stride
    NT: tl.constexpr = NW * 32
    BT: tl.constexpr = NW * 32
    s_vct = D // 16
    s_vst = D // 32
    s_vmt = D // 32
    t = tl.arange(0, NT)
    lane = t % 32
    warp = t // 32
    gid = lane // 4
    tig = lane % 4
    a = gid // 4  # the lane's word row (keys) / word column (values) of the group
    sh = 2 * (gid % 4)  # its word shift: codes b and b + 4 of each half at masks j = 0 and 4
    # value k slots 2 tig, 2 tig + 1 (+ 8) hold C rows 2 tig, 2 tig + 1 of the key MMA: tokens 16 (tig // 2)
    # + 2 (tig % 2) + 4 J (+ 1, + 8, + 9) of the group
    tv = 16 * (tig // 2) + 2 * (tig % 2)
    h_src = gid // 2  # the lane holding head gid's softmax state: (gid // 2) of tig, element gid % 2
    z = tl.zeros((NT,), tl.float32)
    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15 = \
        z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
    v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31 = \
        z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
    cm0, cm1, cm2, cm3 = z, z, z, z
    m0 = tl.full((NT,), float("-inf"), tl.float32)  # the warp's running max of head 2 tig (m1: 2 tig + 1)
    m1 = m0
    l0, l1 = z, z  # the lane's sums
    ch8 = (8 * tig)[:, None] + tl.arange(0, 4)[None, :]
    # the query as fp16x2 pairs (the launcher checks its rows are 4-byte aligned)
    q32 = q_ptr.to(tl.pointer_type(tl.int32)) + gid * (s_qh // 2) + 4 * tig
    # the key B lanes' query channels 16 kk + 4 tig + 0..3 as fp16x2 pairs (zeros past the kv head's heads)
    q0, q1 = _qsteps(q32, gid < QG)
    q2, q3 = _qsteps(q32 + 16, gid < QG)
    q4, q5 = _qsteps(q32 + 32, gid < QG)
    q6, q7 = _qsteps(q32 + 48, gid < QG)
    # key scales and mins as fp16x2 pairs, a lane's 8 channels of a block in one 16-byte load where Triton can
    # prove the alignment (the launcher checks their rows are 4-byte aligned)
    cq = (4 * tig)[:, None] + tl.arange(0, 4)[None, :]
    ks32 = ks_ptr.to(tl.pointer_type(tl.int32))
    km32 = km_ptr.to(tl.pointer_type(tl.int32))
    if PF > 0:
        pf_base, pf_step = _prefetch_lanes(kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, s_kcw, s_ksg, s_kmg,
                                           lane, D)
        for k in tl.static_range(1, PF):  # the tiles between the first and the loop's first prefetch
            _l2_prefetch(pf_base + ((tl.minimum(lo + k * BT, end - BT) + 32 * warp) // 32) * pf_step, ASM)
    for start in range(lo, end, BT):
        tok0 = start + 32 * warp
        if PF > 0:  # the group PF tiles ahead into L2 (the last tiles repeat the split's last); lines are
            # read from L2, not from HBM, once a program's loads reach them
            _l2_prefetch(pf_base + ((tl.minimum(start + PF * BT, end - BT) + 32 * warp) // 32) * pf_step, ASM)
        t0 = tok0 + tv  # value k step 0 (step 1: + 4)
        # every load of the group first, in this order (a warp issues in order: a load placed after a use of an
        # earlier one waits for it): key words, key scales and mins, value words, value scales and mins
        ka0, kb0, ka1, kb1, ka2, kb2, ka3, kb3 = octs4(kc_ptr + (tok0 // 16 + a)[:, None] * s_kcw + ch8)
        w0, w1, w2, w3 = _split4n(ka0)
        w4, w5, w6, w7 = _split4n(kb0)
        w8, w9, w10, w11 = _split4n(ka1)
        w12, w13, w14, w15 = _split4n(kb1)
        w16, w17, w18, w19 = _split4n(ka2)
        w20, w21, w22, w23 = _split4n(kb2)
        w24, w25, w26, w27 = _split4n(ka3)
        w28, w29, w30, w31 = _split4n(kb3)
        (w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
         w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31) = _kwords(
            w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
            w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31)
        # (unmasked at 4 heads too: B's zero query makes its columns past them zero, and the mins are every row
        # of the bias MMA's A)
        ks0, ks1, ks2, ks3 = quads4(ks32 + (tok0 // 32 * (s_ksg // 2))[:, None] + cq)
        km0, km1, km2, km3 = quads4(km32 + (tok0 // 32 * (s_kmg // 2))[:, None] + cq)
        pw = vc_ptr + t0 * s_vct + a
        x0, x1, x2, x3 = _vwords(pw, s_vct)
        x4, x5, x6, x7 = _vwords(pw + 2, s_vct)
        x8, x9, x10, x11 = _vwords(pw + 4, s_vct)
        x12, x13, x14, x15 = _vwords(pw + 6, s_vct)
        y0, y1, y2, y3 = _vwords(pw + 4 * s_vct, s_vct)
        y4, y5, y6, y7 = _vwords(pw + 4 * s_vct + 2, s_vct)
        y8, y9, y10, y11 = _vwords(pw + 4 * s_vct + 4, s_vct)
        y12, y13, y14, y15 = _vwords(pw + 4 * s_vct + 6, s_vct)
        ps = vs_ptr + t0 * s_vst
        r0, r1, r8, r9 = _vrow(ps), _vrow(ps + s_vst), _vrow(ps + 8 * s_vst), _vrow(ps + 9 * s_vst)
        e0, e1, e8, e9 = _vrow(ps + 4 * s_vst), _vrow(ps + 5 * s_vst), _vrow(ps + 12 * s_vst), _vrow(ps + 13 * s_vst)
        pm = vm_ptr + t0 * s_vmt + gid
        u0, u1, u8, u9 = _vmin(pm, gid), _vmin(pm + s_vmt, gid), _vmin(pm + 8 * s_vmt, gid), \
            _vmin(pm + 9 * s_vmt, gid)
        o0, o1, o8, o9 = _vmin(pm + 4 * s_vmt, gid), _vmin(pm + 5 * s_vmt, gid), _vmin(pm + 12 * s_vmt, gid), \
            _vmin(pm + 13 * s_vmt, gid)
        sh_k = sh
        if EARLY:  # the key MMAs after every value load (one memory round trip a tile)
            ra, _, _, _ = _split4n(r0)
            rb, _, _, _ = _split4n(r1)
            rc, _, _, _ = _split4n(r8)
            rd, _, _, _ = _split4n(r9)
            re, _, _, _ = _split4n(e0)
            rf, _, _, _ = _split4n(e1)
            rg, _, _, _ = _split4n(e8)
            rh, _, _, _ = _split4n(e9)
            sh_k = _after(sh, x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15,
                          y0, y1, y2, y3, y4, y5, y6, y7, y8, y9, y10, y11, y12, y13, y14, y15,
                          ra, rb, rc, rd, re, rf, rg, rh, u0, u1, u8, u9, o0, o1, o8, o9, ASM)
        s00_0, s00_1, s01_0, s01_1, s10_0, s10_1, s11_0, s11_1 = _key_scores(
            w0, w1, w2, w3, w4, w5, w6, w7, w8, w9, w10, w11, w12, w13, w14, w15,
            w16, w17, w18, w19, w20, w21, w22, w23, w24, w25, w26, w27, w28, w29, w30, w31,
            ks0, ks1, ks2, ks3, km0, km1, km2, km3, q0, q1, q2, q3, q4, q5, q6, q7, valid_ptr, s_mt, tok0, a, sh_k,
            NW, HAS_VALID, ASM)
        mt0 = _tig_max(tl.maximum(tl.maximum(s00_0, s01_0), tl.maximum(s10_0, s11_0)), NW) * qk_scale
        mt1 = _tig_max(tl.maximum(tl.maximum(s00_1, s01_1), tl.maximum(s10_1, s11_1)), NW) * qk_scale
        if TAU > 0:  # onto a new max only where one grows past it by more than TAU (a warp-uniform branch)
            if tl.max(((mt0 > m0 + TAU) | (mt1 > m1 + TAU)).to(tl.int32), axis=0) > 0:
                (m0, m1, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                 v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, cm0, cm1) = \
                    _onto_max(m0, m1, mt0, mt1, gid, h_src, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10,
                              v11, v12, v13, v14, v15, v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27,
                              v28, v29, v30, v31, cm0, cm1, NW, ASM)
        else:
            (m0, m1, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
             v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, cm0, cm1) = \
                _onto_max(m0, m1, mt0, mt1, gid, h_src, l0, l1, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10,
                          v11, v12, v13, v14, v15, v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27,
                          v28, v29, v30, v31, cm0, cm1, NW, ASM)
        z0 = tl.where(m0 == float("-inf"), 0.0, m0)
        z1 = tl.where(m1 == float("-inf"), 0.0, m1)
        p00_0, p01_0 = tl.exp2(s00_0 * qk_scale - z0), tl.exp2(s01_0 * qk_scale - z0)
        p10_0, p11_0 = tl.exp2(s10_0 * qk_scale - z0), tl.exp2(s11_0 * qk_scale - z0)
        p00_1, p01_1 = tl.exp2(s00_1 * qk_scale - z1), tl.exp2(s01_1 * qk_scale - z1)
        p10_1, p11_1 = tl.exp2(s10_1 * qk_scale - z1), tl.exp2(s11_1 * qk_scale - z1)
        l0 += (p00_0 + p01_0) + (p10_0 + p11_0)
        l1 += (p00_1 + p01_1) + (p10_1 + p11_1)
        # p as the value MMAs' B: each key MMA's C tile (tokens x heads), two heads a register, transposed
        pb00 = _movt(_f16x2(p00_0, p00_1, ASM), NW, ASM)
        pb01 = _movt(_f16x2(p01_0, p01_1, ASM), NW, ASM)
        pb10 = _movt(_f16x2(p10_0, p10_1, ASM), NW, ASM)
        pb11 = _movt(_f16x2(p11_0, p11_1, ASM), NW, ASM)
        (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
         v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
         cm0, cm1, cm2, cm3) = _value_step(
            x0, x1, x2, x3, x4, x5, x6, x7, x8, x9, x10, x11, x12, x13, x14, x15, r0, r1, r8, r9, u0, u1, u8, u9,
            sh, pb00, pb01, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
            cm0, cm1, cm2, cm3, NW, ASM)
        (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
         v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
         cm0, cm1, cm2, cm3) = _value_step(
            y0, y1, y2, y3, y4, y5, y6, y7, y8, y9, y10, y11, y12, y13, y14, y15, e0, e1, e8, e9, o0, o1, o8, o9,
            sh, pb10, pb11, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
            cm0, cm1, cm2, cm3, NW, ASM)
    # onto the program's max per head: [warp, head] maxes (uniform over gid) and sums
    m_w = tl.reshape(tl.max(tl.reshape(tl.join(m0, m1), (NW, 8, 4, 2)), axis=1), (NW, 8))
    m_i = tl.max(m_w, axis=0)
    f_w = tl.exp2(m_w - tl.where(m_i == float("-inf"), 0.0, m_i)[None, :])  # [warp, head]
    l_i = tl.sum(tl.reshape(tl.sum(tl.reshape(tl.join(l0, l1), (NW, 8, 4, 2)), axis=1), (NW, 8)) * f_w, axis=0)
    # values: lane (a, b, tig) of a warp, accumulator 8 g + 4 J + 2 H + x -> head 2 tig + x, channel 32 g + 16 a
    # + 8 H + 4 J + b; the codes of mask 4 J are c * 4^(4 J) * 2^-24
    acc = tl.reshape(_join32n(v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                              v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31),
                     (NW, 2, 4, 4, 4, 2, 2, 2))  # (warp, a, b, tig, g, J, H, x)
    jj = tl.arange(0, 2)
    unscale = tl.where(jj == 0, 16777216.0, 65536.0)
    fw = tl.reshape(f_w, (NW, 4, 2))  # (warp, tig, x)
    acc = acc * fw[:, None, None, :, None, None, None, :] * unscale[None, None, None, None, None, :, None, None]
    acc = tl.permute(tl.sum(acc, axis=0), (2, 6, 3, 0, 5, 4, 1))  # (tig, x, g, a, H, J, b)
    out = tl.reshape(acc, (8, D))
    # min sums: lane (gid = head, tig) holds C[head][2 tig + y] (groups 0..3 in tig < 2)
    cm = tl.reshape(tl.join(cm0, cm1), (NW, 8, 8)) * f_w[:, :, None]  # (warp, head, column)
    cm = tl.sum(cm, axis=0)  # (head, column)
    cmg, _ = tl.split(tl.permute(tl.reshape(cm, (8, 2, 4)), (0, 2, 1)))  # columns 0..3: the groups
    out += tl.reshape(tl.broadcast_to(cmg[:, :, None], (8, 4, 32)), (8, D))
    return _first_heads(m_i[:, None], QG).reshape(QG), _first_heads(l_i[:, None], QG).reshape(QG), \
        _first_heads(out, QG)
