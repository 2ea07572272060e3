"""Lean decode loop (kivi_core.engine) on the GPU: KIVI vs fp16, both as CUDA-graph loops over static caches.

    python3 benchmarks/bench_engine.py [ROW ...]     ROW = side:batch:ctx[:eager], side = kivi | fp16
    default rows: issue 6's (b1 x 512 both sides, fp16 b32/b48 x 4096, KIVI b64/b128/b192 x 4096)

Llama-2-7B shape with random weights (kivi_cli preset `llama-2-7b`, fp16), greedy, prompt = ctx - 64
random tokens, 64 new tokens, prefill in chunks of 1024. For each row: steady-state GPU time a decode
step (CUDA events from the first graph replay to the end, no host sync in between), tokens/s =
batch / step time, the prefill time, torch's peak allocated bytes, the step kinds run (eager / capture /
replay), or OOM. Writes $OUT/bench_engine.json (else benchmarks/results/).
"""
from __future__ import annotations

import json
import os
import sys
import time

import torch

from kivi_cli.models import PRESETS
from kivi_core import KiviConfig
from kivi_core.engine import lean_generate

DEFAULT = ["kivi:1:512", "fp16:1:512", "kivi:1:512:eager", "fp16:32:4096", "fp16:48:4096", "kivi:64:4096",
           "kivi:128:4096", "kivi:192:4096", "fp16:64:4096"]
GEN = 64


def main() -> None:
    rows = sys.argv[1:] or DEFAULT
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    with torch.device("cuda"):
        model = AutoModelForCausalLM.from_config(PRESETS["llama-2-7b"].config(), dtype=torch.float16)
    model.eval().requires_grad_(False)
    results = []
    for row in rows:
        side, B, ctx, *flag = row.split(":")
        B, ctx = int(B), int(ctx)
        eager = flag == ["eager"]
        kivi = KiviConfig(k_bits=2, v_bits=2, group_size=32, residual_length=128) if side == "kivi" else None
        ids = torch.randint(3, 32000, (B, ctx - GEN), device="cuda")
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        rec = dict(side=side, batch=B, ctx=ctx, gen=GEN, graphs=not eager)
        t0 = time.perf_counter()
        try:
            res = lean_generate(model, ids, GEN, kivi, graphs=not eager, prefill_chunk=1024)
            torch.cuda.synchronize()
            ms = res.steady_ms_per_step
            if ms is None:  # eager: wall time of the decode loop
                ms = res.decode_s * 1e3 / (GEN - 1)
            rec.update(status="ok", ms_per_step=ms, tok_per_s=B / ms * 1e3, prefill_s=res.prefill_s,
                       decode_s=res.decode_s, steady_steps=res.steady_steps, step_kinds=res.step_kinds,
                       peak_alloc_gb=(torch.cuda.max_memory_allocated()) / 1e9,
                       cache_gb=res.cache.memory().total / 1e9 if res.cache is not None else None,
                       weights_gb=base / 1e9)
            del res
        except torch.OutOfMemoryError as e:
            rec.update(status="oom", error=str(e).splitlines()[0][:200])
        rec["wall_s"] = time.perf_counter() - t0
        print(json.dumps(rec), flush=True)
        results.append(rec)
        del ids
        torch.cuda.empty_cache()
    info = {"device": torch.cuda.get_device_name(), "torch": torch.__version__,
            "command": " ".join([sys.executable, *sys.argv]), "rows": results}
    try:
        import transformers
        import triton

        info |= {"transformers": transformers.__version__, "triton": triton.__version__}
    except Exception:  # pragma: no cover
        pass
    out = os.environ.get("OUT") or os.path.join(os.path.dirname(__file__), "results")
    with open(os.path.join(out, "bench_engine.json"), "w") as f:
        json.dump(info, f, indent=1)
    print(f"{'side':<5} {'B':>4} {'ctx':>5} {'graphs':>6} {'ms/step':>8} {'tok/s':>8} {'peak GB':>8} {'cache GB':>8}")
    for r in results:
        if r["status"] != "ok":
            print(f"{r['side']:<5} {r['batch']:>4} {r['ctx']:>5} {str(r['graphs']):>6}  OOM")
            continue
        print(f"{r['side']:<5} {r['batch']:>4} {r['ctx']:>5} {str(r['graphs']):>6} {r['ms_per_step']:8.2f} "
              f"{r['tok_per_s']:8.0f} {r['peak_alloc_gb']:8.1f} {r['cache_gb'] or 0:8.1f}")


if __name__ == "__main__":
    main()
