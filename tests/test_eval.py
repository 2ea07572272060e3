"""The eval harness: decode-mode PPL equals a plain forward at full precision; the needle sits where it says."""

from __future__ import annotations

import random

import pytest
import torch
from transformers import LlamaConfig, LlamaForCausalLM

from kivi_core import KiviConfig, prepare
from kivi_core.eval_needle import NEEDLE, extract_answer, make_needle_case, run_needle
from kivi_core.eval_ppl import check_protocol, decode_ppl, plain_forward_ppl
from kivi_core.eval_settings import Setting, standard_settings

VOCAB = 128


@pytest.fixture(scope="module")
def tiny_llama():
    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=VOCAB, hidden_size=64, intermediate_size=128, num_hidden_layers=2, num_attention_heads=4,
        num_key_value_heads=2, head_dim=32, max_position_embeddings=1024,
    )
    return prepare(LlamaForCausalLM(cfg).eval())


class CharTokenizer:
    """One token per ASCII character: token positions are character positions."""

    def __call__(self, text, add_special_tokens=False):
        return type("Enc", (), {"input_ids": [ord(c) % VOCAB for c in text]})()

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids)


@pytest.mark.parametrize("windows, window, prefill", [(3, 96, 40), (2, 65, 1), (1, 50, 48)])
def test_decode_ppl_equals_plain_forward_at_full_precision(tiny_llama, windows, window, prefill):
    ids = torch.randint(0, VOCAB, (400,), generator=torch.Generator().manual_seed(1))
    res = decode_ppl(tiny_llama, ids, Setting("fp"), windows, window, prefill, batch_size=2)
    plain = plain_forward_ppl(tiny_llama, ids, windows, window, prefill)
    assert res.tokens_scored == windows * (window - prefill - 1)
    assert res.ppl == pytest.approx(plain, rel=1e-5), f"decode-mode {res.ppl} vs plain forward {plain}"


def test_anchor_token_count():
    # issue 5: 8 windows of T=1024, P=512 score 4,088 tokens
    assert 8 * (1024 - 512 - 1) == 4088
    check_protocol(8 * 1024, 8, 1024, 512)
    with pytest.raises(ValueError, match="windows"):
        check_protocol(8 * 1024 - 1, 8, 1024, 512)
    with pytest.raises(ValueError, match="prefill"):
        check_protocol(4096, 1, 1024, 1023)


def test_kivi_cache_matches_independent_simulation(tiny_llama):
    """KiviCache (packed) and SimulatedKiviCache (fake-quant, separate code) give the same decode-mode PPL."""
    ids = torch.randint(0, VOCAB, (400,), generator=torch.Generator().manual_seed(2))
    for cfg in (KiviConfig(2, 2, 32, 32), KiviConfig(4, 2, 16, 32), KiviConfig(2, 2, 32, 0)):
        real = decode_ppl(tiny_llama, ids, Setting("kivi", cfg), 2, 130, 40)
        sim = decode_ppl(tiny_llama, ids, Setting("simulated", cfg), 2, 130, 40)
        assert real.ppl == pytest.approx(sim.ppl, rel=1e-5), cfg.label()
        assert real.cache_bytes and sim.cache_bytes is None


def test_standard_settings_names():
    names = [s.name for s in standard_settings((2, 4), (32,), (128,), ("per-token-keys", "no-window"))]
    assert names == ["full precision", "k2v2 G=32 R=128", "k4v4 G=32 R=128", "k2v2 G=32 R=128 keys per-token",
                     "k2v2 G=32 R=0"]
    with pytest.raises(ValueError, match="per-token-keys"):
        standard_settings(ablations=("rotate",))
    opts = [s.name for s in standard_settings((2,), (32,), (128,), options=("sinks", "rotate", "sinks+rotate"))]
    assert opts == ["full precision", "k2v2 G=32 R=128", "k2v2 G=32 R=128 sinks=4", "k2v2 G=32 R=128 rot",
                    "k2v2 G=32 R=128 sinks=4 rot"]
    with pytest.raises(ValueError, match="sinks"):
        standard_settings(options=("per-token-keys",))


@pytest.mark.parametrize("length", [300, 400, 533])
@pytest.mark.parametrize("depth", [0.0, 0.1, 0.5, 0.9, 1.0])
def test_needle_is_where_it_says(length, depth):
    tok = CharTokenizer()
    case = make_needle_case(tok, length, depth, random.Random(length))
    assert len(case.input_ids) == length
    assert tok.decode(case.input_ids[case.needle_start : case.needle_end]) == NEEDLE.format(key=case.key)
    assert len(case.key) == 5 and case.key.isdigit()
    # snapped to a filler sentence boundary: at most half a sentence (<= 22 characters) from the depth asked
    assert abs(case.actual_depth - depth) * case.filler_tokens <= 11
    if depth == 0.0:
        assert tok.decode(case.input_ids[: case.needle_start]).endswith("there.")
    if depth == 1.0:
        assert tok.decode(case.input_ids[case.needle_end :]).startswith(" What is the pass key?")


def test_needle_depth_is_monotonic():
    tok = CharTokenizer()
    starts = [make_needle_case(tok, 600, d, random.Random(0)).needle_start for d in (0, 0.25, 0.5, 0.75, 1)]
    assert starts == sorted(starts) and len(set(starts)) == 5


def test_extract_answer():
    assert extract_answer(" 71432. Remember") == "71432"
    assert extract_answer(" unknown") == ""


def test_run_needle_grid(tiny_llama):
    res = run_needle(tiny_llama, CharTokenizer(), Setting("kivi", KiviConfig(2, 2, 32, 32)), [300, 360], [0.0, 1.0],
                     trials=2, batch_size=3, max_new_tokens=3)
    assert set(res.accuracy) == {"300@0", "300@1", "360@0", "360@1"}
    assert len(res.answers) == 8 and all(0.0 <= a <= 1.0 for a in res.accuracy.values())
