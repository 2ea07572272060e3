"""The lean decode loop (kivi_core.engine) vs plain `model.generate(past_key_values=KiviCache(...))`.

On CPU the loop runs eagerly (no CUDA graphs) through the static caches (kivi_core.static); the GPU test
runs the captured graphs. Greedy tokens must be equal (random-weight models: ties are not an issue
at fp32 on CPU; on GPU the models are fp16 and the test allows no mismatch either, see below).
"""

from __future__ import annotations

import functools

import pytest
import torch
import transformers as tf

import kivi_kernels.decode_attention as da
import kivi_kernels.decode_attention_gqa as dg
import kivi_kernels.decode_attention_v3 as da3
from kivi_core import KiviCache, KiviConfig
from kivi_core.compat import cache_kwarg
from kivi_core import engine
from kivi_core.engine import lean_generate, prefill_rows
from kivi_core.quant import codes_per_word
from kivi_core.static import VALUE_ROW_ALIGN, DecodeSchedule, StaticFp16Layer, StaticKiviCache, packed_rows

from models import build


def reference(model, ids, new, cfg, mask=None):
    """Plain greedy generate; no EOS (the lean loop decodes exactly `new` tokens and suppresses nothing)."""
    mask = torch.ones_like(ids) if mask is None else mask
    model.generation_config.eos_token_id = None
    kw = {} if cfg is None else {"past_key_values": KiviCache(cfg)}
    out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=new, do_sample=False,
                         eos_token_id=None, **kw)
    return out[:, ids.shape[1]:]


def mha_llama(dtype=torch.float32, layers=2):
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=97, hidden_size=128, intermediate_size=96, num_hidden_layers=layers,
                         num_attention_heads=2, num_key_value_heads=2, head_dim=64, max_position_embeddings=1024)
    return tf.LlamaForCausalLM(cfg).to(dtype).eval()


@pytest.mark.parametrize("family,T,k_bits", [("llama", 40, 2), ("llama", 77, 4), ("qwen3", 50, 2)])
def test_lean_eager_equals_generate(family, T, k_bits):
    model = build(family)
    cfg = KiviConfig(k_bits=k_bits, v_bits=2, group_size=16, residual_length=32)
    ids = torch.randint(0, 97, (2, T), generator=torch.Generator().manual_seed(T))
    new = 130  # > 4 R: several key flushes, the window full and sliding
    res = lean_generate(model, ids, new, cfg)
    assert res.graphs == "eager"
    assert torch.equal(res.tokens, reference(model, ids, new, cfg))
    assert res.cache.schedule.length == T + new - 1 == res.cache.schedule.max_len
    # the layers flush one after another through one shared quantizer-output buffer
    assert len({id(layer._kq) for layer in res.cache.layers}) == 1 < len(res.cache.layers)


def test_lean_short_prompt_fills_the_window_first():
    model = mha_llama()
    cfg = KiviConfig(k_bits=2, v_bits=2, group_size=32, residual_length=64)
    ids = torch.randint(0, 97, (1, 5), generator=torch.Generator().manual_seed(1))
    res = lean_generate(model, ids, 140, cfg)
    assert torch.equal(res.tokens, reference(model, ids, 140, cfg))


@pytest.mark.parametrize("pad", [7, 32])  # two padding phases; one phase (pad = R) that still pads
def test_lean_padded_prompts_fall_back_to_generate(pad):
    model = build("llama")
    cfg = KiviConfig(k_bits=2, v_bits=2, group_size=16, residual_length=32)
    ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(2))
    mask = torch.ones_like(ids)
    mask[1, :pad] = 0
    res = lean_generate(model, ids, 20, cfg, attention_mask=mask, prefill_batch=1)  # generate takes all rows
    assert res.graphs.startswith("generate")
    assert torch.equal(res.tokens, reference(model, ids, 20, cfg, mask))


def test_lean_fp16_side_equals_dynamic_generate():
    model = build("llama")
    ids = torch.randint(0, 97, (2, 33), generator=torch.Generator().manual_seed(3))
    res = lean_generate(model, ids, 40, None)
    assert torch.equal(res.tokens, reference(model, ids, 40, None))


def test_lean_fp16_chunked_prefill():
    model = build("qwen3")
    ids = torch.randint(0, 97, (2, 50), generator=torch.Generator().manual_seed(5))
    res = lean_generate(model, ids, 20, None, prefill_chunk=16)
    assert torch.equal(res.tokens, reference(model, ids, 20, None))


def stores(cache) -> dict[str, torch.Tensor]:
    """What a static cache holds after `schedule.length` positions, by layer and store (capacity beyond
    the used rows is uninitialized and left out; the key tail and the value ring are zero-initialized)."""
    out, L = {}, cache.schedule.length
    for i, layer in enumerate(cache.layers):
        if isinstance(layer, StaticFp16Layer):
            out.update({f"{i}.keys": layer.keys[:, :, :L], f"{i}.values": layer.values[:, :, :L]})
            continue
        n_kq, n_vq = cache.schedule.n_kq, cache.schedule.n_vq
        G, ck = layer.config.group_size, codes_per_word(layer.config.k_bits)
        for name, n in (("k_codes", n_kq // ck), ("k_scale", n_kq // G), ("k_min", n_kq // G),
                        ("v_codes", n_vq), ("v_scale", n_vq), ("v_min", n_vq), ("k_tail", None), ("v_win", None)):
            out[f"{i}.{name}"] = getattr(layer, name)[:, :, :n]
    return out


def assert_same_stores(a, b):
    assert a.schedule.length == b.schedule.length and torch.equal(a.lens, b.lens)
    sa, sb = stores(a), stores(b)
    assert sa.keys() == sb.keys()
    for name in sa:
        assert sa[name].shape == sb[name].shape, (name, sa[name].shape, sb[name].shape)
        diff = (sa[name] != sb[name]).nonzero()
        assert diff.numel() == 0, f"{name}: {diff.shape[0]} elements differ, first at {diff[0].tolist()}"


KIVI_TORCH = KiviConfig(k_bits=2, v_bits=2, group_size=16, residual_length=32, backend="torch")


# T=77 with R=32: 64 keys quantized and 13 in the tail, 45 values quantized; B=5 in slices of 2 leaves a
# slice of one row; prefill_chunk=20 cuts the prompt inside key groups and flush blocks. Slicing changes
# only how many rows each matmul gets. This CPU's BLAS gives a row the same bits whether it comes with
# others or alone, except for very few tokens a row (chunk 24 leaves a 5-token last chunk: its o_proj
# rounds 1 ulp differently for one row than for five, measured) - so no chunk here is that small.
@pytest.mark.parametrize("kivi", [KIVI_TORCH, None], ids=["kivi", "fp16"])
@pytest.mark.parametrize("chunk", [0, 20])
def test_lean_sliced_prefill_equals_all_rows_at_once(kivi, chunk):
    model = build("llama")
    ids = torch.randint(0, 97, (5, 77), generator=torch.Generator().manual_seed(6))
    new = 40  # past a key flush (at position 96) with the window sliding
    whole = lean_generate(model, ids, new, kivi, prefill_chunk=chunk, prefill_batch=0)
    sliced = lean_generate(model, ids, new, kivi, prefill_chunk=chunk, prefill_batch=2)
    assert torch.equal(sliced.tokens, whole.tokens), (sliced.tokens != whole.tokens).nonzero()[:5]
    assert_same_stores(sliced.cache, whole.cache)
    if chunk == 0:  # a chunked KIVI prefill attends to quantized earlier chunks: generate does not
        assert torch.equal(sliced.tokens, reference(model, ids, new, kivi))


@pytest.mark.parametrize("kivi", [KIVI_TORCH, None], ids=["kivi", "fp16"])
def test_sliced_prefill_stores_equal_all_rows_at_once(kivi):
    # new_tokens=1: the cache as the prefill left it (no decode step has touched it)
    model = build("llama")
    ids = torch.randint(0, 97, (5, 50), generator=torch.Generator().manual_seed(8))
    whole = lean_generate(model, ids, 1, kivi, prefill_batch=0)
    for rows in (1, 3):
        sliced = lean_generate(model, ids, 1, kivi, prefill_batch=rows)
        assert torch.equal(sliced.tokens, whole.tokens)
        assert_same_stores(sliced.cache, whole.cache)


def test_lean_automatic_prefill_batch_slices_long_prompts(monkeypatch):
    assert prefill_rows(192, 4094) == 1  # the H200 case: one row at a time
    assert prefill_rows(4, 100) == 4 and prefill_rows(3, 10 * engine.PREFILL_TOKEN_BUDGET) == 1
    assert prefill_rows(7, 100, 0) == 7 and prefill_rows(7, 100, 3) == 3 and prefill_rows(7, 100, 9) == 7
    model = build("llama")
    ids = torch.randint(0, 97, (3, 40), generator=torch.Generator().manual_seed(9))
    whole = lean_generate(model, ids, 10, KIVI_TORCH, prefill_batch=0)
    monkeypatch.setattr(engine, "PREFILL_TOKEN_BUDGET", 80)  # 2 rows of 40 tokens at a time
    assert prefill_rows(3, 40) == 2
    auto = lean_generate(model, ids, 10, KIVI_TORCH)
    assert torch.equal(auto.tokens, whole.tokens)
    assert_same_stores(auto.cache, whole.cache)


@pytest.mark.parametrize("bad", [-1, 1.5, True, "2"])
def test_lean_refuses_bad_prefill_batch(bad):
    model = build("llama")
    ids = torch.randint(0, 97, (2, 8))
    with pytest.raises(ValueError, match=r"prefill_batch=.* must be an int >= 0"):
        lean_generate(model, ids, 2, None, prefill_batch=bad)


# R=32: max_len = T + new - 1 below R (nothing packed), at R (the last step flushes, no value packed yet),
# R + 1, one short of 2R, at 2R (the last step's flush fills every key row), 2R + 1.
@pytest.mark.parametrize("T,new", [(5, 20), (20, 13), (20, 14), (40, 24), (40, 25), (40, 26)])
def test_static_stores_hold_exactly_the_rows_decoding_writes(T, new):
    model = build("llama")
    ids = torch.randint(0, 97, (3, T), generator=torch.Generator().manual_seed(T + new))
    res = lean_generate(model, ids, new, KIVI_TORCH, prefill_batch=2)  # two slices: stores sized by the bound
    assert torch.equal(res.tokens, reference(model, ids, new, KIVI_TORCH))
    max_len, R, G = T + new - 1, 32, 16
    k_rows, v_rows = packed_rows(max_len, R)
    assert (k_rows, v_rows) == (max_len // R * R, max(0, max_len - R))
    sch = res.cache.schedule
    assert sch.length == sch.max_len == max_len
    assert (sch.n_kq, sch.n_vq) == (k_rows, v_rows)  # the bound is reached: the last rows were written
    ck = codes_per_word(KIVI_TORCH.k_bits)
    for layer in res.cache.layers:
        got = {name: getattr(layer, name).shape[2] for name in
               ("k_codes", "k_scale", "k_min", "v_codes", "v_scale", "v_min")}
        v_alloc = -(-v_rows // VALUE_ROW_ALIGN) * VALUE_ROW_ALIGN  # whole blocks: 16-divisible head strides
        assert got == {"k_codes": k_rows // ck, "k_scale": k_rows // G, "k_min": k_rows // G,
                       "v_codes": v_alloc, "v_scale": v_alloc, "v_min": v_alloc}, (max_len, got)
        assert all(getattr(layer, name).stride(1) % 16 == 0 for name in ("v_codes", "v_scale", "v_min")
                   if v_rows), (max_len, got)


def test_static_cache_keeps_a_prefill_buffer_that_is_big_enough():
    model = build("llama")
    ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(4))
    cache = KiviCache(KIVI_TORCH, capacity=70)  # rounded up to 128 rows: more than the bound (64 / 38)
    model(input_ids=ids, use_cache=True, **{cache_kwarg(model): cache})
    before = [layer.parts[0].layer.v_codes for layer in cache.layers]
    static = StaticKiviCache.from_cache(cache, 70)
    assert all(layer.v_codes is v for layer, v in zip(static.layers, before))
    mem = static.memory()
    assert mem.total == sum(t.numel() * t.element_size() for layer in static.layers for t in
                            (layer.k_codes, layer.k_scale, layer.k_min, layer.v_codes, layer.v_scale, layer.v_min,
                             layer.k_tail, layer.v_win))


def test_static_cache_refuses_what_it_cannot_continue():
    model = build("llama")
    ids = torch.randint(0, 97, (1, 20))
    for cfg, why in [(KiviConfig(group_size=16, residual_length=0), "residual_length=0"),
                     (KiviConfig(group_size=16, residual_length=32, sink_tokens=2), "sink_tokens")]:
        cache = KiviCache(cfg)
        model(input_ids=ids, use_cache=True, **{cache_kwarg(model): cache})
        with pytest.raises(ValueError, match=why):
            StaticKiviCache.from_cache(cache, 64)


def test_schedule_refuses_to_run_past_max_len():
    s = DecodeSchedule(10, 0, 0, 32, 11)
    s.advance()  # position 10: the last that fits
    with pytest.raises(ValueError, match="max_len=11"):
        s.kind()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
@pytest.mark.parametrize("gqa", [False, True])
@pytest.mark.parametrize("short", [True, False])
def test_gpu_graphs_equal_generate(gqa, short, monkeypatch):
    # short: "auto" as is (these calls are short: v1, one tile a program); else v3 (the short rule off)
    if not short:
        monkeypatch.setattr(da, "SHORT_TILES", 0)
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=512, hidden_size=256, intermediate_size=512, num_hidden_layers=4,
                         num_attention_heads=4, num_key_value_heads=1 if gqa else 4, head_dim=64,
                         max_position_embeddings=4096)
    # fp32: the static launch splits the sequence by capacity, generate by the current length, so the
    # sums run in another order; in fp16 a random model's near-ties then flip (seen once in 800 GQA
    # tokens on the H200), in fp32 the difference is ~1e-7 and the tokens are equal.
    model = tf.LlamaForCausalLM(cfg).to("cuda", torch.float32).eval()
    kcfg = KiviConfig(k_bits=2, v_bits=2, group_size=32, residual_length=64)
    ids = torch.randint(0, 512, (4, 300), device="cuda")
    res = lean_generate(model, ids, 200, kcfg)
    assert res.graphs == "cuda graphs"
    assert any("replay" in k for k in res.step_kinds), res.step_kinds
    assert any(k.startswith("flush=True") and "replay" in k for k in res.step_kinds), res.step_kinds
    ref = reference(model, ids, 200, kcfg)
    assert torch.equal(res.tokens, ref), (res.tokens != ref).nonzero()[:5]


def tiny_static_run_matches(heads: int, kv_heads: int, head_dim: int = 64, group_size: int = 16) -> None:
    # a 1-layer model through the lean loop with backend="triton": the static attention kernels read lengths
    # from the device and the value window as a ring (on CPU under the Triton interpreter); 36 steps cross one
    # key flush (at position 63) with the window sliding. Greedy tokens equal generate's on the torch path.
    torch.manual_seed(0)
    cfg = tf.LlamaConfig(vocab_size=97, hidden_size=64 * heads, intermediate_size=96, num_hidden_layers=1,
                         num_attention_heads=heads, num_key_value_heads=kv_heads, head_dim=head_dim,
                         max_position_embeddings=1024)
    model = tf.LlamaForCausalLM(cfg).eval()
    kcfg = KiviConfig(k_bits=2, v_bits=2, group_size=group_size, residual_length=32, backend="triton")
    ids = torch.randint(0, 97, (2, 33), generator=torch.Generator().manual_seed(4))
    res = lean_generate(model, ids, 36, kcfg)
    assert torch.equal(res.tokens, reference(model, ids, 36, kcfg))


def spy(monkeypatch, module, name) -> list:
    """Record the keyword arguments of each call to module.name (which still runs)."""
    calls, real = [], getattr(module, name)
    monkeypatch.setattr(module, name, lambda *a, **k: calls.append(k) or real(*a, **k))
    return calls


@pytest.mark.parametrize("gqa", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_lean_eager_triton_kernels_with_device_lengths(gqa, monkeypatch):
    # v3 (MHA and GQA; the short-call rule, which would pick v1 here, is off)
    monkeypatch.setattr(da, "SHORT_TILES", 0)
    calls = spy(monkeypatch, da3, "decode_attention_v3")
    tiny_static_run_matches(2, 1 if gqa else 2)
    assert any("lens" in k for k in calls)  # the static (device-length) launches took it


@pytest.mark.slow
def test_lean_eager_triton_mma_bulk_with_device_lengths(monkeypatch):
    # v3's tensor-core bulk on the static path (device lengths, the window as a ring): head_dim 128, G = 32,
    # picked from one program up (under the interpreter its twin computes each warp's MMAs from the same
    # lane fragments; the dtype check is lifted for this fp32 model, as for the GQA kernel below)
    monkeypatch.setattr(da, "SHORT_TILES", 0)
    monkeypatch.setattr(da3, "MMA_MIN_PROGRAMS", 1)
    monkeypatch.setattr(da3, "mma_unsupported", lambda q, s: None)
    picks = []
    real = da3.default_mma
    monkeypatch.setattr(da3, "default_mma", lambda q, s: picks.append(real(q, s)) or picks[-1])
    tiny_static_run_matches(2, 2, head_dim=128, group_size=32)
    assert picks and all(picks)


def test_lean_eager_triton_packed_kernel_with_device_lengths(monkeypatch):
    # v3 packed=True (the default at k2v2 fp16; under the interpreter its fp32 twin runs the same tiles and
    # thread mapping)
    monkeypatch.setattr(da, "SHORT_TILES", 0)
    monkeypatch.setattr(da3, "decode_attention_v3", functools.partial(da3.decode_attention_v3, packed=True))
    tiny_static_run_matches(2, 2)


def test_lean_eager_triton_gqa_kernel_with_device_lengths(monkeypatch):
    # the GQA kernel's pair path ("auto" at 4 query heads a kv head, k2v2 fp16, larger calls; under the
    # interpreter its fp32 twins run the same tiles, so the dtype check is lifted for this fp32 model)
    monkeypatch.setattr(dg, "packable_gqa", lambda q, s: q.shape[1] == 4 * s.k_tail.shape[1])
    monkeypatch.setattr(dg, "MIN_TILES_GQA", 1)
    monkeypatch.setattr(da, "SHORT_TILES", 0)
    calls = spy(monkeypatch, dg, "decode_attention_gqa")
    tiny_static_run_matches(4, 1)
    assert any("lens" in k for k in calls)  # the static (device-length) launches took it


def test_lean_eager_triton_short_calls_with_device_lengths(monkeypatch):
    # "auto" on these short calls: v1 with one tile a program
    calls = spy(monkeypatch, da, "_decode_attention_v1")
    tiny_static_run_matches(2, 2)
    assert any("lens" in k for k in calls)  # the static (device-length) launches took it


def first_eos_lengths(tokens: torch.Tensor, eos: set[int]) -> list[int]:
    n = tokens.shape[1]
    return [next((j + 1 for j, t in enumerate(row) if t in eos), n) for row in tokens.tolist()]


@pytest.mark.parametrize("kivi", [KIVI_TORCH, None], ids=["kivi", "fp16"])
def test_lean_eos_ids_stop_once_every_row_has_one(kivi):
    model = build("llama")
    ids = torch.randint(0, 97, (3, 30), generator=torch.Generator().manual_seed(11))
    full = lean_generate(model, ids, 40, kivi)  # past a key flush (position 32)
    assert full.lengths == [40, 40, 40]
    # eos: a token of each row, met at different steps (a row may meet another row's first)
    eos = {int(full.tokens[0, 3]), int(full.tokens[1, 5]), int(full.tokens[2, 9])}
    want = first_eos_lengths(full.tokens, eos)
    assert len(set(want)) > 1 and max(want) < 40, want
    seen = []
    res = lean_generate(model, ids, 40, kivi, eos_ids=sorted(eos), on_step=seen.append)
    assert seen == list(range(1, max(want)))  # on_step: once a decode step, after it, none past the stop
    assert res.lengths == want
    assert res.tokens.shape[1] == max(want)  # the loop stopped once every row had its eos
    assert torch.equal(res.tokens, full.tokens[:, : max(want)])  # same tokens, continuation included
    # every row done after the first token: no decode step at all
    res = lean_generate(model, ids, 40, kivi, eos_ids=full.tokens[:, 0].tolist())
    assert res.tokens.shape[1] == 1 and res.lengths == [1, 1, 1]


def test_lean_eos_ids_in_the_generate_fallback():
    model = build("llama")
    ids = torch.randint(0, 97, (2, 40), generator=torch.Generator().manual_seed(12))
    mask = torch.ones_like(ids)
    mask[1, :7] = 0
    ref = reference(model, ids, 20, KIVI_TORCH, mask)
    eos = {int(ref[0, 2]), int(ref[1, 5])}
    res = lean_generate(model, ids, 20, KIVI_TORCH, attention_mask=mask, eos_ids=sorted(eos))
    assert res.graphs.startswith("generate")
    want = first_eos_lengths(ref, eos)
    assert res.lengths == want
    for row, n in enumerate(want):  # past its eos a row holds generate's padding
        assert torch.equal(res.tokens[row, :n], ref[row, :n])


def test_lean_refuses_or_falls_back_where_static_attention_would_differ():
    from kivi_core.engine import lean_unsupported

    ids = torch.randint(0, 97, (2, 20), generator=torch.Generator().manual_seed(13))
    # Mistral (all layers slide, window 48): a row of 48 positions is never cut, so the static cache
    # (which attends to every position) is exact; beyond that, KIVI falls back, fp16 refuses.
    mistral = build("mistral")
    assert lean_unsupported(mistral, KIVI_TORCH, 48) is None
    res = lean_generate(mistral, ids, 29, KIVI_TORCH)  # 20 + 29 - 1 = 48 positions
    assert res.graphs == "eager" and torch.equal(res.tokens, reference(mistral, ids, 29, KIVI_TORCH))
    assert "window 48" in lean_unsupported(mistral, KIVI_TORCH, 49)
    res = lean_generate(mistral, ids, 60, KIVI_TORCH)
    assert res.graphs.startswith("generate") and torch.equal(res.tokens, reference(mistral, ids, 60, KIVI_TORCH))
    with pytest.raises(ValueError, match="sliding-window attention"):
        lean_generate(mistral, ids, 60, None)
    # Falcon runs its own attention on what the cache returns: the static layers never see the query
    falcon = build("falcon")
    assert "AttentionInterface" in lean_unsupported(falcon, None, 10)
    with pytest.raises(ValueError, match="AttentionInterface"):
        lean_generate(falcon, ids, 4, None)
    # Gemma-3's hybrid sliding layers are no KIVI layers; its fp16 side is exact while no window binds
    gemma = build("gemma3")
    assert "hybrid" in lean_unsupported(gemma, KIVI_TORCH, 10)
    assert lean_unsupported(gemma, None, 24) is None and "window 24" in lean_unsupported(gemma, None, 25)
    assert lean_unsupported(build("llama"), KiviConfig(group_size=16, residual_length=32, rotate_keys=True)) == "rotate_keys"
