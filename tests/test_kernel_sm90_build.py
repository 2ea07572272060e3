"""The packed decode kernel compiled for sm_90 on the CPU (Triton's bundled ptxas; no GPU needed).

CI cannot run the inline PTX (the interpreter runs its fp32 twin), so this checks what only a GPU build
shows: the key steps call the asm with fp32 factors, the value steps (whole and masked) with fp16 ones.
A wrong pick compiles and runs, and gives wrong scores (a refactor in session 5 did exactly that).
"""
import os
import re
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONSTEXPRS = ("D=128 DP=128 G=32 K_BITS=2 V_BITS=2 BW=128 VR=4 UK=2 BLOCK_N=16 HAS_VALID=False SINGLE=False "
              "SPLIT_REM=True PACKED=True ASM=True NUM_WARPS_C=4 DEV_LENS=False WIN=0 num_warps=4 maxnreg=96 "
              "UF=2 VDENSE=True MMA=0 MMA_SH=False SDENSE=True PDL=True PDL_WAIT=False").split()


def build(tmp_path, kernel_file: str, kernel: str, consts: list[str], tag: str) -> subprocess.CompletedProcess:
    """benchmarks/kernel_sass.py on one kernel of kernels/ (outside the interpreter); its files land in tmp_path."""
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    env["KC"] = str(tmp_path)
    try:
        run = subprocess.run([sys.executable, os.path.join(ROOT, "benchmarks", "kernel_sass.py"),
                              os.path.join(ROOT, "kernels", kernel_file), kernel, *consts, f"tag={tag}"],
                             env=env, capture_output=True, text=True, timeout=600)
    except FileNotFoundError as e:  # pragma: no cover - a Triton without its NVIDIA tools
        pytest.skip(f"no sm_90 toolchain: {e}")
    assert run.returncode == 0, run.stderr[-2000:]
    return run


def main_loop(run: subprocess.CompletedProcess) -> dict[str, int]:
    """The instruction histogram of the loop with the most HMMA (kernel_sass.py's output)."""
    loops = [dict((k, int(v)) for k, v in re.findall(r"(\w+):(\d+)", line)) for line in run.stdout.splitlines()
             if line.strip().startswith("loop")]
    return max(loops, key=lambda c: c.get("HMMA", 0))


def test_packed_kernel_builds_for_sm90_with_the_right_asm(tmp_path):
    run = build(tmp_path, "decode_attention_v3.py", "_decode_attn_v3_kernel", CONSTEXPRS, "packed")
    ttgir = (tmp_path / "packed.ttgir").read_text()
    calls = re.findall(r'constraints = "([^"]*)"', ttgir)
    factors = [c.split(",")[24:32] for c in calls if c.count("=f") == 16]
    assert sorted("".join(sorted(set(f))) for f in factors) == ["f", "h", "h"], calls
    assert re.search(r"regs=(\d+)", run.stdout) and int(re.search(r"regs=(\d+)", run.stdout).group(1)) <= 96


@pytest.mark.parametrize("sh,cap,hmma", [  # the scratch-row path (an option since session 10) with the slow tests
    pytest.param(False, 128, 128, marks=pytest.mark.slow, id="scratch"), pytest.param(True, 168, 136, id="shfl")])
def test_mma_bulk_builds_for_sm90_with_its_lane_mapping(tmp_path, sh, cap, hmma):
    # the tensor-core bulk (decode_attention_mma, one block a warp, 2 warps): a tile is 16 calls of the 8-MMA
    # asm, 128 HMMA a lane (+ 8 with mma_shfl: the min sums against ones), and its operands stay in their
    # threads. A load that Triton spreads over several threads shows up as shared-memory shuffles around them
    # (436 SHFL a tile when the code words were one [lanes, 32] load). mma_shfl (the default) has no barrier
    # and no shared memory in its loop: 40 SHFL (32 value operand steps, 3 for the key biases, 5 for the warp
    # max); the scratch-row path ~36 and its barriers
    consts = [c for c in CONSTEXPRS if not c.startswith(("BW=", "NUM_WARPS_C=", "num_warps=", "maxnreg=", "MMA"))]
    run = build(tmp_path, "decode_attention_v3.py", "_decode_attn_v3_kernel",
                consts + ["BW=16", "NUM_WARPS_C=2", "num_warps=2", f"maxnreg={cap}", "MMA=1", f"MMA_SH={sh}"], "mma")
    assert (tmp_path / "mma.ttgir").read_text().count("mma.sync.aligned.m16n8k16") == hmma  # asm calls
    main = main_loop(run)
    assert main.get("HMMA") == hmma and main.get("SHFL", 0) < 100, run.stdout
    if sh:
        assert main.get("BAR", 0) == 0 and main.get("STS", 0) == 0 and main.get("SHFL") <= 48, run.stdout


@pytest.mark.parametrize("early,part", [(True, 0), (False, 0), (False, 1)])
def test_gqa_mma_bulk_builds_for_sm90(tmp_path, early, part):
    # the GQA kernel's tensor-core bulk (decode_attention_gqa_mma; 8 query heads, one warp, the launcher's cap):
    # a tile is 16 two-MMA asm calls (keys, values), 8 bias MMAs and 2 value-min MMAs, 4 movmatrix transposes;
    # the loop keeps everything in registers (no spill stores, no shared memory, no barrier; at most six
    # reloads of loop invariants), and its load addresses are one base a kind plus immediates (whole tiles,
    # VDENSE: ~10 address instructions a tile where the masked, indexed loads took ~130). With EARLY its 64
    # loads come first: built uncapped, as it was timed (at the default cap of 168, ptxas issues 42 of them
    # before the first MMA). With MMA_PREFETCH each tile also prefetches the next one: one CCTL a tile. PART 1 is
    # the bulk's launch when the window's splits have their own: no v1 tile, so (almost) no shared memory
    from kivi_kernels.decode_attention_gqa import MAXNREG_GQA_MMA, MMA_LAZY_RESCALE, MMA_PREFETCH, REST_DOT
    consts = ("QG=8 D=128 G=32 BITS=2 BW=2 BLOCK_N=16 HAS_VALID=False NT=32 DEV_LENS=False WIN=0 PACKED=False "
              f"ASM=True VDENSE=True REP=1 MMA=True EARLY={early} RDOT={REST_DOT} PF={MMA_PREFETCH} PART={part} "
              f"TAU={MMA_LAZY_RESCALE} PDL=True PDL_WAIT=0 num_warps=1 maxnreg={255 if early else MAXNREG_GQA_MMA}").split()
    run = build(tmp_path, "decode_attention_gqa.py", "_decode_attn_gqa_kernel", consts, "gqa")
    if part == 1:  # 23,552 B with the window's tl.dot tiles in the same launch: 9 programs an SM instead of 12
        assert int(re.search(r"shared=(\d+)", run.stdout).group(1)) <= 2048, run.stdout
    ttgir = (tmp_path / "gqa.ttgir").read_text()
    assert ttgir.count("mma.sync.aligned.m16n8k16") == 42 and ttgir.count("movmatrix") == 4
    main = main_loop(run)
    assert main.get("HMMA") == 42 and main.get("LDG") == 64 and main.get("CCTL", 0) == min(1, MMA_PREFETCH), \
        run.stdout
    assert all(main.get(op, 0) == 0 for op in ("STL", "BAR", "STS")) and main.get("LDL", 0) <= 6, run.stdout
    # the bias MMAs take the mins' 16-byte loads as their A operand, and the query pairs stay put: 38 register moves
    # a tile before (32 of them forming (mins, mins) operands); the lazy rescaling's branch: one warp reduction
    assert main.get("MOV", 0) <= 12 and main.get("REDUX", 0) == (1 if MMA_LAZY_RESCALE else 0), run.stdout
    assert sum(main.get(op, 0) for op in ("IMAD", "IADD3", "LEA", "ISETP")) <= 40, run.stdout
    if early:
        sass = (tmp_path / "gqa.sass").read_text().splitlines()
        first_mma = next(i for i, line in enumerate(sass) if "HMMA" in line)
        loop_start = max(i for i, line in enumerate(sass[:first_mma]) if re.match(r"^\s*\.L_x_\d+:", line))
        assert sum("LDG" in line for line in sass[loop_start:first_mma]) >= 48, "the tile's loads must come first"


@pytest.mark.parametrize("part", [0, 2])
def test_gqa_mma_rest_on_tensor_cores_builds_for_sm90(tmp_path, part):
    # rest_dot: the window's split runs v1's tiles with tl.dot for 16 query rows. Its loops (packed keys with the
    # value window, then the fp16 tail) hold 32 HMMA each and no spills; on CUDA cores they take ~4,800 and
    # ~3,500 instructions a 16-token tile with ~180 spill loads and stores (triton 3.6: 1,496 and 431 with dots at
    # the cap of 168 registers); PART 2 is the window's own launch (these loops alone)
    from kivi_kernels.decode_attention_gqa import MAXNREG_GQA_MMA, MMA_LAZY_RESCALE, MMA_PREFETCH
    consts = ("QG=8 D=128 G=32 BITS=2 BW=2 BLOCK_N=16 HAS_VALID=False NT=32 DEV_LENS=False WIN=0 PACKED=False "
              f"ASM=True VDENSE=True REP=1 MMA=True EARLY=False RDOT=True PF={MMA_PREFETCH} PART={part} "
              f"TAU={MMA_LAZY_RESCALE} PDL=True PDL_WAIT={part} num_warps=1 maxnreg={MAXNREG_GQA_MMA}").split()
    run = build(tmp_path, "decode_attention_gqa.py", "_decode_attn_gqa_kernel", consts, "gqa_rdot")
    loops = [dict((k, int(v)) for k, v in re.findall(r"(\w+):(\d+)", line)) for line in run.stdout.splitlines()
             if line.strip().startswith("loop")]
    rest = [c for c in loops if c.get("HMMA") == 32]
    # (on its own launch ptxas reloads 3 loop invariants from the stack in the first loop, triton 3.6)
    assert len(rest) == 2 and all(c.get("LDL", 0) <= (4 if part else 0) and c.get("STL", 0) == 0 for c in rest), \
        run.stdout
    assert sum(sum(c.values()) for c in rest) < 2500, run.stdout


@pytest.mark.parametrize("kernel_file,kernel,consts,wait", [
    ("decode_attention.py", "_decode_attn_reduce_kernel", "GROUP=4 QLEN=1 D=128 DP=128 SC=16 PDL=True num_warps=1",
     "top"),
    ("decode_attention_gqa.py", "_decode_attn_gqa_kernel",
     "QG=8 D=128 G=32 BITS=2 BW=2 BLOCK_N=16 HAS_VALID=False NT=32 DEV_LENS=False WIN=0 PACKED=False ASM=True "
     "VDENSE=True REP=1 MMA=True EARLY=False RDOT=True PF=1 PART=2 TAU=2.0 PDL=True PDL_WAIT=2 "
     "num_warps=1 maxnreg=168", "end"),
    ("decode_attention_gqa.py", "_decode_attn_gqa_kernel",
     "QG=8 D=128 G=32 BITS=2 BW=2 BLOCK_N=16 HAS_VALID=False NT=32 DEV_LENS=False WIN=0 PACKED=False ASM=True "
     "VDENSE=True REP=1 MMA=True EARLY=False RDOT=True PF=1 PART=1 TAU=2.0 PDL=True PDL_WAIT=1 "
     "num_warps=1 maxnreg=168", "top"),
    ("decode_attention.py", "_decode_attn_split_kernel",  # v1's one-tile programs: 1 stage, plain loads
     "GROUP=1 QLEN=1 MP=16 D=128 DP=128 G=32 K_BITS=2 V_BITS=2 BLOCK_N=64 HAS_VALID=False SINGLE=False PREC=tf32 "
     "DOT_F32=False USE_DOT=True DEV_LENS=False WIN=0 PDL=True PDL_WAIT=1 num_warps=4 num_stages=1", "top"),
])
def test_pdl_waits_where_the_launch_needs_them(tmp_path, kernel_file, kernel, consts, wait):
    # programmatic dependent launch (kernels/pdl.py): a program lets the next launch start before its first load; a
    # dependent launch waits before its first load (the merge; a call's first launch as a dependent), or, for the
    # window's own launch, which reads nothing the bulk writes, after its last store, so the merge waiting on it
    # also waits on the bulk. A wait placed after a load would read the last launch's partials before they land
    run = build(tmp_path, kernel_file, kernel, consts.split(), "pdl")
    # (a predicated instruction starts with its guard: "@%p2 ld.global...")
    ptx = [re.sub(r"^@!?%p\d+\s+", "", line.strip()) for line in (tmp_path / "pdl.ptx").read_text().splitlines()]
    waits = [i for i, line in enumerate(ptx) if line.startswith("griddepcontrol.wait")]
    loads = [i for i, line in enumerate(ptx) if line.startswith("ld.global")]
    stores = [i for i, line in enumerate(ptx) if line.startswith("st.global")]
    assert len(waits) == 1 and loads and stores, run.stdout
    if wait == "top":
        assert waits[0] < loads[0], "the dependent launch must wait before its first load"
    else:
        assert waits[0] > stores[-1], "the window's launch waits after its last store"
    triggers = [i for i, line in enumerate(ptx) if line.startswith("griddepcontrol.launch_dependents")]
    if "PDL_WAIT" in consts:  # the splits' launches let the next one start, before their first load
        assert len(triggers) == 1 and triggers[0] < loads[0]
    if "PDL_WAIT=1" in consts:  # ... and after waiting on what ran before: the window's launch has no wait before
        assert waits[0] < triggers[0]  # its loads, so it must not start before the bulk's prerequisites are done
