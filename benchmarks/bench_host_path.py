"""Host time of one decode-attention call through "auto": our Python (checks, routing, split rules, workspace), with
the Triton launches replaced by no-ops, so it runs on any CPU. The GPU's share is in bench_v3_variants.py --graph;
an eager `generate` pays this once a layer a step.

    python benchmarks/bench_host_path.py [--rounds 15] [--calls 1000] [--json out.json]

Prints the fastest round's microseconds a call (the machine's jitter only adds) for the Llama-3.1-8B shape (the GQA
kernel's tensor-core bulk), Llama-2-7B (v3) and a short call (v1's one-tile programs), batch 1 at 32K / 512 tokens.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

os.environ.setdefault("TRITON_INTERPRET", "1")  # CPU tensors: the launchers take the interpreter's branch
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

import torch  # noqa: E402

import kivi_kernels.decode_attention as da  # noqa: E402
import kivi_kernels.decode_attention_gqa as dg  # noqa: E402
import kivi_kernels.decode_attention_v3 as da3  # noqa: E402
from test_kernels_decode_attention import kivi_split, make_state  # noqa: E402


class _NoLaunch:
    """Stands for a Triton kernel: indexing by a grid gives a launch that does nothing."""

    def __getitem__(self, grid):
        return lambda *args, **kwargs: None


def _best(fn, rounds: int, calls: int) -> float:
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        for _ in range(calls):
            fn()
        times.append((time.perf_counter() - t) / calls * 1e6)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=1000)
    ap.add_argument("--json", default=None)
    a = ap.parse_args()
    for mod, names in ((dg, ("_decode_attn_gqa_kernel", "_decode_attn_reduce_kernel")),
                       (da3, ("_decode_attn_v3_kernel", "_decode_attn_reduce_kernel")),
                       (da, ("_decode_attn_split_kernel", "_decode_attn_reduce_kernel"))):
        for n in names:
            setattr(mod, n, _NoLaunch())
    rows = []
    for label, Hq, H, L, want in (("Llama-3.1-8B 1x32K", 32, 8, 32768, "gqa"),
                                  ("Llama-2-7B 1x32K", 32, 32, 32768, "v3"), ("Llama-3.1-8B 1x512", 32, 8, 512, "v1")):
        n_kq, n_vq = kivi_split(L, 32, 128)
        st = make_state(1, H, L, 128, n_kq, n_vq, 2, 2, 32, torch.float16, "cpu", L)
        q = torch.randn(1, Hq, 1, 128).half()
        assert da.pick_impl(q, st) == want, da.pick_impl(q, st)
        f = (lambda q=q, st=st: da.decode_attention_triton(q, st, None, 128**-0.5))
        f()
        us = _best(f, a.rounds, a.calls)
        rows.append({"call": label, "kernel": want, "host_us": round(us, 1)})
        print(f"{label:<22} {want:<4} {us:7.1f} us a call (launches stubbed)", flush=True)
    if a.json:
        with open(a.json, "w") as fh:
            json.dump({"rows": rows, "rounds": a.rounds, "calls": a.calls, "torch": torch.__version__,
                       "python": sys.version.split()[0], "cpus": os.cpu_count()}, fh, indent=1)


if __name__ == "__main__":
    main()
