"""`kivi eval` end to end on `--arch tiny` (random weights, CPU, a few seconds)."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

from kivi_cli.main import app

TINY = ["--arch", "tiny", "--device", "cpu"]
SMALL = ["--windows", "2", "--window", "96", "--prefill", "40", "-G", "32", "-R", "32",
         "--needle-lengths", "300", "--needle-depths", "0,1", "--needle-trials", "1"]


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # tiny matmuls: OpenMP spin-waits dominate with 2 threads on a shared box
    yield
    torch.set_num_threads(before)


@pytest.fixture
def text_file(tmp_path):
    p = tmp_path / "text.txt"
    p.write_text("The quick brown fox jumps over the lazy dog. " * 20)  # 900 bytes = tokens for the byte tokenizer
    return p


def invoke(args):
    return CliRunner().invoke(app, args, env={"KIVI_DEBUG": None, "COLUMNS": "160"})


def test_eval_json_is_one_document(text_file):
    r = invoke(["eval", *TINY, *SMALL, "--text-file", str(text_file), "--ablations", "per-token-keys,no-window",
                "--json"])
    assert r.exit_code == 0, r.output
    doc = json.loads(r.stdout)  # exactly one JSON document on stdout
    names = [s["name"] for s in doc["settings"]]
    assert names == ["full precision", "k2v2 G=32 R=32", "k4v4 G=32 R=32", "k2v2 G=32 R=32 keys per-token",
                     "k2v2 G=32 R=0"]
    ppl = doc["ppl"]
    assert ppl["tokens_scored"] == 2 * (96 - 40 - 1)
    assert [r["setting"]["name"] for r in ppl["results"]] == names
    assert ppl["results"][0]["delta_pct"] == 0.0
    assert all(r["ppl"] > 1 for r in ppl["results"])
    needle = doc["needle"]
    assert set(needle["results"][1]["accuracy"]) == {"300@0", "300@1"}


def test_eval_table(text_file):
    r = invoke(["eval", *TINY, *SMALL, "--text-file", str(text_file), "--bits", "2", "--tasks", "ppl"])
    assert r.exit_code == 0, r.output
    assert "Decode-mode perplexity" in r.stdout and "k2v2 G=32 R=32" in r.stdout
    assert "Needle" not in r.stdout


@pytest.mark.parametrize(
    "args, needle",
    [
        (["--tasks", "ppl,mmlu"], "mmlu"),
        (["--ablations", "rotate"], "rotate"),
        (["--prefill", "95"], "--prefill"),
        (["--needle-depths", "0,2"], "[0, 1]"),
        (["-G", "24"], "--group-size"),
    ],
)
def test_eval_bad_flags_exit_2(text_file, args, needle):
    r = invoke(["eval", *TINY, *SMALL, "--text-file", str(text_file), *args])
    assert r.exit_code == 2, r.output
    assert needle in r.output
