"""`kivi chat / generate / profile` end to end through Typer's CliRunner, on `--arch tiny` (random weights,
CPU, a second or two per invocation)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from kivi_cli.main import app

TINY = ["--arch", "tiny", "--device", "cpu"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    # The tiny model's matmuls are microseconds; with 2 threads on a shared 2-core box, OpenMP spin-waits
    # made each decode step ~40x slower (107 ms vs 2.8 ms measured), so these tests run single-threaded.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def runner():
    return CliRunner()


def invoke(runner, args, **kw):
    env = {"KIVI_DEBUG": None, "COLUMNS": "160", **kw.pop("env", {})}
    return runner.invoke(app, args, env=env, **kw)


def json_lines(text: str) -> list[dict]:
    return [json.loads(line) for line in text.splitlines() if line.strip()]


# --- top level ----------------------------------------------------------------------------------------
def test_version(runner):
    r = invoke(runner, ["--version"])
    assert r.exit_code == 0 and r.stdout.startswith("kivi ")


def test_help_lists_commands(runner):
    r = invoke(runner, ["--help"])
    assert r.exit_code == 0
    for name in ("chat", "generate", "profile"):
        assert name in r.stdout


# --- generate -----------------------------------------------------------------------------------------
GEN_KEYS = {"index", "line", "prompt", "text", "prompt_tokens", "generated_tokens", "finish_reason", "kivi",
            "batch_size", "prefill_s", "decode_s", "decode_tokens_per_s", "cache_bytes", "cache_bytes_full_precision",
            "loop"}


def test_generate_json_one_line_per_prompt(runner):
    r = invoke(runner, ["generate", *TINY, "hello", "a longer second prompt", "-n", "6", "--json"])
    assert r.exit_code == 0, r.output
    records = json_lines(r.stdout)
    assert [rec["prompt"] for rec in records] == ["hello", "a longer second prompt"]
    for rec in records:
        assert set(rec) == GEN_KEYS
        assert 1 <= rec["generated_tokens"] <= 6
        assert rec["batch_size"] == 2 and rec["kivi"] == "k2v2 G=32 R=128"
        assert rec["loop"] == "generate"  # --loop auto on CPU: the plain loop
        assert rec["cache_bytes"] > 0 and rec["cache_bytes_full_precision"] > 0
    assert records[0]["prompt_tokens"] == len("hello")  # byte tokenizer, no BOS


def test_generate_human_output_and_summary(runner):
    r = invoke(runner, ["generate", *TINY, "hello", "-n", "4", "--bits", "4"])
    assert r.exit_code == 0, r.output
    assert "hello" in r.stdout and "k4v4 G=32 R=128" in r.stdout and "decode tok/s" in r.stdout


def test_generate_file_reports_bad_lines_and_runs_the_rest(runner, tmp_path):
    f = tmp_path / "prompts.jsonl"
    f.write_text('{"prompt": "first"}\nplain second\n{"prompt": 3}\n\n{not json\n{"prompt": "last"}\n')
    r = invoke(runner, ["generate", *TINY, "--file", str(f), "-n", "3", "--json", "--batch-size", "2"])
    assert r.exit_code == 1
    records = json_lines(r.stdout)
    assert [rec.get("prompt") for rec in records] == ["first", "plain second", None, None, "last"]
    assert [rec["line"] for rec in records] == [1, 2, 3, 5, 6]
    assert "line 3" in records[2]["error"] and "prompt" in records[2]["error"]
    assert "line 5" in records[3]["error"] and "JSON" in records[3]["error"]
    assert "2 of 5 prompts failed" in r.stderr


def test_generate_reads_stdin(runner):
    r = invoke(runner, ["generate", *TINY, "-n", "2", "--json"], input="one\ntwo\n")
    assert r.exit_code == 0, r.output
    assert [rec["line"] for rec in json_lines(r.stdout)] == [1, 2]


def test_generate_left_padding_matches_unbatched(runner):
    # Full-precision cache: batching with left padding must not change any row's greedy tokens.
    prompts = ["hi", "a much longer prompt than the first one", "mid length"]
    args = ["generate", *TINY, *prompts, "-n", "8", "--bits", "16", "--json"]
    batched = json_lines(invoke(runner, [*args, "--batch-size", "3"]).stdout)
    alone = json_lines(invoke(runner, [*args, "--batch-size", "1"]).stdout)
    assert [r["text"] for r in batched] == [r["text"] for r in alone]
    assert batched[0]["batch_size"] == 3 and alone[0]["batch_size"] == 1


def test_generate_sampling_is_seeded(runner):
    args = ["generate", *TINY, "hello", "-n", "8", "--temperature", "1.0", "--top-p", "0.9", "--json"]
    a = json_lines(invoke(runner, [*args, "--seed", "1"]).stdout)[0]["text"]
    b = json_lines(invoke(runner, [*args, "--seed", "1"]).stdout)[0]["text"]
    assert a == b


def test_generate_chat_template(runner):
    r = invoke(runner, ["generate", *TINY, "hello", "--chat", "-n", "2", "--json"])
    assert r.exit_code == 0, r.output
    # ChatML around "hello": <|im_start|> user \n hello <|im_end|> \n <|im_start|> assistant \n
    assert json_lines(r.stdout)[0]["prompt_tokens"] == 1 + 5 + 5 + 1 + 1 + 1 + 9 + 1


@pytest.mark.parametrize("args, needle", [
    (["--bits", "3"], "3 is not one of 2, 4, 16"),
    (["--group-size", "24"], "--group-size=24"),
    (["--residual-length", "40"], "--residual-length=40"),
    (["--k-bits", "8"], "8 is not one of 2, 4"),
])
def test_bad_kivi_flags_exit_2(runner, args, needle):
    r = invoke(runner, ["generate", *TINY, "hi", *args])
    assert r.exit_code == 2
    assert needle in " ".join(r.output.split())


def test_usage_errors_are_one_line(runner, tmp_path):
    r = invoke(runner, ["generate", "--model", str(tmp_path / "missing"), "hi"])
    assert r.exit_code == 2 and "does not exist" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr
    r = invoke(runner, ["generate", *TINY], input="")
    assert r.exit_code == 2 and "no prompt" in r.stderr
    r = invoke(runner, ["profile", "--arch", "tiny", "--ctx", "16", "--gen", "16"])
    assert r.exit_code == 2 and "--gen 16 must be smaller than --ctx 16" in r.stderr


def test_kivi_debug_shows_traceback(runner, tmp_path):
    r = invoke(runner, ["generate", "--model", str(tmp_path / "missing"), "hi"], env={"KIVI_DEBUG": "1"})
    assert r.exit_code == 2 and "Traceback" in r.stderr


# --- profile ------------------------------------------------------------------------------------------
def test_profile_json(runner):
    r = invoke(runner, ["profile", *TINY, "--batch", "2", "--ctx", "200", "--gen", "6", "--bits", "2,4", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # exactly one JSON document
    assert (doc["batch"], doc["ctx"], doc["prompt_len"], doc["gen"]) == (2, 200, 194, 6)
    names = [s["name"] for s in doc["sides"]]
    assert names == ["fp32", "kivi-k2v2", "kivi-k4v4"]
    base, k2, k4 = doc["sides"]
    for side in doc["sides"]:
        assert side["status"] == "ok"
        assert side["memory"]["cache_bytes"] > 0
        assert side["memory"]["torch_peak_allocated_bytes"] is None  # CPU
        assert side["memory"]["nvml_peak_used_bytes"] is None
        assert side["timing"]["decode_steps"] == 5 and side["timing"]["decode_tokens_per_s"] > 0
    assert base["memory"]["cache_bytes"] == base["memory"]["analytic_kv_bytes"]  # DynamicCache: exact
    assert k2["ratios_vs_baseline"]["analytic_kv_x_smaller"] > k4["ratios_vs_baseline"]["analytic_kv_x_smaller"] > 1
    assert k2["memory"]["cache_bytes_by_component"]["codes"] > 0


def test_profile_table(runner):
    r = invoke(runner, ["profile", *TINY, "--batch", "1", "--ctx", "64", "--gen", "4"])
    assert r.exit_code == 0, r.output
    for needle in ("fp32", "kivi-k2v2", "KV cache, analytic", "decode tok/s", "NVML peak used", "n/a"):
        assert needle in r.stdout
    assert "batch 1" in r.stderr  # progress on stderr


@pytest.mark.parametrize("loop", ["lean", "generate"])
def test_profile_reports_oom_and_continues(monkeypatch, loop):
    from kivi_cli import profiling
    from kivi_cli.models import load
    from kivi_cli.options import ModelChoice
    from kivi_core import KiviConfig

    oom = torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 137.44 GiB")
    if loop == "generate":
        real = profiling.new_cache

        def baseline_oom(model, kivi):
            if kivi is None:
                raise oom
            return real(model, kivi)

        monkeypatch.setattr(profiling, "new_cache", baseline_oom)
    else:
        real = profiling._lean_run

        def baseline_oom(loaded, spec, *args):
            if spec.kivi is None:
                raise oom
            return real(loaded, spec, *args)

        monkeypatch.setattr(profiling, "_lean_run", baseline_oom)
    loaded = load(ModelChoice(None, "tiny", "cpu", "auto"))
    specs = [profiling.SideSpec("fp32", None), profiling.SideSpec("kivi-k2v2", KiviConfig())]
    report = profiling.profile(loaded, specs, batch=2, ctx=300, gen=4, seed=0, find_max=False,
                               progress=lambda _: None, loop=loop)
    base, kivi = report.sides
    assert base.status == "oom" and "out of memory" in base.error and base.timing is None
    assert base.memory.analytic_kv_bytes > 0  # still says what it would have needed
    assert kivi.status == "ok" and kivi.timing.decode_steps == 3
    assert kivi.ratios["analytic_kv_x_smaller"] > 1 and kivi.ratios["decode_tokens_per_s_x"] is None


@pytest.mark.parametrize("loop", ["lean", "generate"])
def test_profile_find_max_batch(monkeypatch, loop):
    from kivi_cli import profiling
    from kivi_cli.models import load
    from kivi_cli.options import ModelChoice
    from kivi_core import KiviConfig

    limits = {None: 5, "kivi": 19}  # pretend memory: the batch that still fits on each side
    current = {}
    real_cache, real_lean = profiling.new_cache, profiling._lean_run

    def check(batch, kivi):
        if batch > limits[None if kivi is None else "kivi"]:
            raise torch.OutOfMemoryError("out of memory")

    def new_cache(model, kivi):
        current["kivi"] = kivi
        return real_cache(model, kivi)

    real_run = profiling.run

    def run(session, ids, *args, **kwargs):
        check(ids.shape[0], current["kivi"])
        return real_run(session, ids, *args, **kwargs)

    def lean_run(loaded, spec, ids, *args):
        check(ids.shape[0], spec.kivi)
        return real_lean(loaded, spec, ids, *args)

    monkeypatch.setattr(profiling, "new_cache", new_cache)
    monkeypatch.setattr(profiling, "run", run)
    monkeypatch.setattr(profiling, "_lean_run", lean_run)
    loaded = load(ModelChoice(None, "tiny", "cpu", "auto"))
    specs = [profiling.SideSpec("fp32", None), profiling.SideSpec("kivi-k2v2", KiviConfig())]
    seen = []
    report = profiling.profile(loaded, specs, batch=2, ctx=24, gen=2, seed=0, find_max=True, progress=seen.append,
                               loop=loop)
    base, kivi = report.sides
    assert (base.max_batch, kivi.max_batch) == (5, 19)
    # measured 5% below the largest batch that fits (the default safety margin)
    assert (base.batch, kivi.batch) == (4, 18) and base.status == kivi.status == "ok"
    assert report.safety_margin == 0.05 and report.as_dict()["safety_margin"] == 0.05
    assert any("batch 8 oom" in s for s in seen)


def test_profile_plot(runner, tmp_path):
    args = ["profile", *TINY, "--batch", "1", "--ctx", "40", "--gen", "3"]
    r = invoke(runner, [*args, "--plot", str(tmp_path / "p.txt")])
    assert r.exit_code == 2 and ".png" in r.stderr
    r = invoke(runner, [*args, "--plot", str(tmp_path / "p.png")])
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        assert r.exit_code == 1 and "pip install" in r.stderr and "matplotlib" in r.stderr
    else:
        assert r.exit_code == 0 and (tmp_path / "p.png").stat().st_size > 0


# --- chat ---------------------------------------------------------------------------------------------
def test_chat_piped_stdin(runner):
    r = invoke(runner, ["chat", *TINY, "-n", "5"], input="hi\n/stats\n/bogus\nhow are you\n/exit\nnever read\n")
    assert r.exit_code == 0, r.output
    assert "KV bytes held" in r.stdout and "tokens in cache" in r.stdout  # the /stats table
    assert r.stderr.count("tok/s | KV cache") == 2  # one status line per reply
    assert "unknown command '/bogus'" in r.stderr


def test_chat_json_keeps_one_cache_across_turns(runner):
    r = invoke(runner, ["chat", *TINY, "-n", "5", "--json"], input="hi\nand then\n/stats\n/reset\nagain\n")
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # Ctrl-D (end of input) exits cleanly; one document
    kinds = [e["type"] for e in doc["events"]]
    assert kinds == ["reply", "reply", "stats", "reset", "reply"]
    first, second, stats, _, after_reset = doc["events"]
    assert not second["reprefilled"]  # the second turn fed only its new tokens
    assert second["cached_tokens"] > first["cached_tokens"] + len("and then")
    assert stats["cached_tokens"] == second["cached_tokens"] and stats["turns"] == 2
    assert after_reset["cached_tokens"] == first["cached_tokens"] - len("hi") + len("again")
    assert doc["final"]["turns"] == 1


def test_chat_stop_flag_cuts_reply():
    from kivi_cli.conversation import Conversation
    from kivi_cli.decode import Sampler
    from kivi_cli.models import load
    from kivi_cli.options import ModelChoice

    loaded = load(ModelChoice(None, "tiny", "cpu", "auto"))
    conv = Conversation(loaded, None, Sampler(), max_new_tokens=50)
    asked = []

    def stop_after_three() -> bool:  # what Ctrl-C does: a flag the loop reads between tokens
        asked.append(1)
        return len(asked) >= 3

    turn = conv.reply("hi", lambda _: None, stop_after_three)
    assert turn.stopped and turn.new_tokens == 3
    # the unfed last token is carried into the next turn, so the cache stays consistent
    assert conv.pending and conv.reply("more", lambda _: None, lambda: False).reprefilled is False


@pytest.mark.parametrize("chunk", [1, 7, 64])
def test_chunked_prefill_matches_one_shot_full_precision(chunk):
    from kivi_cli.decode import Sampler, Session, new_cache, run
    from kivi_cli.models import load
    from kivi_cli.options import ModelChoice

    loaded = load(ModelChoice(None, "tiny", "cpu", "auto"))
    tok = loaded.tokenizer
    tok.padding_side = "left"
    enc = tok(["short", "a prompt that is quite a bit longer"], padding=True, return_tensors="pt")

    def greedy(c):
        session = Session(loaded.model, new_cache(loaded.model, None), loaded.device)
        return run(session, enc["input_ids"], enc["attention_mask"], 10, Sampler(), prefill_chunk=c).tokens

    assert torch.equal(greedy(chunk), greedy(0))


def test_profile_prefill_chunk_flag(runner):
    r = invoke(runner, ["profile", *TINY, "--batch", "2", "--ctx", "180", "--gen", "4", "--prefill-chunk", "64", "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["prefill_chunk"] == 64 and all(s["status"] == "ok" for s in doc["sides"])


def test_profile_prefill_batch_flag(runner, monkeypatch):
    from kivi_core import engine

    seen = []
    real = engine.lean_generate

    def lean_generate(model, ids, new, kivi, **kw):
        seen.append((kivi is None, ids.shape[0], kw["prefill_batch"]))
        return real(model, ids, new, kivi, **kw)

    monkeypatch.setattr(engine, "lean_generate", lean_generate)
    args = ["profile", *TINY, "--batch", "3", "--ctx", "60", "--gen", "4", "--json"]
    r = invoke(runner, [*args, "--prefill-batch", "2"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)
    assert doc["prefill_batch"] == 2 and all(s["status"] == "ok" for s in doc["sides"])
    assert {(fp, b, rows) for fp, b, rows in seen} == {(True, 3, 2), (False, 3, 2)}  # both sides, every run
    r = invoke(runner, args)
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["prefill_batch"] is None and seen[-1][2] is None  # automatic
    r = invoke(runner, ["profile", *TINY, "--batch", "3", "--ctx", "60", "--gen", "4", "--prefill-batch", "auto"])
    assert r.exit_code == 0 and f"rows x prompt <= {engine.PREFILL_TOKEN_BUDGET} tokens" in " ".join(r.stdout.split())


@pytest.mark.parametrize("args, needle", [
    (["--prefill-batch", "-1"], "--prefill-batch '-1' is not a number of rows >= 0 or auto"),
    (["--prefill-batch", "two"], "--prefill-batch 'two' is not a number of rows >= 0 or auto"),
    (["--prefill-batch", "2", "--loop", "generate"], "--prefill-batch 2 needs --loop lean"),
])
def test_profile_bad_prefill_batch_is_one_line(runner, args, needle):
    r = invoke(runner, ["profile", *TINY, "--ctx", "40", "--gen", "4", *args])
    assert r.exit_code == 2 and needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1 and "Traceback" not in r.stderr


def test_profile_help_names_the_prefill_token_budget():
    from kivi_cli.docs import cli_reference_markdown
    from kivi_core.engine import PREFILL_TOKEN_BUDGET

    assert f"rows x prompt <= {PREFILL_TOKEN_BUDGET} tokens" in " ".join(cli_reference_markdown().replace("│", " ").split())
