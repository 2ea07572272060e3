"""In-thread tile plumbing shared by the Triton kernels: natural-order joins of [N] tensors into [N, n] and
their inverses. Where the n values sit in one thread (Triton's default layouts after a vectorized load or
a join), these compile to register moves only: no shuffles, no shared memory."""

import triton
import triton.language as tl


@triton.jit
def _join4n(f0, f1, f2, f3):
    # natural-order joins: [N] tensors -> [N, n] with column i = f_i (in-thread, like v3's _join16)
    return tl.reshape(tl.join(tl.join(f0, f2), tl.join(f1, f3)), (f0.shape[0], 4))


@triton.jit
def _join8n(f0, f1, f2, f3, f4, f5, f6, f7):
    return tl.reshape(tl.join(_join4n(f0, f2, f4, f6), _join4n(f1, f3, f5, f7)), (f0.shape[0], 8))


@triton.jit
def _join16n(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15):
    return tl.reshape(tl.join(_join8n(f0, f2, f4, f6, f8, f10, f12, f14), _join8n(f1, f3, f5, f7, f9, f11, f13, f15)),
                      (f0.shape[0], 16))


@triton.jit
def _join32n(f0, f1, f2, f3, f4, f5, f6, f7, f8, f9, f10, f11, f12, f13, f14, f15,
             f16, f17, f18, f19, f20, f21, f22, f23, f24, f25, f26, f27, f28, f29, f30, f31):
    return tl.reshape(tl.join(_join16n(f0, f2, f4, f6, f8, f10, f12, f14, f16, f18, f20, f22, f24, f26, f28, f30),
                              _join16n(f1, f3, f5, f7, f9, f11, f13, f15, f17, f19, f21, f23, f25, f27, f29, f31)),
                      (f0.shape[0], 32))


@triton.jit
def _split4n(t):
    # inverses of the natural joins: [N, n] -> its n columns in order
    a, b = tl.split(tl.reshape(t, (t.shape[0], 2, 2)))
    a0, a1 = tl.split(a)
    b0, b1 = tl.split(b)
    return a0, b0, a1, b1


@triton.jit
def _split8n(t):
    a, b = tl.split(tl.reshape(t, (t.shape[0], 4, 2)))
    e0, e1, e2, e3 = _split4n(a)
    o0, o1, o2, o3 = _split4n(b)
    return e0, o0, e1, o1, e2, o2, e3, o3


@triton.jit
def _split16n(t):
    a, b = tl.split(tl.reshape(t, (t.shape[0], 8, 2)))
    e0, e1, e2, e3, e4, e5, e6, e7 = _split8n(a)
    o0, o1, o2, o3, o4, o5, o6, o7 = _split8n(b)
    return e0, o0, e1, o1, e2, o2, e3, o3, e4, o4, e5, o5, e6, o6, e7, o7


@triton.jit
def _split32n(t):
    a, b = tl.split(tl.reshape(t, (t.shape[0], 16, 2)))
    e0, e1, e2, e3, e4, e5, e6, e7, e8, e9, e10, e11, e12, e13, e14, e15 = _split16n(a)
    o0, o1, o2, o3, o4, o5, o6, o7, o8, o9, o10, o11, o12, o13, o14, o15 = _split16n(b)
    return (e0, o0, e1, o1, e2, o2, e3, o3, e4, o4, e5, o5, e6, o6, e7, o7,
            e8, o8, e9, o9, e10, o10, e11, o11, e12, o12, e13, o13, e14, o14, e15, o15)
