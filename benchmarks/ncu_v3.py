"""Target for Nsight Compute: a few v3 decode-attention calls on one benchmark shape (no timing here).

    ncu --clock-control none -k regex:_decode_attn_v3 --launch-skip 2 --launch-count 1 \
        --section SpeedOfLight --section Occupancy --section WarpStateStats --section SchedulerStats \
        python3 benchmarks/ncu_v3.py 8x32768 [packed=1 maxnreg=96 ...]

Builds the same state as bench_decode_attention.py (Llama-2-7B attention shape, k2v2, G=32, R=128) and
calls `decode_attention_v3` 4 times with the given keywords, so the profiler sees warm launches.
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(__file__))
from bench_decode_attention import kivi_split, make_state  # noqa: E402

from kivi_kernels import decode_attention_v3 as da3  # noqa: E402

B, L = (int(x) for x in sys.argv[1].split("x"))
kw = {k: int(v) for k, v in (a.split("=") for a in sys.argv[2:])}
if "packed" in kw:
    kw["packed"] = bool(kw["packed"])
n_kq, n_vq = kivi_split(L)
st = make_state(B, 32, L, n_kq, n_vq)
q = torch.randn(B, 32, 1, 128, device="cuda", dtype=torch.float16)
for _ in range(4):
    da3.decode_attention_v3(q, st, None, 128**-0.5, **kw)
torch.cuda.synchronize()
print("done", B, L, kw)
