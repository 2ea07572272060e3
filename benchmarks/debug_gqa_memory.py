"""Device debug (session 12): what a default GQA decode call allocates besides its split workspace and output.
test_gpu_no_dequantized_copy_in_memory[auto-32-8] saw 3,039,232 B against 2,229,248 expected (round 25)."""
import sys, os
sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests"))
import torch
import kivi_kernels.decode_attention_gqa as dg
from test_kernels_decode_attention import kivi_split, make_state

B, H, Hq, L, D = 4, 8, 32, 16384, 128
n_kq, n_vq = kivi_split(L, 32, 128)
state = make_state(B, H, L, D, n_kq, n_vq, 2, 2, 32, torch.float16, "cuda")
q = torch.randn(B, Hq, 1, D, device="cuda", dtype=torch.float16)
print("expected", dg.workspace_bytes(B, H, Hq // H, L, D, packed=True, mma=True) + B * Hq * D * 2)
for kw in ({}, {"mma_early": True}, {"mma": False}):
    dg.decode_attention_gqa(q, state, None, D**-0.5, **kw)
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    torch.cuda.memory._record_memory_history(max_entries=1000)
    dg.decode_attention_gqa(q, state, None, D**-0.5, **kw)
    torch.cuda.synchronize()
    snap = torch.cuda.memory._snapshot()
    torch.cuda.memory._record_memory_history(enabled=None)
    print(kw, "grew", torch.cuda.max_memory_allocated() - base)
    for tr in snap["device_traces"]:
        for e in tr:
            if e["action"] in ("alloc", "free_requested"):
                fr = [f"{f['filename'].split('/')[-1]}:{f['line']}:{f['name']}" for f in e.get("frames", [])
                      if "kivi" in f["filename"] or "kernels" in f["filename"] or "triton" in f["filename"]][:4]
                print("  ", e["action"], e["size"], fr)
