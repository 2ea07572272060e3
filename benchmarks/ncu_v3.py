"""Target for Nsight Compute: a few warm decode-attention calls on one benchmark shape (no timing here).

    ncu --clock-control none -k regex:_decode_attn_gqa_kernel --launch-skip 2 --launch-count 1 \
        --set full python3 benchmarks/ncu_v3.py 8x32768 shape=llama3.1-8b variant=auto

    ncu ... -k regex:_decode_attn_v3 ... python3 benchmarks/ncu_v3.py 8x32768 [packed=1 maxnreg=96 ...]

Builds the same state as bench_decode_attention.py (k2v2, G=32, R=128; `shape=` one of bench_v3_variants.SHAPES,
default Llama-2-7B attention) and makes 4 calls, so the profiler sees warm launches: of `variant=NAME` (a row of
bench_v3_variants.VARIANTS, dispatched as that sweep does), else of `decode_attention_v3` with the given keywords.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_decode_attention import kivi_split, make_state  # noqa: E402
from bench_v3_variants import SHAPES, VARIANTS  # noqa: E402

from kivi_kernels import decode_attention_gqa as dgq  # noqa: E402
from kivi_kernels import decode_attention_v3 as da3  # noqa: E402
from kivi_kernels.decode_attention import decode_attention_triton  # noqa: E402

B, L = (int(x) for x in sys.argv[1].split("x"))
args = dict(a.split("=", 1) for a in sys.argv[2:])
Hq, H = SHAPES[args.pop("shape", "llama2-7b")]
if "variant" in args:
    kw = dict(VARIANTS[args.pop("variant")])
    which = kw.pop("_impl", "v3")
    call = {"gqa": dgq.decode_attention_gqa, "v1": decode_attention_triton,
            "auto": decode_attention_triton}.get(which, da3.decode_attention_v3)
    if which in ("v1", "auto"):
        kw["impl"] = which
else:
    call, kw = da3.decode_attention_v3, {}
kw.update({k: int(v) for k, v in args.items()})
if "packed" in kw:
    kw["packed"] = bool(kw["packed"])
n_kq, n_vq = kivi_split(L)
st = make_state(B, H, L, n_kq, n_vq)
q = torch.randn(B, Hq, 1, 128, device="cuda", dtype=torch.float16)
for _ in range(4):
    call(q, st, None, 128**-0.5, **kw)
torch.cuda.synchronize()
print("done", B, L, call.__name__, kw)
