"""Where an eager decode-attention call's host time goes, on the GPU machine: cProfile over back-to-back "auto" calls
(no synchronization between them) on a few rows, the top functions by their own time printed, and the wall time a
call with and without the profiler. bench_host_path.py measures our Python alone on any CPU (launches stubbed); this
adds Triton's launch path and the driver.

    python benchmarks/profile_host_eager.py [--rows llama3.1-8b:1x512,llama2-7b:8x32768] [--calls 300] [--top 18]
"""

from __future__ import annotations

import argparse
import cProfile
import io
import os
import pstats
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_decode_attention import D, SHAPES, host_us, kivi_split, make_state  # noqa: E402
from kivi_kernels.decode_attention import decode_attention_triton, pick_impl  # noqa: E402

def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", default="llama3.1-8b:1x512,llama3.1-8b:8x32768,llama2-7b:1x512,llama2-7b:8x32768")
    ap.add_argument("--calls", type=int, default=300)
    ap.add_argument("--top", type=int, default=18)
    a = ap.parse_args()
    for row in a.rows.split(","):
        shape, bl = row.rsplit(":", 1)
        B, L = (int(x) for x in bl.split("x"))
        Hq, H = SHAPES[shape]
        n_kq, n_vq = kivi_split(L)
        st = make_state(B, H, L, n_kq, n_vq)
        q = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.float16)
        f = (lambda q=q, st=st: decode_attention_triton(q, st, None, D**-0.5))
        for _ in range(20):
            f()
        plain = min(host_us(f, a.calls) for _ in range(3))
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(a.calls):
            f()
        torch.cuda.synchronize()
        prof.disable()
        s = io.StringIO()
        pstats.Stats(prof, stream=s).sort_stats("tottime").print_stats(a.top)
        print(f"== {shape} {B}x{L}: {pick_impl(q, st)}, {plain:.1f} us a call back to back (wall, best of 3)")
        print("\n".join(s.getvalue().splitlines()[4:]), flush=True)
        del st, q
        torch.cuda.empty_cache()


if __name__ == "__main__":
    main()
