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
  * A warp owns 8 key word rows (128 tokens) in both phases; a tile is 128 x warps tokens. p crosses
    from the key to the value mapping through the program's scratch row, as in v3.

Each lane's MMA operands are its elements of [lanes]-shaped tensors: Triton's layout of a 1-D tensor (and
of the rows of the [lanes, 4] tiles loaded here, one row a thread) puts element i in thread i, which is
what makes lane = i % 32 true. Under TRITON_INTERPRET=1 `_mma8_ref` computes the same warp-wide products
from those tensors with reshapes (the fragment layouts of PTX's m16n8k16), so CI runs the same tiles and
mapping; the PTX runs on the GPU only.
"""

from __future__ import annotations

import triton
import triton.language as tl

from .tile_ops import _join16n, _split4n


def _mma8_asm() -> str:
    """PTX for `_mma8`: words w0..w3 ($32..$35), B pairs b0, b1 ($36, $37), 32 fp32 accumulators ($0..$31,
    tied). PRMT pairs the low halves and the high halves of (w0, w1) and of (w2, w3); for j = 0..7 four ANDs
    make the A fragment of code j (rows: low halves, then high halves) and one m16n8k16 adds A x B into
    accumulators 4j..4j+3."""
    L = ["{", ".reg .b32 l01, h01, l23, h23, s01, t01, s23, t23;", ".reg .b32 a<32>;",
         "prmt.b32 l01, $32, $33, 0x5410;", "prmt.b32 h01, $32, $33, 0x7632;",
         "prmt.b32 l23, $34, $35, 0x5410;", "prmt.b32 h23, $34, $35, 0x7632;",
         "shr.u32 s01, l01, 10;", "shr.u32 t01, h01, 10;", "shr.u32 s23, l23, 10;", "shr.u32 t23, h23, 10;"]
    for j in range(8):
        src = ("l01", "h01", "l23", "h23") if j < 5 else ("s01", "t01", "s23", "t23")
        mask = 0x00030003 << (2 * (j if j < 5 else j - 5))
        L += [f"and.b32 a{4 * j + i}, {src[i]}, {mask:#x};" for i in range(4)]
        acc = ", ".join(f"${4 * j + i}" for i in range(4))
        L.append(f"mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {{{acc}}}, "
                 f"{{a{4 * j}, a{4 * j + 1}, a{4 * j + 2}, a{4 * j + 3}}}, {{$36, $37}}, {{{acc}}};")
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
def _bulk_mma(q_ptr, kc_ptr, ks_ptr, km_ptr, vc_ptr, vs_ptr, vm_ptr, valid_ptr, p_ptr,
              s_kcw, s_ksg, s_kmg, s_vct, s_vst, s_vmt, s_mt, lo, end, qk_scale, m_i, l_i,
              D: tl.constexpr, G: tl.constexpr, NW: tl.constexpr, HAS_VALID: tl.constexpr, ASM: tl.constexpr,
              UF: tl.constexpr, VDENSE: tl.constexpr):
    # [lo, end) in tiles of 128 x NW tokens (k2v2, fp16, D = 128, G = 32: the launcher checks). Returns the
    # tiles' running max, sum and [1, D] output, like v3's _bulk_packed.
    NT: tl.constexpr = NW * 32
    BT: tl.constexpr = NW * 128
    NG: tl.constexpr = D // G
    GT: tl.constexpr = BT // G  # groups a tile
    DW: tl.constexpr = D // 16
    t = tl.arange(0, NT)
    lane = t % 32
    warp = t // 32
    gid = lane // 4
    tig = lane % 4
    col = gid // 2  # the group (MMA column) of the lane's rows, in both phases
    useful = tig == col // 2  # the lane holding C[gid][col] and C[gid + 8][col]
    odd = (col % 2) == 1
    wrow = warp * 8 + gid  # the lane's key word row (tile-local)
    bl = gid < NG  # lanes giving B columns, a group each
    offs4 = tl.arange(0, 4)
    j16 = tl.arange(0, 16)
    jm = j16 % 8
    unscale = tl.exp2(24.0 - 2.0 * tl.where(jm >= 5, jm - 5, jm).to(tl.float32))  # 2^24 * 4^-(code's j)
    gsel = (warp * 4 + col)[:, None] == tl.arange(0, GT)[None, :]
    ch = tl.arange(0, D)
    qf = tl.load(q_ptr + ch).to(tl.float32) * qk_scale
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
    for start in range(lo, end, BT):
        # the tile's key biases sum_d q_d * min[g, d] (fp32), then each lane's (its rows' group)
        g_t = start // G + tl.arange(0, GT)
        mk = tl.load(km_ptr + g_t[:, None] * s_kmg + ch[None, :], mask=(g_t * G < end)[:, None], other=0.0)
        kb = tl.sum(mk.to(tl.float32) * qf[None, :], axis=1)
        kb_l = tl.sum(tl.where(gsel, kb[None, :], 0.0), axis=1)
        rows_w = start // 16 + wrow
        w_ok = rows_w * 16 < end
        gk = start // G + warp * 4 + gid
        b_ok = bl & (gk * G < end)
        k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15 = \
            z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
        k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = \
            z, z, z, z, z, z, z, z, z, z, z, z, z, z, z, z
        for kk in tl.static_range(D // 16):
            cc = (16 * kk + 4 * tig)[:, None] + offs4[None, :]  # the lane's 4 channels of this k step
            kw = tl.load(kc_ptr + rows_w[:, None] * s_kcw + cc, mask=w_ok[:, None], other=0)
            sk = tl.load(ks_ptr + gk[:, None] * s_ksg + cc, mask=b_ok[:, None], other=0.0)
            qc = tl.load(q_ptr + cc).to(tl.float32) * qk_scale
            f0, f1, f2, f3 = _split4n((qc * sk.to(tl.float32)).to(tl.float16))
            w0, w1, w2, w3 = _split4n(kw)
            k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15, \
                k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31 = _mma8(
                    w0, w1, w2, w3, _pack2(f0, f1, ASM), _pack2(f2, f3, ASM),
                    k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
                    k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31, NW, ASM)
        s = _useful16(odd, k0, k1, k2, k3, k4, k5, k6, k7, k8, k9, k10, k11, k12, k13, k14, k15,
                      k16, k17, k18, k19, k20, k21, k22, k23, k24, k25, k26, k27, k28, k29, k30, k31)
        s = s * unscale[None, :] + kb_l[:, None]  # [lanes, 16], scaled
        tok = start + wrow[:, None] * 16 + j16[None, :]
        t_ok = (tok < end) & useful[:, None]
        if HAS_VALID:
            t_ok = t_ok & (tl.load(valid_ptr + tok * s_mt, mask=t_ok, other=0) != 0)
        s = tl.where(t_ok, s, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(tl.max(s, axis=1), axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        alpha = tl.exp2(m_i - m_safe)
        p = tl.exp2(s - m_safe)
        l_i = l_i * alpha + tl.sum(tl.sum(p, axis=1), axis=0)
        m_i = m_new
        v0, v1, v2, v3, v4, v5, v6, v7 = v0 * alpha, v1 * alpha, v2 * alpha, v3 * alpha, v4 * alpha, v5 * alpha, \
            v6 * alpha, v7 * alpha
        v8, v9, v10, v11, v12, v13, v14, v15 = v8 * alpha, v9 * alpha, v10 * alpha, v11 * alpha, v12 * alpha, \
            v13 * alpha, v14 * alpha, v15 * alpha
        v16, v17, v18, v19, v20, v21, v22, v23 = v16 * alpha, v17 * alpha, v18 * alpha, v19 * alpha, \
            v20 * alpha, v21 * alpha, v22 * alpha, v23 * alpha
        v24, v25, v26, v27, v28, v29, v30, v31 = v24 * alpha, v25 * alpha, v26 * alpha, v27 * alpha, \
            v28 * alpha, v29 * alpha, v30 * alpha, v31 * alpha
        tl.debug_barrier()  # the previous tile's reads of p and u are done
        tl.store(p_ptr + wrow[:, None] * 16 + j16[None, :], p, mask=useful[:, None])  # every token: 0 past end
        tl.debug_barrier()
        n_t = tl.minimum(end - start, BT)
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
        for kv in tl.static_range(8):  # the warp's 8 word rows of tokens, 16 a step
            t0 = (warp * 8 + kv) * 16 + 4 * tig  # the lane's 4 tokens: k slots 2 tig, 2 tig + 1, +8, +9
            vok = (warp * 8 + kv) * 16 < n_t
            vb = vc_ptr + (start + t0) * vstride + gid  # word column gid: channels 16 gid ..
            w0 = tl.load(vb, mask=vok, other=0)
            w1 = tl.load(vb + vstride, mask=vok, other=0)
            w2 = tl.load(vb + 2 * vstride, mask=vok, other=0)
            w3 = tl.load(vb + 3 * vstride, mask=vok, other=0)
            ub = tl.load(u32_ptr + ((gid * BT + t0) // 2)[:, None] + tl.arange(0, 2)[None, :], mask=bl[:, None],
                         other=0)
            b0, b1 = tl.split(ub)
            v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15, \
                v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31 = _mma8(
                    w0, w1, w2, w3, b0, b1,
                    v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                    v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31, NW, ASM)
    o = _useful16(odd, v0, v1, v2, v3, v4, v5, v6, v7, v8, v9, v10, v11, v12, v13, v14, v15,
                  v16, v17, v18, v19, v20, v21, v22, v23, v24, v25, v26, v27, v28, v29, v30, v31)
    o = tl.where(useful[:, None], o * unscale[None, :], 0.0)  # [lanes, 16]: channel 16 gid + j
    o = tl.reshape(tl.sum(tl.sum(tl.reshape(o, (NW, 8, 4, 16)), axis=2), axis=0), (D,))  # over warps and tig
    gsel_d = (ch // G)[:, None] == tl.arange(0, NG)[None, :]
    o = o + tl.sum(tl.where(gsel_d, cpm[None, :], 0.0), axis=1)
    return m_i, l_i, tl.reshape(o, (1, D))
