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
    gid; zeros past the kv head's heads), C = scores (tokens x heads: lane (gid, tig) holds heads 2 tig,
    2 tig + 1). Biases sum q * min come from the B lanes by two butterfly shuffles.
  * Softmax per head: a running max a warp (butterflies over gid), a sum a lane.
  * Values: out[h, d] = sum_t p[h, t] (c[t, d] scale[t, g(d)] + min[t, g(d)]). A = codes (16 channels of one
    group x 16 tokens, the same lane shifts: row gid of MMA j is channel 16 (2 g + a) + j + b), B = p * scale
    (tokens x heads). The key MMA's C tile is that B transposed, tile by tile: one F2FP packs two heads of a
    row and movmatrix.trans turns the 8 x 8 fp16 tile so that lane (gid, tig) holds head gid at the tokens
    of k slots 2 tig, 2 tig + 1. One HMUL2 a register applies a token pair's scales.
  * Value mins: sum_t p[h, t] min[t, g] for all heads and groups is one MMA a k step with A = p (heads x
    tokens: the transposed tiles again) and B = min (tokens x groups).

Under TRITON_INTERPRET=1 the asm has twins built from `decode_attention_mma._mma_ref` (PTX's m16n8k16
fragment layouts), so CI runs the same lanes, shifts and transposes; the PTX runs on the GPU only.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .decode_attention_mma import _f16x2, _h2f, _mma_ref, _pack2, _pairs_k, _prmt_ref, _shfl
from .tile_ops import _join32n, _split4n


def _mma2s_asm() -> str:
    """PTX for `_mma2s`: words w0..w3 ($8..$11) shifted right by $12, B pairs $13, $14, 8 accumulators ($0..$7,
    tied). PRMT pairs the low and the high halves of (w0, w1) and (w2, w3); masks j = 0 and 4 make the A
    fragments of two m16n8k16 (accumulators 0..3 and 4..7)."""
    L = ["{", ".reg .b32 x0, x1, x2, x3, l01, h01, l23, h23, a0, a1, a2, a3;"]
    L += [f"shr.u32 x{i}, ${8 + i}, $12;" for i in range(4)]
    L += ["prmt.b32 l01, x0, x1, 0x5410;", "prmt.b32 h01, x0, x1, 0x7632;",
          "prmt.b32 l23, x2, x3, 0x5410;", "prmt.b32 h23, x2, x3, 0x7632;"]
    for j, mask in ((0, 0x00030003), (1, 0x03000300)):
        L += [f"and.b32 a{i}, {src}, {mask:#x};" for i, src in enumerate(("l01", "h01", "l23", "h23"))]
        acc = ", ".join(f"${4 * j + i}" for i in range(4))
        L.append(f"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {{{acc}}}, {{a0, a1, a2, a3}}, {{$13, $14}}, "
                 f"{{{acc}}};")
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


@triton.jit
def _mma_a(a0, a1, a2, a3, b0, b1, c0, c1, c2, c3, NW: tl.constexpr, ASM: tl.constexpr):
    # one m16n8k16 from A and B fragments in registers
    if ASM:
        return tl.inline_asm_elementwise(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {$0, $1, $2, $3}, {$4, $5, $6, $7}, {$8, $9}, "
            "{$0, $1, $2, $3};", "=f,=f,=f,=f,r,r,r,r,r,r,0,1,2,3", [a0, a1, a2, a3, b0, b1, c0, c1, c2, c3],
            (tl.float32,) * 4, True, 1)
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
def _kfactors(sb, mb, qb, ok):
    # 4 channels of a key B lane (head gid, the block's group): q * scale as fp16 (one rounding) and the
    # fp32 partial bias sum q * min
    qv = tl.load(qb, mask=ok, other=0.0)
    f0, f1, f2, f3 = _split4n((tl.load(sb, mask=ok, other=0.0) * qv).to(tl.float16))
    part = tl.sum(tl.load(mb, mask=ok, other=0.0).to(tl.float32) * qv.to(tl.float32), axis=1)
    return f0, f1, f2, f3, part


@triton.jit
def _key_step(kb_, sb, mb, qb, w_ok, okb, kk: tl.constexpr, sh, c0, c1, c2, c3, c4, c5, c6, c7, part,
              NW: tl.constexpr, ASM: tl.constexpr):
    # k step kk (channels 16 kk + 4 tig + 0..3): the lane's 4 code words, its B pair, the two MMAs
    w0, w1, w2, w3 = _split4n(tl.load(kb_ + 16 * kk, mask=w_ok, other=0))
    f0, f1, f2, f3, p = _kfactors(sb + 16 * kk, mb + 16 * kk, qb + 16 * kk, okb)
    c0, c1, c2, c3, c4, c5, c6, c7 = _mma2s(w0, w1, w2, w3, sh, _pack2(f0, f1, ASM), _pack2(f2, f3, ASM),
                                            c0, c1, c2, c3, c4, c5, c6, c7, NW, ASM)
    return c0, c1, c2, c3, c4, c5, c6, c7, part + p


@triton.jit
def _key_group(q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, valid_ptr, s_kcw, s_ksg, s_kmg, s_mt, tok0, end,
               lane, gid, tig, a, sh, hok, NW: tl.constexpr, HAS_VALID: tl.constexpr, ASM: tl.constexpr):
    # the scores of the warp's group (tokens tok0 .. tok0 + 31) for the lane's heads 2 tig (x0) and
    # 2 tig + 1 (x1): sJH_x is token tok0 + 16 a + b + 4 J + 8 H, biased, not yet times qk_scale, -inf where
    # masked. The k steps' loads are all issued before the MMAs (Triton keeps program order for them)
    rows_w = tok0 // 16 + a
    ch4 = (4 * tig)[:, None] + tl.arange(0, 4)[None, :]
    kb_ = kc_ptr + rows_w[:, None] * s_kcw + ch4
    w_ok = (rows_w * 16 < end)[:, None]
    g = tok0 // 32
    okb = (hok & (tok0 < end))[:, None]
    sb = ks_ptr + g[:, None] * s_ksg + ch4
    mb = km_ptr + g[:, None] * s_kmg + ch4
    qb = q_ptr + gid[:, None] * s_qh + ch4
    z = tl.zeros_like(tok0.to(tl.float32))
    c0, c1, c2, c3, c4, c5, c6, c7, kp = _key_step(kb_, sb, mb, qb, w_ok, okb, 0, sh, z, z, z, z, z, z, z, z, z,
                                                   NW, ASM)
    for kk in tl.static_range(1, 8):
        c0, c1, c2, c3, c4, c5, c6, c7, kp = _key_step(kb_, sb, mb, qb, w_ok, okb, kk, sh,
                                                       c0, c1, c2, c3, c4, c5, c6, c7, kp, NW, ASM)
    kp += _shfl(kp, lane ^ 1, NW, ASM)
    kp += _shfl(kp, lane ^ 2, NW, ASM)  # head gid's bias in its 4 lanes
    bias0 = _shfl(kp, 8 * tig, NW, ASM)  # head 2 tig: lane 4 (2 tig)
    bias1 = _shfl(kp, 8 * tig + 4, NW, ASM)
    t00 = tok0 + 16 * a + (sh // 2)
    u0 = 16777216.0  # 2^24: mask j = 0 gives c * 2^-24
    u4 = 65536.0  # 2^16: mask j = 4 gives c * 4^4 * 2^-24
    s00_0, s00_1 = c0 * u0 + bias0, c1 * u0 + bias1
    s01_0, s01_1 = c2 * u0 + bias0, c3 * u0 + bias1
    s10_0, s10_1 = c4 * u4 + bias0, c5 * u4 + bias1
    s11_0, s11_1 = c6 * u4 + bias0, c7 * u4 + bias1
    ok00, ok01, ok10, ok11 = t00 < end, t00 + 8 < end, t00 + 4 < end, t00 + 12 < end
    if HAS_VALID:
        ok00 = ok00 & (tl.load(valid_ptr + t00 * s_mt, mask=ok00, other=0) != 0)
        ok01 = ok01 & (tl.load(valid_ptr + (t00 + 8) * s_mt, mask=ok01, other=0) != 0)
        ok10 = ok10 & (tl.load(valid_ptr + (t00 + 4) * s_mt, mask=ok10, other=0) != 0)
        ok11 = ok11 & (tl.load(valid_ptr + (t00 + 12) * s_mt, mask=ok11, other=0) != 0)
    ninf = float("-inf")
    return (tl.where(ok00, s00_0, ninf), tl.where(ok00, s00_1, ninf), tl.where(ok01, s01_0, ninf),
            tl.where(ok01, s01_1, ninf), tl.where(ok10, s10_0, ninf), tl.where(ok10, s10_1, ninf),
            tl.where(ok11, s11_0, ninf), tl.where(ok11, s11_1, ninf))


@triton.jit
def _vwords(vc_ptr, s_vct, t, col, end):
    # the lane's value code words of word column col for tokens t, t + 1, t + 8, t + 9 (0 from end on)
    return (tl.load(vc_ptr + t * s_vct + col, mask=t < end, other=0),
            tl.load(vc_ptr + (t + 1) * s_vct + col, mask=t + 1 < end, other=0),
            tl.load(vc_ptr + (t + 8) * s_vct + col, mask=t + 8 < end, other=0),
            tl.load(vc_ptr + (t + 9) * s_vct + col, mask=t + 9 < end, other=0))


@triton.jit
def _vscales(vs_ptr, s_vst, t, end, ASM: tl.constexpr):
    # the value scales of tokens (t, t + 1) and (t + 8, t + 9) as fp16x2 pairs, group by group
    c4 = tl.arange(0, 4)[None, :]
    s0 = tl.load(vs_ptr + t[:, None] * s_vst + c4, mask=(t < end)[:, None], other=0.0)
    s1 = tl.load(vs_ptr + (t + 1)[:, None] * s_vst + c4, mask=(t + 1 < end)[:, None], other=0.0)
    s8 = tl.load(vs_ptr + (t + 8)[:, None] * s_vst + c4, mask=(t + 8 < end)[:, None], other=0.0)
    s9 = tl.load(vs_ptr + (t + 9)[:, None] * s_vst + c4, mask=(t + 9 < end)[:, None], other=0.0)
    a0, a1, a2, a3 = _split4n(s0)
    b0, b1, b2, b3 = _split4n(s1)
    e0, e1, e2, e3 = _split4n(s8)
    f0, f1, f2, f3 = _split4n(s9)
    return (_pack2(a0, b0, ASM), _pack2(e0, f0, ASM), _pack2(a1, b1, ASM), _pack2(e1, f1, ASM),
            _pack2(a2, b2, ASM), _pack2(e2, f2, ASM), _pack2(a3, b3, ASM), _pack2(e3, f3, ASM))


@triton.jit
def _vmins(vm_ptr, s_vmt, t, end, gid, ASM: tl.constexpr):
    # the min MMA's B pairs: lane gid < 4 gives group gid's mins of tokens (t, t + 1) and (t + 8, t + 9)
    ok = gid < 4
    m0 = tl.load(vm_ptr + t * s_vmt + gid, mask=ok & (t < end), other=0.0)
    m1 = tl.load(vm_ptr + (t + 1) * s_vmt + gid, mask=ok & (t + 1 < end), other=0.0)
    m8 = tl.load(vm_ptr + (t + 8) * s_vmt + gid, mask=ok & (t + 8 < end), other=0.0)
    m9 = tl.load(vm_ptr + (t + 9) * s_vmt + gid, mask=ok & (t + 9 < end), other=0.0)
    return _pack2(m0, m1, ASM), _pack2(m8, m9, ASM)


@triton.jit
def _value_step(vc_ptr, vs_ptr, vm_ptr, s_vct, s_vst, s_vmt, t, end, gid, a, sh, pb0, pb1,
                v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
                cm0, cm1, cm2, cm3, NW: tl.constexpr, ASM: tl.constexpr):
    # one value k step (16 tokens: t, t + 1, t + 8, t + 9 for the lane's k slots): the 4 groups' MMAs
    # (accumulators 8 g .. 8 g + 7) and the min MMA
    z = tl.zeros_like(gid)
    w0, w1, w2, w3 = _vwords(vc_ptr, s_vct, t, a, end)
    w4, w5, w6, w7 = _vwords(vc_ptr, s_vct, t, 2 + a, end)
    w8, w9, w10, w11 = _vwords(vc_ptr, s_vct, t, 4 + a, end)
    w12, w13, w14, w15 = _vwords(vc_ptr, s_vct, t, 6 + a, end)
    s00, s01, s10, s11, s20, s21, s30, s31 = _vscales(vs_ptr, s_vst, t, end, ASM)
    mb0, mb1 = _vmins(vm_ptr, s_vmt, t, end, gid, ASM)
    cm0, cm1, cm2, cm3 = _mma_a(pb0, z, pb1, z, mb0, mb1, cm0, cm1, cm2, cm3, NW, ASM)
    v0, v1, v2, v3, v4, v5, v6, v7 = _mma2s(w0, w1, w2, w3, sh, _hmul2(pb0, s00, ASM), _hmul2(pb1, s01, ASM),
                                            v0, v1, v2, v3, v4, v5, v6, v7, NW, ASM)
    v8, v9, v10, v11, v12, v13, v14, v15 = _mma2s(w4, w5, w6, w7, sh, _hmul2(pb0, s10, ASM), _hmul2(pb1, s11, ASM),
                                                  v8, v9, v10, v11, v12, v13, v14, v15, NW, ASM)
    v16, v17, v18, v19, v20, v21, v22, v23 = _mma2s(w8, w9, w10, w11, sh, _hmul2(pb0, s20, ASM),
                                                    _hmul2(pb1, s21, ASM),
                                                    v16, v17, v18, v19, v20, v21, v22, v23, NW, ASM)
    v24, v25, v26, v27, v28, v29, v30, v31 = _mma2s(w12, w13, w14, w15, sh, _hmul2(pb0, s30, ASM),
                                                    _hmul2(pb1, s31, ASM),
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
def _bulk_gqa_mma(q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr,
                  s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, end, qk_scale,
                  QG: tl.constexpr, D: tl.constexpr, NW: tl.constexpr, HAS_VALID: tl.constexpr, ASM: tl.constexpr):
    # [lo, end) in tiles of 32 x NW tokens (k2v2, fp16, D = 128, G = 32, qk_scale > 0: the launcher checks), a
    # key group a warp. Returns the QG heads' max [QG], sum [QG] and output [QG, D] (not normalized), as the
    # other GQA bulks
    NT: tl.constexpr = NW * 32
    BT: tl.constexpr = NW * 32
    t = tl.arange(0, NT)
    lane = t % 32
    warp = t // 32
    gid = lane // 4
    tig = lane % 4
    a = gid // 4  # the lane's word row (keys) / word column (values) of the group
    sh = 2 * (gid % 4)  # its word shift: codes b and b + 4 of each half at masks j = 0 and 4
    hok = gid < QG  # key B lanes with a query head
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
    for start in range(lo, end, BT):
        tok0 = start + 32 * warp
        s00_0, s00_1, s01_0, s01_1, s10_0, s10_1, s11_0, s11_1 = _key_group(
            q_ptr, s_qh, kc_ptr, ks_ptr, km_ptr, valid_ptr, s_kcw, s_ksg, s_kmg, s_mt, tok0, end,
            lane, gid, tig, a, sh, hok, NW, HAS_VALID, ASM)
        n0 = tl.maximum(m0, _tig_max(tl.maximum(tl.maximum(s00_0, s01_0), tl.maximum(s10_0, s11_0)), NW) * qk_scale)
        n1 = tl.maximum(m1, _tig_max(tl.maximum(tl.maximum(s00_1, s01_1), tl.maximum(s10_1, s11_1)), NW) * qk_scale)
        z0 = tl.where(n0 == float("-inf"), 0.0, n0)
        z1 = tl.where(n1 == float("-inf"), 0.0, n1)
        al0 = tl.exp2(m0 - z0)
        al1 = tl.exp2(m1 - z1)
        m0, m1 = n0, n1
        p00_0, p01_0 = tl.exp2(s00_0 * qk_scale - z0), tl.exp2(s01_0 * qk_scale - z0)
        p10_0, p11_0 = tl.exp2(s10_0 * qk_scale - z0), tl.exp2(s11_0 * qk_scale - z0)
        p00_1, p01_1 = tl.exp2(s00_1 * qk_scale - z1), tl.exp2(s01_1 * qk_scale - z1)
        p10_1, p11_1 = tl.exp2(s10_1 * qk_scale - z1), tl.exp2(s11_1 * qk_scale - z1)
        l0 = l0 * al0 + ((p00_0 + p01_0) + (p10_0 + p11_0))
        l1 = l1 * al1 + ((p00_1 + p01_1) + (p10_1 + p11_1))
        # accumulators: group g's c0..c7 are v[8 g ..]: (J, H, x) = rows of mask 4 J, high half H, head 2 tig + x
        v0, v1, v2, v3, v4, v5, v6, v7 = v0 * al0, v1 * al1, v2 * al0, v3 * al1, v4 * al0, v5 * al1, v6 * al0, \
            v7 * al1
        v8, v9, v10, v11, v12, v13, v14, v15 = v8 * al0, v9 * al1, v10 * al0, v11 * al1, v12 * al0, v13 * al1, \
            v14 * al0, v15 * al1
        v16, v17, v18, v19, v20, v21, v22, v23 = v16 * al0, v17 * al1, v18 * al0, v19 * al1, v20 * al0, \
            v21 * al1, v22 * al0, v23 * al1
        v24, v25, v26, v27, v28, v29, v30, v31 = v24 * al0, v25 * al1, v26 * al0, v27 * al1, v28 * al0, \
            v29 * al1, v30 * al0, v31 * al1
        al_g = tl.where(gid % 2 == 0, _shfl(al0, h_src, NW, ASM), _shfl(al1, h_src, NW, ASM))  # head gid's
        cm0, cm1 = cm0 * al_g, cm1 * al_g  # min sums: C rows are heads (rows 8..15 stay 0)
        # p as the value MMAs' B: each key MMA's C tile (tokens x heads), two heads a register, transposed
        pb00 = _movt(_f16x2(p00_0, p00_1, ASM), NW, ASM)
        pb01 = _movt(_f16x2(p01_0, p01_1, ASM), NW, ASM)
        pb10 = _movt(_f16x2(p10_0, p10_1, ASM), NW, ASM)
        pb11 = _movt(_f16x2(p11_0, p11_1, ASM), NW, ASM)
        (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
         v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
         cm0, cm1, cm2, cm3) = _value_step(
            vc_ptr, vs_ptr, vm_ptr, s_vct, s_vst, s_vmt, tok0 + tv, end, gid, a, sh, pb00, pb01,
            v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
            v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
            cm0, cm1, cm2, cm3, NW, ASM)
        (v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
         v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31,
         cm0, cm1, cm2, cm3) = _value_step(
            vc_ptr, vs_ptr, vm_ptr, s_vct, s_vst, s_vmt, tok0 + tv + 4, end, gid, a, sh, pb10, pb11,
            v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
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
