"""Count SASS instructions per loop of a Triton kernel compiled for sm_90 — no GPU needed.

    python benchmarks/kernel_sass.py kernels/decode_attention_v3.py _decode_attn_v3_kernel \
        D=128 DP=128 G=32 K_BITS=2 V_BITS=2 BW=32 DC=8 BLOCK_N=64 HAS_VALID=False SINGLE=False num_warps=4

Compiles with Triton's bundled ptxas (pointer and stride arguments marked 16-divisible, as Triton
specializes them at launch), disassembles with nvdisasm, and prints each loop's instruction histogram
(and the register / shared-memory use). `nodiv=s_vsh,s_vmh` leaves those arguments without the 16-divisibility
Triton gives a launch's integers that are multiples of 16 (a cache whose row capacity is not). Instructions per element = a loop's count / (elements a thread
handles per iteration): how v3's tile shape was chosen (its docstring gives the numbers). Files land in
$KC (default /tmp/kc): .ttgir (layouts), .cubin, .sass.
"""
import sys, re, subprocess, os, importlib.util, collections, warnings
warnings.filterwarnings("ignore")
os.environ.setdefault("TRITON_DEFAULT_FP_FUSION", "1")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)
KC = os.environ.get("KC", "/tmp/kc")
os.makedirs(KC, exist_ok=True)
import triton
from triton.backends.compiler import GPUTarget
from triton.compiler import ASTSource
path, kname = sys.argv[1], sys.argv[2]
kv = dict(a.split("=", 1) for a in sys.argv[3:])
nw = int(kv.pop("num_warps", 4)); ns = int(kv.pop("num_stages", 3)); arch = int(kv.pop("arch", 90))
maxnreg = kv.pop("maxnreg", None)
tag = kv.pop("tag", kname)
nodiv = set(filter(None, kv.pop("nodiv", "").split(",")))  # stride args a launch would not see 16-divisible
sys.path.insert(0, os.path.dirname(path))
import types
pkg = types.ModuleType("kivi_kernels"); pkg.__path__ = [os.path.dirname(path)]; sys.modules["kivi_kernels"] = pkg
spec = importlib.util.spec_from_file_location("kivi_kernels." + os.path.basename(path)[:-3], path)
mod = importlib.util.module_from_spec(spec); sys.modules[spec.name] = mod; spec.loader.exec_module(mod)
fn = getattr(mod, kname)
names = fn.arg_names
const = {}
for k, v in kv.items():
    try: const[k] = int(v)
    except ValueError:
        try: const[k] = float(v)
        except ValueError: const[k] = {"True": True, "False": False, "None": None}.get(v, v)
sig = {}
for n in names:
    if n in const: sig[n] = "constexpr"
    elif n.endswith("_ptr"):
        sig[n] = ("*i32" if n[:2] in ("kc", "vc") or n.startswith("lens") else "*fp32" if n[:2] in ("ac", "m_", "l_") else "*u8" if n.startswith("valid") else "*fp16")
    elif n in ("qk_scale",): sig[n] = "fp32"
    else: sig[n] = "i32"
div = {(i,): [["tt.divisibility", 16]] for i, n in enumerate(names) if n not in const and n not in nodiv and (n.endswith("_ptr") or (n.startswith("s_") and not n.endswith(("d", "mt"))) or n == "chunk")}
src = ASTSource(fn=fn, signature=sig, constexprs={(names.index(k),): v for k, v in const.items()}, attrs=div)
k = triton.compile(src, target=GPUTarget("cuda", arch, 32), options={"num_warps": nw, "num_stages": ns, **({"maxnreg": int(maxnreg)} if maxnreg else {})})
open(f"{KC}/{tag}.ttgir", "w").write(k.asm["ttgir"])
open(f"{KC}/{tag}.ptx", "w").write(k.asm["ptx"])
open(f"{KC}/{tag}.cubin", "wb").write(k.asm["cubin"])
B = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin")
sass = subprocess.run([f"{B}/nvdisasm", "-c", f"{KC}/{tag}.cubin"], capture_output=True, text=True).stdout
open(f"{KC}/{tag}.sass", "w").write(sass)
regs = re.search(r"REG:(\d+)", subprocess.run([f"{B}/cuobjdump", "-res-usage", f"{KC}/{tag}.cubin"], capture_output=True, text=True).stdout)
print(f"{tag}: shared={k.metadata.shared} scratch={getattr(k.metadata, 'global_scratch_size', 0)} regs={regs.group(1) if regs else '?'}")
ins, labels = [], {}
for l in sass.splitlines():
    m = re.match(r"^(\.L_x_\d+):", l.strip())
    if m: labels[m.group(1)] = len(ins); continue
    m = re.match(r"^\s+/\*([0-9a-f]{4,})\*/\s+(.*?);", l)
    if m: ins.append(m.group(2).strip())
for i, t in enumerate(ins):
    m = re.search(r"BRA\s+(?:`\()?(\.L_x_\d+)", t)
    if m and labels.get(m.group(1), 1e9) <= i:
        a = labels[m.group(1)]; body = ins[a:i+1]
        # IMAD.MOV is a move that ptxas puts on the integer-multiply pipe: counted as MOV, not as arithmetic
        c = collections.Counter(re.sub(r"^IMAD\.MOV.*", "MOV", re.sub(r"^@!?U?P\w+\s+", "", x)).split()[0].split(".")[0]
                                for x in body)
        # every op, not the commonest: the build tests look for rare ones (one CCTL a tile)
        print(f"  loop [{a},{i}] {len(body)}:", ", ".join(f"{k}:{v}" for k, v in c.most_common()))
