"""Tiny random models for tests and benchmarks: a few-layer Llama with the real SmolLM2 tokenizer,
random LoRA adapters on it, and random adapters shaped like the bundled GGUF's layers. They run
the real transformers / peft / llama.cpp code in seconds; what they generate is noise."""

from __future__ import annotations

import json
from pathlib import Path

LORA_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def make_tiny_adapter(base_dir: Path, out: Path, seed: int, scale: float = 1.0) -> Path:
    """A random (non-zero) LoRA adapter on the tiny model, saved the way training saves one."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(r=4, lora_alpha=8, target_modules=LORA_TARGETS, init_lora_weights=False)
    peft_model = get_peft_model(model, config)
    with torch.no_grad():
        for name, param in peft_model.named_parameters():
            if "lora_" in name:
                param.mul_(scale)
    peft_model.save_pretrained(str(out))
    return out


def save_real_tokenizer(out: Path) -> Path:
    """The bundled SmolLM2 tokenizer and chat template (read from its GGUF), saved to `out`."""
    from transformers import AutoTokenizer

    from bot.model_assets import bundled_gguf_path

    gguf = bundled_gguf_path()
    tok = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    tok.save_pretrained(out)
    return out


def build_tiny_llama(tokenizer_dir: Path, out: Path) -> Path:
    """A 2-layer random Llama with the tokenizer of `tokenizer_dir`, saved to `out`."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(str(tokenizer_dir))
    config = LlamaConfig(
        vocab_size=len(tok),
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id if tok.pad_token_id is not None else tok.eos_token_id,
    )
    torch.manual_seed(0)
    model = LlamaForCausalLM(config)
    model.save_pretrained(out)
    tok.save_pretrained(out)
    return out


# PEFT module name → llama.cpp tensor name, for an adapter shaped like the bundled GGUF's layers.
PEFT_TO_GGUF = {
    "self_attn.q_proj": "attn_q",
    "self_attn.k_proj": "attn_k",
    "self_attn.v_proj": "attn_v",
    "self_attn.o_proj": "attn_output",
    "mlp.gate_proj": "ffn_gate",
    "mlp.up_proj": "ffn_up",
    "mlp.down_proj": "ffn_down",
}


def make_bundled_shaped_adapter(out: Path, seed: int, scale: float = 0.05, rank: int = 4) -> Path:
    """A random PEFT LoRA adapter for the bundled SmolLM2 (shapes read from its GGUF), no model needed."""
    import gguf
    import numpy as np
    from safetensors.numpy import save_file

    from bot.model_assets import bundled_gguf_path

    reader = gguf.GGUFReader(str(bundled_gguf_path()))
    shapes = {t.name: [int(x) for x in t.shape] for t in reader.tensors}  # ggml order: [in, out]
    n_blocks = int(reader.fields["llama.block_count"].contents())
    rng = np.random.default_rng(seed)
    tensors = {}
    for block in range(n_blocks):
        for module, gguf_name in PEFT_TO_GGUF.items():
            fan_in, fan_out = shapes[f"blk.{block}.{gguf_name}.weight"]
            key = f"base_model.model.model.layers.{block}.{module}"
            tensors[f"{key}.lora_A.weight"] = (rng.standard_normal((rank, fan_in)) * scale).astype(np.float32)
            tensors[f"{key}.lora_B.weight"] = (rng.standard_normal((fan_out, rank)) * scale).astype(
                np.float32
            )
    out.mkdir(parents=True, exist_ok=True)
    save_file(tensors, str(out / "adapter_model.safetensors"))
    config = {
        "peft_type": "LORA",
        "r": rank,
        "lora_alpha": 2 * rank,
        "target_modules": sorted(m.split(".")[-1] for m in PEFT_TO_GGUF),
        "task_type": "CAUSAL_LM",
        "bias": "none",
        "lora_dropout": 0.0,
        "base_model_name_or_path": None,
    }
    (out / "adapter_config.json").write_text(json.dumps(config), encoding="utf-8")
    return out
