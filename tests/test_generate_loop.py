"""`kivi generate --loop auto|lean|generate` (and profile's --loop auto): the lean loop gives the plain loop's
tokens, texts and records, EOS stops included; what it cannot run is a one-line usage error or, under auto,
the plain loop. `--arch tiny` on CPU, where the lean loop runs its steps eagerly."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
from typer.testing import CliRunner

from kivi_cli import batching, loops
from kivi_cli.batching import encode
from kivi_cli.decode import Sampler, Session, new_cache, run
from kivi_cli.main import app
from kivi_cli.models import load
from kivi_cli.options import Loop, ModelChoice

TINY = ["--arch", "tiny", "--device", "cpu"]
SAME_LENGTH = ["hello", "world", "abcde"]  # 5 byte tokens each: one unpadded batch
# R = 32: a 5-token prompt + 40 new tokens crosses a key flush (position 32) with the window sliding
KIVI = ["--residual-length", "32"]
TIMING = {"prefill_s", "decode_s", "decode_tokens_per_s", "cache_bytes", "loop"}  # differ between the loops


def invoke(args, **kw):
    return CliRunner().invoke(app, args, env={"KIVI_DEBUG": None, "COLUMNS": "160"}, **kw)


def records(args) -> list[dict]:
    r = invoke(["generate", *TINY, *args, "--json"])
    assert r.exit_code == 0, r.output
    return [json.loads(line) for line in r.stdout.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def tiny():
    return load(ModelChoice(None, "tiny", "cpu", "auto"))  # seed 0: the weights every CLI run builds


def plain_tokens(loaded, kivi, prompts: list[str], n: int, eos=()) -> tuple[torch.Tensor, list[int]]:
    enc = encode(loaded, prompts, chat=False)
    session = Session(loaded.model, new_cache(loaded.model, kivi), loaded.device)
    gen = run(session, enc["input_ids"], enc["attention_mask"], n, Sampler(), eos_ids=eos)
    return gen.tokens, gen.lengths


def same_records(lean: list[dict], plain: list[dict]) -> None:
    assert [r["loop"] for r in lean] == ["lean"] * len(lean) and [r["loop"] for r in plain] == ["generate"] * len(plain)
    assert [{k: v for k, v in r.items() if k not in TIMING} for r in lean] == \
           [{k: v for k, v in r.items() if k not in TIMING} for r in plain]
    assert all(r["cache_bytes"] > 0 and r["decode_tokens_per_s"] > 0 for r in lean)


@pytest.mark.parametrize("prompts, bits", [(["hello"], "2"), (SAME_LENGTH, "2"), (SAME_LENGTH, "16")],
                         ids=["one-prompt", "batch-k2v2", "batch-fp32"])
def test_lean_loop_gives_the_plain_loops_records(prompts, bits):
    args = [*prompts, "-n", "40", "--bits", bits, *KIVI]
    lean, plain = records([*args, "--loop", "lean"]), records([*args, "--loop", "generate"])
    same_records(lean, plain)
    assert all(r["generated_tokens"] == 40 and r["finish_reason"] == "length" for r in lean)


@pytest.mark.parametrize("bits", [2, 16])
def test_lean_loop_gives_the_plain_loops_tokens_with_eos(tiny, bits):
    from kivi_core import KiviConfig

    kivi = KiviConfig(residual_length=32) if bits == 2 else None
    full, _ = plain_tokens(tiny, kivi, SAME_LENGTH, 40)
    eos = sorted({int(full[0, 3]), int(full[1, 5]), int(full[2, 9])})  # a token of each row
    want, lengths = plain_tokens(tiny, kivi, SAME_LENGTH, 40, eos)
    assert len(set(lengths)) > 1 and max(lengths) < 40, lengths  # rows stop at different steps, all early
    enc = encode(tiny, SAME_LENGTH, chat=False)
    gen, cache = loops.run_lean(tiny, kivi, enc["input_ids"], 40, eos)
    assert gen.lengths == lengths
    for row, n in enumerate(lengths):  # past its eos a row holds pad (plain) or its continuation (lean)
        assert torch.equal(gen.tokens[row, :n], want[row, :n]), row
    assert gen.tokens.shape[1] == want.shape[1] == max(lengths)  # both stop once every row has an eos
    assert gen.timing.decode_steps == max(lengths) - 1 and cache.memory().total > 0


def test_generate_lean_stops_rows_at_eos_like_the_plain_loop(tiny, monkeypatch):
    full, _ = plain_tokens(tiny, None, SAME_LENGTH, 12)
    eos = [int(full[1, 4])]  # the prompt "world" ends at its 5th token
    monkeypatch.setattr(batching, "eos_ids", lambda loaded: eos)
    args = [*SAME_LENGTH, "-n", "12", "--bits", "16"]
    lean, plain = records([*args, "--loop", "lean"]), records([*args, "--loop", "generate"])
    same_records(lean, plain)
    assert lean[1]["finish_reason"] == "eos" and lean[1]["generated_tokens"] <= 5


@pytest.mark.parametrize("args, needle", [
    (["hi", "--temperature", "0.5"], "--loop lean cannot run --temperature 0.5 (the lean loop decodes greedily)"),
    (["hi", "--sink-tokens", "4"], "--loop lean cannot run --sink-tokens"),
    (["hi", "--residual-length", "0"], "--loop lean cannot run --residual-length=0"),
    (["hi", "hello"], "--loop lean cannot run batch 1/1 (prompt #0 to prompt #1): prompts of 2, 5 tokens in one batch"),
])
def test_lean_refuses_what_it_cannot_run_in_one_line(args, needle):
    r = invoke(["generate", *TINY, *args, "--loop", "lean"])
    assert r.exit_code == 2 and needle in " ".join(r.stderr.split()), r.stderr
    assert "--loop auto" in r.stderr and len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_lean_runs_prompts_of_different_lengths_one_batch_each():
    recs = records(["hi", "hello", "-n", "6", "--loop", "lean", "--batch-size", "1"])
    assert [(r["loop"], r["prompt_tokens"], r["batch_size"]) for r in recs] == [("lean", 2, 1), ("lean", 5, 1)]


def test_auto_uses_the_plain_loop_on_cpu_and_says_so():
    assert {r["loop"] for r in records([*SAME_LENGTH, "-n", "4"])} == {"generate"}  # the default is auto
    r = invoke(["generate", *TINY, "hello", "-n", "4", "--loop", "lean"])
    assert r.exit_code == 0 and "lean loop" in r.stdout  # the summary's title names the loop


def test_auto_per_batch_on_cuda(tiny):
    # batch_loop only reads the device type, the mask and the model's config: no CUDA needed
    from kivi_core import KiviConfig

    cuda = SimpleNamespace(model=tiny.model, name="tiny", device=torch.device("cuda"))
    unpadded, padded = torch.ones(2, 5, dtype=torch.long), torch.tensor([[0, 1, 1], [1, 1, 1]])
    k2 = KiviConfig()
    assert loops.batch_loop(Loop.auto, cuda, k2, 0.0, unpadded, 8) == "lean"
    assert loops.batch_loop(Loop.auto, cuda, None, 0.0, unpadded, 8) == "lean"  # fp16 side of the loop
    assert loops.batch_loop(Loop.auto, cuda, k2, 0.0, padded, 8) == "generate"
    assert loops.batch_loop(Loop.auto, cuda, k2, 0.7, unpadded, 8) == "generate"
    assert loops.batch_loop(Loop.auto, cuda, KiviConfig(sink_tokens=4), 0.0, unpadded, 8) == "generate"
    assert loops.batch_loop(Loop.generate, cuda, k2, 0.0, unpadded, 8) == "generate"
    assert loops.batch_loop(Loop.auto, tiny, k2, 0.0, unpadded, 8) == "generate"  # CPU


def test_profile_loop_auto_and_lean_refusal():
    r = invoke(["profile", *TINY, "--batch", "1", "--ctx", "40", "--gen", "3", "--loop", "auto", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["loop"] == "generate"  # auto on CPU
    r = invoke(["profile", *TINY, "--ctx", "40", "--gen", "3", "--sink-tokens", "4"])  # default: lean
    assert r.exit_code == 2 and "--loop lean cannot run --sink-tokens" in r.stderr
    r = invoke(["profile", *TINY, "--ctx", "40", "--gen", "3", "--loop", "auto", "--prefill-batch", "2"])
    assert r.exit_code == 2 and "--prefill-batch 2 needs --loop lean" in r.stderr
