"""Tiny random-weight models of each supported family, built from configs (no download)."""

import torch
import transformers as tf

COMMON = dict(vocab_size=97, hidden_size=64, intermediate_size=96, num_hidden_layers=2, max_position_embeddings=1024)


def _llama():
    return tf.LlamaForCausalLM(tf.LlamaConfig(**COMMON, num_attention_heads=4, num_key_value_heads=2, head_dim=32))


def _mistral():
    return tf.MistralForCausalLM(
        tf.MistralConfig(**COMMON, num_attention_heads=4, num_key_value_heads=1, head_dim=32, sliding_window=48)
    )


def _qwen2():
    return tf.Qwen2ForCausalLM(tf.Qwen2Config(**COMMON, num_attention_heads=2, num_key_value_heads=1))


def _qwen3():
    return tf.Qwen3ForCausalLM(tf.Qwen3Config(**COMMON, num_attention_heads=4, num_key_value_heads=2, head_dim=32))


def _gemma3():
    cfg = tf.Gemma3TextConfig(
        **{**COMMON, "num_hidden_layers": 3}, num_attention_heads=2, num_key_value_heads=1, head_dim=32,
        sliding_window=24, layer_types=["sliding_attention", "sliding_attention", "full_attention"],
    )
    return tf.Gemma3ForCausalLM(cfg)


def _falcon():
    cfg = tf.FalconConfig(
        vocab_size=97, hidden_size=64, num_hidden_layers=2, num_attention_heads=2, num_kv_heads=1,
        new_decoder_architecture=True, multi_query=False, max_position_embeddings=1024,
    )
    return tf.FalconForCausalLM(cfg)


FAMILIES = {"llama": _llama, "mistral": _mistral, "qwen2": _qwen2, "qwen3": _qwen3, "gemma3": _gemma3, "falcon": _falcon}


def build(family: str, dtype=torch.float32, seed: int = 0):
    torch.manual_seed(seed)
    model = FAMILIES[family]().to(dtype).eval()
    return model
