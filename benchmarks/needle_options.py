"""Needle retrieval of the opt-in options on SmolLM2 (same cells and keys as `kivi eval --tasks needle`).

    python benchmarks/needle_options.py [--out benchmarks/results/needle_smollm2_options.json]
"""

from __future__ import annotations

import argparse
import json

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer

from kivi_core import KiviConfig, prepare
from kivi_core.assets import demo_model_dir
from kivi_core.eval_needle import run_needle
from kivi_core.eval_settings import Setting

SETTINGS = {
    "k2v2 sinks=4 rot": KiviConfig(2, 2, 32, 128, sink_tokens=4, rotate_keys=True),
    "k2v2 sinks=4": KiviConfig(2, 2, 32, 128, sink_tokens=4),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--only", default=",".join(SETTINGS))
    ap.add_argument("--out", default="benchmarks/results/needle_smollm2_options.json")
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = demo_model_dir()
    tok = AutoTokenizer.from_pretrained(d)
    model = prepare(AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval())
    rows = []
    for name in args.only.split(","):
        res = run_needle(model, tok, Setting("kivi", SETTINGS[name]), [512, 1024, 2048], [0, 0.25, 0.5, 0.75, 1.0], 4)
        row = {"setting": name, "mean_accuracy": res.mean_accuracy, "accuracy": res.accuracy}
        print(row, flush=True)
        rows.append(row)
    json.dump({"cells": "lengths 512/1024/2048 x depths 0/.25/.5/.75/1 x 4 keys (seed 0)", "results": rows},
              open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
