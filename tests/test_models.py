"""KiviCache inside unmodified transformers models: every family, GQA, padding, beams, sampling, dtypes."""

import warnings

import pytest
import torch
from transformers import DynamicCache
from transformers.cache_utils import DynamicSlidingWindowLayer

from kivi_core import KiviCache, KiviConfig, cache_kwarg, output_cache, prepare
from models import FAMILIES, build

FULL = KiviConfig(group_size=16, residual_length=1024)  # R beyond the sequence: nothing is quantized
K4 = KiviConfig(k_bits=4, v_bits=4, group_size=16, residual_length=32)
K2 = KiviConfig(k_bits=2, v_bits=2, group_size=16, residual_length=32)


def _generate(model, ids, cache, **kw):
    kw.setdefault("max_new_tokens", 24)
    kw.setdefault("do_sample", False)
    return model.generate(ids, **{cache_kwarg(model): cache}, **kw)


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_plumbing_is_exact_without_quantization(family):
    model = build(family)
    ids = torch.randint(0, 97, (2, 50))
    ref = _generate(model, ids, DynamicCache(config=model.config))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cache = KiviCache(FULL)
        out = _generate(model, ids, cache)
    assert torch.equal(out, ref)
    fused = [layer.fused for layer in cache.kivi_layers()]
    notices = [w for w in caught if "fused KIVI path is not in use" in str(w.message)]
    if family == "falcon":  # calls its own SDPA on what cache.update returns
        assert fused == [False] * len(fused) and len(notices) == 1
    else:
        assert all(fused) and not notices


@pytest.mark.parametrize("family", list(FAMILIES))
def test_family_quantized_generation_stays_close(family):
    model = build(family)
    ids = torch.randint(0, 97, (1, 70))
    kw = cache_kwarg(model)
    ref = model(ids, **{kw: DynamicCache(config=model.config)}, use_cache=True)
    cache = KiviCache(K4)
    out = model(ids, **{kw: cache}, use_cache=True)
    # Prefill attention uses full precision (as in the paper): logits identical.
    torch.testing.assert_close(out.logits, ref.logits)
    ref_cache, nxt = output_cache(ref), ids[:, -1:]
    errs = []
    for _ in range(40):  # decode over the quantized cache, across two key flushes
        a = model(nxt, **{kw: ref_cache}, use_cache=True).logits
        b = model(nxt, **{kw: cache}, use_cache=True).logits
        assert torch.isfinite(b).all()
        errs.append(((a - b).norm() / a.norm()).item())
        nxt = a.argmax(-1)
    assert cache.get_seq_length() == 110
    assert max(errs) < 0.1, f"relative logit error at 4 bits up to {max(errs):.3f}"


def _left_pad(seqs, pad=0):
    L = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), L), pad)
    mask = torch.zeros(len(seqs), L, dtype=torch.long)
    for i, s in enumerate(seqs):
        ids[i, L - len(s):] = s
        mask[i, L - len(s):] = 1
    return ids, mask


R0 = KiviConfig(k_bits=2, v_bits=2, group_size=16, residual_length=0)


@pytest.mark.parametrize("cfg", [FULL, K4, K2, R0], ids=lambda c: c.label())
@pytest.mark.parametrize("use_prepare", [False, True])
def test_left_padded_batch_matches_each_sequence_alone(cfg, use_prepare):
    """Rows are stored by padding phase, so a padded row's quantized cache is the one it has alone: the
    logits agree to float rounding, not just to quantization noise."""
    if cfg is R0 and not use_prepare:
        pytest.skip("R=0 quantizes the prompt before its first attention: the padding must come from prepare()")
    model = build("llama")
    if use_prepare:
        prepare(model)
    kw = cache_kwarg(model)
    seqs = [torch.randint(1, 97, (n,)) for n in (70, 41, 55)]  # pads 0, 29, 15: three phases
    ids, mask = _left_pad(seqs)
    batch = model.generate(ids, attention_mask=mask, max_new_tokens=40, do_sample=False, output_logits=True,
                           return_dict_in_generate=True, **{kw: KiviCache(cfg)})
    for i, s in enumerate(seqs):
        alone = model.generate(s[None], max_new_tokens=40, do_sample=False, output_logits=True,
                               return_dict_in_generate=True, **{kw: KiviCache(cfg)})
        for step, (lb, la) in enumerate(zip(batch.logits, alone.logits)):
            err = (lb[i] - la[0]).abs().max().item()
            assert err < 1e-5, f"row {i} step {step}: logits differ by {err:.2e}"


def test_padding_never_shares_a_key_group_with_real_tokens():
    """Garbage padding states must not change the quantized cache of a padded row."""
    model = prepare(build("llama"))
    kw = cache_kwarg(model)
    s = torch.randint(1, 97, (37,))
    keys = []
    for pad_token in (0, 5):
        ids, mask = _left_pad([torch.randint(1, 97, (64,)), s], pad=pad_token)
        cache = KiviCache(K2)
        model(ids, attention_mask=mask, **{kw: cache}, use_cache=True)
        layer = cache.kivi_layers()[0]
        k, _ = layer.materialize()
        keys.append(k[1, :, 27:])  # the real tokens of row 1
    assert torch.equal(keys[0], keys[1])


def test_beam_search_matches_dynamic_cache():
    model = build("llama")
    ids = torch.randint(0, 97, (2, 40))
    ref = _generate(model, ids, DynamicCache(), num_beams=3, max_new_tokens=12)
    out = _generate(model, ids, KiviCache(FULL), num_beams=3, max_new_tokens=12)
    assert torch.equal(out, ref)
    q = _generate(model, ids, KiviCache(K2), num_beams=3, max_new_tokens=40, num_return_sequences=2)
    assert q.shape == (4, 80)


def test_sampling_matches_dynamic_cache():
    model = build("qwen2")
    ids = torch.randint(0, 97, (2, 30))
    torch.manual_seed(1)
    ref = _generate(model, ids, DynamicCache(), do_sample=True, top_p=0.9, temperature=0.8)
    torch.manual_seed(1)
    out = _generate(model, ids, KiviCache(FULL), do_sample=True, top_p=0.9, temperature=0.8)
    assert torch.equal(out, ref)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_models(dtype):
    model = build("llama", dtype=dtype)
    ids = torch.randint(0, 97, (2, 50))
    ref = _generate(model, ids, DynamicCache())
    assert torch.equal(_generate(model, ids, KiviCache(FULL)), ref)
    cache = KiviCache(K2)
    out = _generate(model, ids, cache, max_new_tokens=40)
    layer = cache.kivi_layers()[0]
    assert out.shape == (2, 90) and layer.k_scale.dtype == dtype and layer.n_kq == 64


def test_prepare_keeps_hybrid_sliding_layers_as_sliding_caches():
    model = prepare(build("gemma3"))
    ids = torch.randint(0, 97, (1, 60))
    cache = KiviCache(K4)
    out = _generate(model, ids, cache)
    kinds = [type(layer) for layer in cache.layers]
    assert kinds[:2] == [DynamicSlidingWindowLayer] * 2 and len(cache.kivi_layers()) == 1
    ref = _generate(model, ids, DynamicCache(config=model.config))
    assert out.shape == ref.shape
    exact = KiviCache(FULL)
    assert torch.equal(_generate(model, ids, exact), ref)


def test_new_turn_on_existing_cache():
    """A multi-token chunk over quantized history (a chat turn) attends like dequantize-then-SDPA."""
    model = build("llama")
    kw = cache_kwarg(model)
    a, b = torch.randint(0, 97, (1, 70)), torch.randint(0, 97, (1, 23))
    ref_cache, cache = DynamicCache(), KiviCache(FULL)
    model(a, **{kw: ref_cache}, use_cache=True)
    model(a, **{kw: cache}, use_cache=True)
    torch.testing.assert_close(
        model(b, **{kw: cache}, use_cache=True).logits, model(b, **{kw: ref_cache}, use_cache=True).logits
    )
    q = KiviCache(K2)
    model(a, **{kw: q}, use_cache=True)
    out = model(b, **{kw: q}, use_cache=True)
    assert torch.isfinite(out.logits).all() and q.get_seq_length() == 93


def test_crop_is_refused_with_a_clear_error():
    model = build("llama")
    cache = KiviCache(K2)
    _generate(model, torch.randint(0, 97, (1, 20)), cache, max_new_tokens=3)
    with pytest.raises(NotImplementedError, match="cannot be cropped"):
        cache.crop(-1)


def test_config_validation_messages():
    with pytest.raises(ValueError, match="k_bits=3"):
        KiviConfig(k_bits=3)
    with pytest.raises(ValueError, match="residual_length=100 is not a multiple of group_size=32"):
        KiviConfig(residual_length=100)
    with pytest.raises(ValueError, match="group_size=24"):
        KiviConfig(group_size=24)
    with pytest.raises(ValueError, match="backend='cuda'"):
        KiviConfig(backend="cuda")


def test_triton_backend_end_to_end_in_the_interpreter():
    """backend='triton' runs the kernels inside generate() on CPU (TRITON_INTERPRET=1, set by conftest)."""
    model = build("llama")
    ids = torch.randint(0, 97, (2, 45))
    cfg = dict(k_bits=2, v_bits=4, group_size=16, residual_length=16)
    ref = _generate(model, ids, KiviCache(KiviConfig(**cfg, backend="torch")), max_new_tokens=20,
                    output_logits=True, return_dict_in_generate=True)
    cache = KiviCache(KiviConfig(**cfg, backend="triton"))
    out = _generate(model, ids, cache, max_new_tokens=20, output_logits=True, return_dict_in_generate=True)
    assert all(layer.fused for layer in cache.kivi_layers())
    for step, (a, b) in enumerate(zip(ref.logits, out.logits)):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4, msg=lambda m: f"step {step}: {m}")
    assert torch.equal(out.sequences, ref.sequences)


@pytest.mark.parametrize("backend", ["torch", "triton"])
def test_sinks_and_rotation_inside_generate(backend):
    """The opt-in options keep generate() exact where nothing is quantized and run on both backends."""
    model = prepare(build("llama"))
    kw = cache_kwarg(model)
    seqs = [torch.randint(1, 97, (n,)) for n in (60, 35)]
    ids, mask = _left_pad(seqs)
    ref = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, **{kw: DynamicCache()})
    exact = KiviConfig(group_size=16, residual_length=1024, sink_tokens=4, rotate_keys=True, backend=backend)
    out = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, **{kw: KiviCache(exact)})
    for a, b in zip(ref.logits, out.logits):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
    q = KiviConfig(k_bits=2, v_bits=2, group_size=16, residual_length=16, sink_tokens=4, rotate_keys=True,
                   backend=backend)
    cache = KiviCache(q)
    res = model.generate(ids, attention_mask=mask, max_new_tokens=12, do_sample=False, output_logits=True,
                         return_dict_in_generate=True, **{kw: cache})
    assert all(torch.isfinite(x).all() for x in res.logits)
    parts = cache.kivi_layers()[0].parts  # rows 0 and 1 have different padding phases: two parts
    # in part coordinates: row 1 keeps 25 - 9 = 16 padding positions before its first real token
    assert sorted(p.layer.sink_pos.tolist()[0] for p in parts) == [[0, 1, 2, 3], [16, 17, 18, 19]]
    assert sorted(p.shift for p in parts) == [0, 25 % 16]


def test_rotation_fused_equals_dequantize_path():
    model = build("llama")
    ids = torch.randint(0, 97, (2, 45))
    cfg = dict(k_bits=2, v_bits=2, group_size=16, residual_length=16, rotate_keys=True)
    a = _generate(model, ids, KiviCache(KiviConfig(**cfg, backend="torch")), max_new_tokens=12,
                  output_logits=True, return_dict_in_generate=True)
    b = _generate(model, ids, KiviCache(KiviConfig(**cfg, backend="triton")), max_new_tokens=12,
                  output_logits=True, return_dict_in_generate=True)
    for x, y in zip(a.logits, b.logits):
        torch.testing.assert_close(y, x, atol=1e-4, rtol=1e-4)


def test_beam_search_on_a_padded_batch_follows_rows_across_phases():
    model = prepare(build("llama"))
    kw = cache_kwarg(model)
    seqs = [torch.randint(3, 97, (n,)) for n in (50, 33)]
    ids, mask = _left_pad(seqs)
    out = model.generate(ids, attention_mask=mask, num_beams=3, max_new_tokens=30, do_sample=False,
                         **{kw: KiviCache(K2)})
    for i, s in enumerate(seqs):
        alone = model.generate(s[None], num_beams=3, max_new_tokens=30, do_sample=False, **{kw: KiviCache(K2)})
        n = alone.shape[1] - s.shape[0]
        assert torch.equal(out[i, ids.shape[1] : ids.shape[1] + n], alone[0, s.shape[0] :]), f"row {i}"


def test_padded_batch_on_the_triton_path_in_the_interpreter():
    """Several padding phases through the fused kernel (CPU interpreter) equal the torch path."""
    model = prepare(build("llama"))
    kw = cache_kwarg(model)
    ids, mask = _left_pad([torch.randint(1, 97, (n,)) for n in (50, 21, 38)])
    logits = {}
    for backend in ("torch", "triton"):
        cfg = KiviConfig(k_bits=2, v_bits=4, group_size=16, residual_length=16, backend=backend)
        logits[backend] = model.generate(ids, attention_mask=mask, max_new_tokens=10, do_sample=False,
                                         output_logits=True, return_dict_in_generate=True,
                                         **{kw: KiviCache(cfg)}).logits
    for a, b in zip(logits["torch"], logits["triton"]):
        torch.testing.assert_close(b, a, atol=1e-4, rtol=1e-4)
