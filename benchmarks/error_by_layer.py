"""Where does KIVI-2's loss come from? Decode-mode PPL with only ONE layer quantized (k2v2 G=32 R=128, the
rest full precision), for every layer of SmolLM2; fake-quant cache (kivi_core.ablations, exact KIVI rules).

    python benchmarks/error_by_layer.py --layers 0-14 --out /tmp/a.json   (split the layers over processes)

Protocol: the first `--windows` windows of issue 5's protocol (T=1024, P=512).
"""

from __future__ import annotations

import argparse
import json
import math

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer
from transformers.cache_utils import Cache, DynamicLayer

from kivi_core import KiviConfig, cache_kwarg
from kivi_core.ablations import SimulatedKiviLayer
from kivi_core.assets import demo_model_dir, text_corpus
from kivi_core.eval_ppl import make_windows


def nll(model, wins, cache) -> float:
    kw = cache_kwarg(model)
    total = 0.0
    with torch.inference_mode():
        model(wins[:, :512], **{kw: cache}, use_cache=True)
        for t in range(512, wins.shape[1] - 1):
            logits = model(wins[:, t : t + 1], **{kw: cache}, use_cache=True).logits[:, -1].float()
            total += torch.nn.functional.cross_entropy(logits, wins[:, t + 1], reduction="sum").item()
    return total / (wins.shape[0] * (wins.shape[1] - 513))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--layers", default="all")
    ap.add_argument("--windows", type=int, default=2)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    torch.set_num_threads(1)
    d = demo_model_dir()
    model = AutoModelForCausalLM.from_pretrained(d, dtype=torch.float32).eval()
    tok = AutoTokenizer.from_pretrained(d)
    ids = tok(text_corpus("wiki"), return_tensors="pt", add_special_tokens=False).input_ids[0]
    wins = make_windows(ids, 8, 1024, 512)[: args.windows]
    n = model.config.num_hidden_layers
    if args.layers == "all":
        layers = list(range(n))
    else:
        a, b = map(int, args.layers.split("-"))
        layers = list(range(a, b + 1))
    cfg = KiviConfig(2, 2, 32, 128)
    rows = {}
    for i in [-1] + layers:  # -1: nothing quantized (the baseline)
        cache = Cache(layers=[SimulatedKiviLayer(cfg) if j == i else DynamicLayer() for j in range(n)])
        rows[i] = math.exp(nll(model, wins, cache))
        print(i, round(rows[i], 4), flush=True)
    json.dump(rows, open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
