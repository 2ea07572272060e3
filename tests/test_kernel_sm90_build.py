"""The packed decode kernel compiled for sm_90 on the CPU (Triton's bundled ptxas; no GPU needed).

CI cannot run the inline PTX (the interpreter runs its fp32 twin), so this checks what only a GPU build
shows: every inline-asm call's operand constraints match its operands' types (a code word "r" / i32, an
fp16 factor "h", an fp32 factor or accumulator "f"), and the 16-term fp16 sums are there. A wrong pick
compiles and runs, and gives wrong scores: a refactor in session 5 passed fp32 key factors to the fp16 asm.
"""
import os
import re
import subprocess
import sys

import pytest

from kivi_kernels import decode_attention_v3 as da3

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSTEXPRS = ("D=128 DP=128 G=32 K_BITS=2 V_BITS=2 BW=128 VR=4 UK=2 BLOCK_N=16 HAS_VALID=False SINGLE=False "
              "SPLIT_REM=True PACKED=True ASM=True NUM_WARPS_C=4 DEV_LENS=False WIN=0 num_warps=4 "
              f"maxnreg={da3.MAXNREG_PACKED} VDENSE=True").split()


def test_packed_kernel_builds_for_sm90_with_the_right_asm(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["KC"] = str(tmp_path)
    try:
        run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "kernel_sass.py"),
                              os.path.join(ROOT, "kernels", "decode_attention_v3.py"), "_decode_attn_v3_kernel",
                              *CONSTEXPRS, "tag=packed"], env=env, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:  # pragma: no cover - a Triton without its NVIDIA tools
        pytest.skip(f"no sm_90 toolchain: {e}")
    assert run.returncode == 0, run.stderr[-2000:]
    ttgir = (tmp_path / "packed.ttgir").read_text()
    calls = [ln for ln in ttgir.splitlines() if "tt.elementwise_inline_asm" in ln]
    # the key and value loops: _pacc (8 fp16x2 accumulators) twice each, _pflush, _pairs16 for single steps
    assert sum(ln.count('"=r,=r,=r,=r,=r,=r,=r,=r,r,') for ln in calls) >= 4, "no 16-term fp16 sums"
    kinds = {"r": "i32", "h": "f16", "f": "f32"}
    for ln in calls:
        cons = re.search(r'constraints = "([^"]*)"', ln).group(1).split(",")
        outs = [c[1:] for c in cons if c.startswith("=")]
        ins = cons[len(outs):]
        types = re.findall(r"tensor<\d+x(\w+),", ln.split(" : ")[-1].split(" -> ")[0])
        want = [kinds[c] if c in kinds else kinds[outs[int(c)]] for c in ins]
        assert types == want, f"an asm operand's constraint does not match its type: {cons} vs {types}"
    regs = int(re.search(r"regs=(\d+)", run.stdout).group(1))
    assert regs <= da3.MAXNREG_PACKED
