"""Probe for decode_v4_plan.md item 3: the GQA key phase with shared dequantization, compiled for SASS counts.

    python benchmarks/gqa_pairs_probe.py QG WORDS OUT.py        # writes a Triton kernel, then:
    KC=/tmp/kc36 python benchmarks/kernel_sass.py OUT.py _probe_kernel D=128 G=32 BW=64 num_warps=4

Two threads a key word row, 4 code pairs each (tokens j, j + 8 of the word, or of word >> 8): each pair is
dequantized once to the fp16 value pair c * scale + min (LOP3 + HFMA2 for the exact codes, HFMA2 for the
value), then one HFMA2 a query head with {q_h, q_h}; 8-word fp16 sums flushed to 8 * QG fp32 accumulators.
Only the key loop's arithmetic is modelled (no softmax, values, masking): it is a register and instruction
count, not a kernel to run. Session 7 (triton 3.6, sm_90), QG=4, 8 words a call (one inline-asm call with
120 operands compiles): 105 registers, 350 instructions a step of 8 channels = 256 (code, head) pairs, 1.37
each, against 2.56 in v3's MHA key loop (328 a 128-code step). The flush to fp32 is 64 of the 350 (32 cvt
+ 32 add a step); 16-word sums would halve it.
"""
import sys

QG = int(sys.argv[1]); NW = int(sys.argv[2])  # heads a kv head; words an asm call (8)
NP = 4  # pairs a thread (half a word row)
NA = NP * 2 * QG  # fp32 accumulators a thread
def asm(nw):
    L = ["{", ".reg .b32 k, x, v, s2, m2, qq, a<%d>;" % (NP * QG), ".reg .b16 h<2>;", ".reg .f32 t<2>;",
         "mov.b32 k, 0x64006400;"]
    L += [f"mov.b32 r{j}, {v:#x};" for j, v in ((1, 0x34003400), (2, 0x2C002C00), (3, 0x24002400))]
    L += [f"mov.b32 z{j}, {v:#x};" for j, v in ((1, 0xDC00DC00), (2, 0xD400D400), (3, 0xCC00CC00))]
    L.insert(1, ".reg .b32 r<4>, z<4>;")
    # operands: outputs f0..f(NA-1); inputs: words w_m, scales s_m, mins m_m, q_{m,h}; then ties
    o = NA
    W = lambda m: f"${o + m}"
    S = lambda m: f"${o + nw + m}"
    M = lambda m: f"${o + 2 * nw + m}"
    Q = lambda m, h: f"${o + 3 * nw + m * QG + h}"
    for m in range(nw):
        L += [f"mov.b32 s2, {{{S(m)}, {S(m)}}};", f"mov.b32 m2, {{{M(m)}, {M(m)}}};"]
        for j in range(NP):
            L.append(f"lop3.b32 x, {W(m)}, {0x00030003 << (2 * j):#x}, k, 0xEA;")
            L.append("sub.rn.f16x2 x, x, k;" if j == 0 else f"fma.rn.f16x2 x, x, r{j}, z{j};")
            L.append("fma.rn.f16x2 v, x, s2, m2;")  # the value pair c * scale + min
            for h in range(QG):
                L.append(f"mov.b32 qq, {{{Q(m, h)}, {Q(m, h)}}};")
                a = f"a{j * QG + h}"
                L.append(f"mul.rn.f16x2 {a}, v, qq;" if m == 0 else f"fma.rn.f16x2 {a}, v, qq, {a};")
    for j in range(NP):
        for h in range(QG):
            a = j * QG + h
            L += [f"mov.b32 {{h0, h1}}, a{a};", "cvt.f32.f16 t0, h0;", "cvt.f32.f16 t1, h1;",
                  f"add.f32 ${2 * a}, ${2 * a}, t0;", f"add.f32 ${2 * a + 1}, ${2 * a + 1}, t1;"]
    L.append("}")
    return "\\n".join(L)
cons = ",".join(["=f"] * NA + ["r"] * NW + ["h"] * (2 * NW) + ["h"] * (NW * QG) + [str(i) for i in range(NA)])
f = [f"f{i}" for i in range(NA)]
w = [f"w{m}" for m in range(NW)]; s = [f"s{m}" for m in range(NW)]; mm = [f"m{m}" for m in range(NW)]
q = [f"q{m}_{h}" for m in range(NW) for h in range(QG)]
src = f'''import triton
import triton.language as tl


@triton.jit
def _split8(t):
    a, b = tl.split(tl.reshape(t, (t.shape[0], 4, 2)))
    a0, a1 = tl.split(tl.reshape(a, (t.shape[0], 2, 2)))
    b0, b1 = tl.split(tl.reshape(b, (t.shape[0], 2, 2)))
    c0, c1 = tl.split(a0)
    c2, c3 = tl.split(a1)
    c4, c5 = tl.split(b0)
    c6, c7 = tl.split(b1)
    return c0, c1, c2, c3, c4, c5, c6, c7


@triton.jit
def _probe_kernel(q_ptr, kc_ptr, ks_ptr, km_ptr, acc_ptr, n_rows, s_kcw, s_ksg, D: tl.constexpr, G: tl.constexpr,
                  BW: tl.constexpr):
    # BW key word rows a program, two threads a row: element i is row i // 2, pairs 4 * (i % 2) .. + 3
    i = tl.arange(0, 2 * BW)
    rows = tl.program_id(0) * BW + i // 2
    half = i % 2
    ok = rows < n_rows
    gk = (rows * 16) // G
    offs = tl.arange(0, 8)
    z = tl.zeros((2 * BW,), tl.float32)
    {", ".join(f)} = {", ".join(["z"] * NA)}
    for dc in range(0, D, 8):
        kw = tl.load(kc_ptr + rows[:, None] * s_kcw + (dc + offs)[None, :], mask=ok[:, None], other=0)
        kw = tl.where(half[:, None] == 1, kw >> 8, kw)
        sk = tl.load(ks_ptr + gk[:, None] * s_ksg + (dc + offs)[None, :], mask=ok[:, None], other=0.0)
        mk = tl.load(km_ptr + gk[:, None] * s_ksg + (dc + offs)[None, :], mask=ok[:, None], other=0.0)
        {", ".join(w[:8])} = _split8(kw)
        {", ".join(s[:8])} = _split8(sk)
        {", ".join(mm[:8])} = _split8(mk)
'''
for h in range(QG):
    src += f"        qh = tl.load(q_ptr + {h} * D + dc + offs)[None, :] + tl.zeros((2 * BW, 8), tl.float16)\n"
    src += f"        {', '.join(f'q{m}_{h}' for m in range(8))} = _split8(qh)\n"
for c in range(8 // NW):
    args = w[c*NW:(c+1)*NW] + s[c*NW:(c+1)*NW] + mm[c*NW:(c+1)*NW] + [f"q{m}_{h}" for m in range(c*NW, (c+1)*NW) for h in range(QG)] + f
    src += f"        {', '.join(f)} = tl.inline_asm_elementwise(\"{asm(NW)}\", \"{cons}\", [{', '.join(args)}], ({'tl.float32, ' * NA}), True, 1)\n"
src += "    tot = " + " + ".join(f) + "\n    tl.store(acc_ptr + tl.program_id(0) * 2 * BW + i, tot)\n"
open(sys.argv[3], "w").write(src)
