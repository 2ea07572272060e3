"""Scratch benchmark (one device call): v3 variants (kernels/_exp_*.py, untracked) vs v1 on the target rows.

    python3 benchmarks/bench_v3_variants.py   -> prints a table, writes $OUT/v3_variants.json
"""
import importlib
import json
import os
import sys

import torch
from triton.testing import do_bench

sys.path.insert(0, os.path.dirname(__file__))
from bench_decode_attention import kivi_split, make_state  # noqa: E402

from kivi_kernels.decode_attention import decode_attention_triton  # noqa: E402
from kivi_core.attention_ref import decode_attention_ref  # noqa: E402

D = 128
VARIANTS = sys.argv[1].split(",") if len(sys.argv) > 1 else ["xa", "xb", "xc", "xd", "xe"]
CFGS = [(32, 4), (64, 4), (32, 2)]
# "v3": the shipped kernel (kivi_kernels.decode_attention_v3), swept over (block_w, warps, maxnreg)
V3_CFGS = [(32, 4, None), (32, 4, 128), (32, 2, None), (64, 4, 128)]
ROWS = [(8, 32768), (64, 4096), (128, 4096), (1, 32768), (1, 512)]
res = []
for B, L in ROWS:
    H = 32
    n_kq, n_vq = kivi_split(L)
    st = make_state(B, H, L, n_kq, n_vq)
    q = torch.randn(B, H, 1, D, device="cuda", dtype=torch.float16)
    ref = decode_attention_triton(q, st, None, D**-0.5, impl="v1")
    t1 = do_bench(lambda: decode_attention_triton(q, st, None, D**-0.5, impl="v1"), return_mode="median")
    res.append(dict(B=B, L=L, impl="v1", us=t1 * 1e3))
    print(f"{B}x{L} v1 {t1*1e3:.1f} us", flush=True)
    for v in VARIANTS:
        m = importlib.import_module("kivi_kernels.decode_attention_v3" if v == "v3" else f"kivi_kernels._exp_{v}")
        for bw, nw, *mr in (V3_CFGS if v in ("v3", "pf") else CFGS):
            extra = {"maxnreg": mr[0]} if mr and mr[0] else {}
            try:
                f = lambda: m.decode_attention_v3(q, st, None, D**-0.5, block_w=bw, num_warps=nw, **extra)  # noqa: E731
                err = (f().float() - ref.float()).abs().max().item()
                t = do_bench(f, return_mode="median")
            except Exception as e:
                print(f"{B}x{L} {v} bw{bw} nw{nw}: {type(e).__name__} {str(e)[:200]}", flush=True)
                continue
            res.append(dict(B=B, L=L, impl=v, block_w=bw, num_warps=nw, us=t * 1e3, err_vs_v1=err, **extra))
            print(f"{B}x{L} {v} bw{bw} nw{nw} {extra}: {t*1e3:.1f} us  (v1 {t1*1e3:.1f})  err {err:.1e}", flush=True)
    del st
    torch.cuda.empty_cache()
out = os.environ.get("OUT", ".")
json.dump(res, open(os.path.join(out, "v3_variants.json"), "w"), indent=1)
