"""The CLI's small pieces: prompt parsing, flag mapping, model splitting, presets, sampling."""

from __future__ import annotations

import pytest
import torch

from kivi_cli.cmd_generate import split_model
from kivi_cli.decode import Sampler
from kivi_cli.errors import EXIT_RUNTIME, EXIT_USAGE, UsageError, describe
from kivi_cli.models import PRESETS, load
from kivi_cli.options import Arch, Backend, ModelChoice, kivi_settings, parse_bits_list
from kivi_cli.prompts import Prompt, PromptError, parse_lines
from kivi_core import KiviConfig, analytic_cache_bytes


def test_parse_lines_plain_jsonl_and_errors():
    items = parse_lines(["plain\n", "\n", '{"prompt": "json"}\n', '{"text": "x"}\n', "{oops\n", "  \n", "last"])
    assert items == [
        Prompt(0, "plain", 1), Prompt(1, "json", 3),
        PromptError(2, 4, 'JSON line has no non-empty string field "prompt"'),
        PromptError(3, 5, "invalid JSON (Expecting property name enclosed in double quotes at column 2)"),
        Prompt(4, "last", 7),
    ]


def test_kivi_settings_maps_flags():
    assert kivi_settings(16, None, None, 32, 128) is None
    assert kivi_settings(4, None, None, 64, 128) == KiviConfig(4, 4, 64, 128)
    assert kivi_settings(2, 4, None, 32, 0, Backend.torch) == KiviConfig(4, 2, 32, 0, "torch")
    assert kivi_settings(16, None, 4, 32, 128) == KiviConfig(2, 4, 32, 128)  # a per-side flag turns KIVI on
    with pytest.raises(UsageError, match="--group-size=48"):
        kivi_settings(2, None, None, 48, 128)


def test_parse_bits_list():
    assert parse_bits_list("2,4") == [2, 4]
    assert parse_bits_list("16, 2 ,2") == [2]
    with pytest.raises(UsageError, match="'3' is not one of"):
        parse_bits_list("2,3")


@pytest.mark.parametrize("args, model, expected", [
    (["hello world"], None, (None, ["hello world"])),
    (["org/model", "hi"], None, ("org/model", ["hi"])),
    (["org/model", "hi"], "x/y", ("x/y", ["org/model", "hi"])),
    (["The capital of France is"], None, (None, ["The capital of France is"])),
])
def test_split_model(args, model, expected):
    assert split_model(args, model, None) == expected


def test_split_model_local_folder(tmp_path):
    assert split_model([str(tmp_path), "hi"], None, None) == (str(tmp_path), ["hi"])
    assert split_model([str(tmp_path), "hi"], None, Arch.tiny) == (None, [str(tmp_path), "hi"])


def test_describe_maps_exit_codes():
    assert describe(UsageError("bad"))[1] == EXIT_USAGE
    msg, code = describe(torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB. GPU 0 has..."))
    assert code == EXIT_RUNTIME and msg.startswith("out of memory") and "--find-max-batch" in msg
    msg, code = describe(RuntimeError("boom\nsecond line"))
    assert code == EXIT_RUNTIME and "\n" not in msg and "KIVI_DEBUG=1" in msg


# Published parameter counts (billions) and the fp16 cache size at batch 64, ctx 4096.
@pytest.mark.parametrize("name, params_b", [
    ("llama-2-7b", 6.74), ("llama-2-13b", 13.02), ("llama-2-70b", 68.98), ("llama-3.1-8b", 8.03), ("mistral-7b", 7.24),
])
def test_presets_build_on_meta_with_published_sizes(name, params_b):
    loaded = load(ModelChoice(None, name, "meta", "float16"))
    n = sum(p.numel() for p in loaded.model.parameters())
    assert abs(n / 1e9 - params_b) < 0.01, n
    assert loaded.model.dtype == torch.float16 and loaded.model.device.type == "meta"


def test_llama_2_7b_fp16_cache_at_batch_64_ctx_4096_is_137_gb():
    p = PRESETS["llama-2-7b"]
    head_dim = p.hidden_size // p.num_attention_heads
    fp16 = analytic_cache_bytes(None, 64, p.num_key_value_heads, head_dim, p.num_hidden_layers, 4096, torch.float16)
    assert round(fp16 / 1e9, 1) == 137.4
    kivi2 = analytic_cache_bytes(KiviConfig(), 64, p.num_key_value_heads, head_dim, p.num_hidden_layers, 4096)
    assert fp16 / kivi2 > 4.5


def test_sampler_greedy_and_top_p():
    logits = torch.tensor([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]])
    assert Sampler()(logits).tolist() == [1, 0]
    # top_p tiny: only the most likely token can be drawn
    draws = {tuple(Sampler(temperature=1.0, top_p=1e-6, seed=s)(logits).tolist()) for s in range(5)}
    assert draws == {(1, 0)}
