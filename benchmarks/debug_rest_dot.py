"""Which GQA rest_dot calls fault on the GPU, and where (round 27).

Round 26: test_gpu_gqa_mma[9000-300-True-rest_dot] raised "misaligned address" (sparse value rows, padding);
the dense 4133-token rest_dot case passed. Each combination runs in its own process (a fault poisons the CUDA
context); the first faulting one then runs under compute-sanitizer, and the SASS around the faulting PC is
printed from the cubin Triton cached.
    python benchmarks/debug_rest_dot.py            # all combinations
    python benchmarks/debug_rest_dot.py one HQ L PAD SPARSE RDOT
"""
import os
import re
import subprocess
import sys
import glob

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def one(Hq, L, pad, sparse, rdot):
    sys.path.insert(0, os.path.join(ROOT, "tests"))
    import torch
    import test_kernels_decode_attention_gqa as t
    t.check(Hq, 8, L, 128, 2, pad, None, "cuda", R=128, sparse=sparse, mma=True, rest_dot=rdot)
    torch.cuda.synchronize()


def main():
    if sys.argv[1:2] == ["one"]:
        a = sys.argv[2:]
        one(int(a[0]), int(a[1]), int(a[2]), a[3] == "1", a[4] == "1")
        print("OK")
        return
    combos = [(hq, L, pad, sp, rd) for hq in (64, 32)
              for (L, pad, sp) in ((9000, 300, 1), (9000, 0, 1), (9000, 300, 0), (9000, 0, 0), (4133, 0, 1),
                                   (4133, 300, 0))
              for rd in (1, 0)]
    first = None
    for c in combos:
        r = subprocess.run([sys.executable, __file__, "one", *map(str, c)], capture_output=True, text=True,
                           timeout=120)
        tail = (r.stdout + r.stderr).strip().splitlines()
        msg = "OK" if r.returncode == 0 else next((x for x in tail if "Error" in x or "assert" in x), tail[-1][:200])
        print(f"Hq={c[0]} L={c[1]} pad={c[2]} sparse={c[3]} rest_dot={c[4]}: {msg[:240]}", flush=True)
        if r.returncode and first is None:
            first = c
    if first is None:
        return
    cache = "/tmp/tc_sanitize"
    env = dict(os.environ, TRITON_CACHE_DIR=cache)
    cs = "compute-sanitizer"
    r = subprocess.run([cs, "--tool", "memcheck", "--show-backtrace", "no", sys.executable, __file__, "one",
                        *map(str, first)], capture_output=True, text=True, timeout=400, env=env)
    out = r.stdout + r.stderr
    print("\n".join(out.splitlines()[:40]), flush=True)
    pcs = re.findall(r"at (\w+)\+0x([0-9a-f]+)", out)
    if not pcs:
        return
    kname, pc = pcs[0][0], int(pcs[0][1], 16)
    cubins = [p for p in glob.glob(f"{cache}/**/*.cubin", recursive=True) if kname in os.path.basename(p)]
    import triton
    nvdisasm = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin/nvdisasm")
    for cub in cubins:
        sass = subprocess.run([nvdisasm, "-c", cub], capture_output=True, text=True).stdout.splitlines()
        for i, line in enumerate(sass):
            m = re.match(r"^\s+/\*([0-9a-f]{4,})\*/", line)
            if m and int(m.group(1), 16) == pc:
                print(f"--- {cub} around 0x{pc:x}")
                print("\n".join(sass[max(0, i - 40): i + 5]))
                break


if __name__ == "__main__":
    main()
