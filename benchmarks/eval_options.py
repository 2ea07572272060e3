"""Decode-mode PPL of the opt-in options (sinks, key rotation) on SmolLM2, issue 5's protocol.

    python benchmarks/eval_options.py --only "k2v2 sinks=4" [--out benchmarks/results/eval_smollm2_options]

Same protocol and code path as benchmarks/eval_smollm2_anchor.py (8 windows of 1024, prefill 512,
4,088 scored tokens, fp32, CPU); writes <out>.json with one row per setting run.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kivi_core import KiviConfig, prepare
from kivi_core.assets import demo_model_dir, text_corpus
from kivi_core.eval_ppl import decode_ppl
from kivi_core.eval_settings import Setting

OPTIONS = {
    "k2v2": KiviConfig(2, 2, 32, 128),
    "k2v2 sinks=4": KiviConfig(2, 2, 32, 128, sink_tokens=4),
    "k2v2 rot": KiviConfig(2, 2, 32, 128, rotate_keys=True),
    "k2v2 sinks=4 rot": KiviConfig(2, 2, 32, 128, sink_tokens=4, rotate_keys=True),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(OPTIONS))
    ap.add_argument("--out", default="benchmarks/results/eval_smollm2_options")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = demo_model_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = prepare(AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval())
    ids = tok(text_corpus("wiki"), return_tensors="pt", add_special_tokens=False).input_ids[0]
    rows = json.load(open(args.out + ".json"))["results"] if os.path.exists(args.out + ".json") else []
    for name in args.only.split(","):
        t0 = time.time()
        res = decode_ppl(model, ids, Setting("kivi", OPTIONS[name]), 8, 1024, 512)
        row = {"setting": name, "config": OPTIONS[name].label(), "ppl": res.ppl, "tokens_scored": res.tokens_scored,
               "cache_bytes": res.cache_bytes, "seconds": time.time() - t0}
        print(row, flush=True)
        rows = [r for r in rows if r["setting"] != name] + [row]
        json.dump({"protocol": "8 windows x 1024, prefill 512, 4088 scored tokens, SmolLM2-135M fp32 CPU",
                   "versions": {"torch": torch.__version__}, "results": rows}, open(args.out + ".json", "w"), indent=1)


if __name__ == "__main__":
    main()
