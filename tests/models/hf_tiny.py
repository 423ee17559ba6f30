"""Tiny random transformers checkpoints (no downloads) for parity tests."""
from __future__ import annotations

import numpy as np

VARIANTS = {
    # Qwen2: q/k/v bias, tied embeddings, GQA 3:1, rope_theta 1e6, odd vocab.
    "qwen2_tied_gqa": dict(model_type="qwen2", vocab_size=128, hidden_size=48, intermediate_size=72,
                           num_hidden_layers=2, num_attention_heads=6, num_key_value_heads=2,
                           rope_theta=1e6, tie_word_embeddings=True),
    # Llama: no bias, untied head, GQA ratio 1 (MHA), rope_theta 1e4, odd sizes, head_dim ≠ hidden/heads.
    "llama_untied_mha": dict(model_type="llama", vocab_size=97, hidden_size=40, intermediate_size=56,
                             num_hidden_layers=3, num_attention_heads=5, num_key_value_heads=5, head_dim=6,
                             rope_theta=1e4, tie_word_embeddings=False),
    # Llama 3 style rope scaling, GQA 2:1.
    "llama3_rope_scaling": dict(model_type="llama", vocab_size=64, hidden_size=32, intermediate_size=48,
                                num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=2,
                                rope_theta=5e5, max_position_embeddings=16384, tie_word_embeddings=False,
                                rope_scaling={"rope_type": "llama3", "factor": 8.0, "low_freq_factor": 1.0,
                                              "high_freq_factor": 4.0, "original_max_position_embeddings": 8}),
    # Qwen2 with untied head and linear rope scaling, GQA 4:1.
    "qwen2_linear_rope": dict(model_type="qwen2", vocab_size=80, hidden_size=32, intermediate_size=40,
                              num_hidden_layers=2, num_attention_heads=4, num_key_value_heads=1,
                              rope_theta=1e4, tie_word_embeddings=False,
                              rope_scaling={"rope_type": "linear", "factor": 2.0}),
}


def make_hf_model(name: str, seed: int = 0):
    """A transformers causal LM with random weights (biases random too, so they are tested)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM, Qwen2Config, Qwen2ForCausalLM

    kw = dict(VARIANTS[name])
    model_type = kw.pop("model_type")
    torch.manual_seed(seed)
    if model_type == "qwen2":
        cfg, cls = Qwen2Config(**kw, attn_implementation="eager"), Qwen2ForCausalLM
    else:
        cfg, cls = LlamaConfig(**kw, attn_implementation="eager"), LlamaForCausalLM
    model = cls(cfg).eval()
    with torch.no_grad():
        for pname, p in model.named_parameters():
            if pname.endswith("bias") or "norm" in pname:
                p.add_(torch.randn_like(p) * 0.1)
    return model


def save_hf_model(name: str, directory, seed: int = 0):
    model = make_hf_model(name, seed)
    model.save_pretrained(directory)
    return model


def padded_batch(vocab: int, lengths=(11, 4, 8), seed: int = 0):
    """Left-padded random batch: tokens, positions (-1 pads), attention mask, all `[B, T]` NumPy."""
    from r2rank_jax.models.batching import left_pad

    rng = np.random.default_rng(seed)
    tokens, positions = left_pad([list(rng.integers(0, vocab, n)) for n in lengths])
    return tokens, positions, (positions >= 0).astype(np.int64)
