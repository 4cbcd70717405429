"""A second tiny architecture with its own BOS-less tokenizer, saved like a Hub checkpoint: the
"bring your own base model" case (Qwen2, whose tokenizers set ``bos_token: null``)."""

from __future__ import annotations

from pathlib import Path


def build_qwen2(path: Path, texts: list[str]) -> Path:
    import torch
    from transformers import PreTrainedTokenizerFast, Qwen2Config, Qwen2ForCausalLM

    from selfalign.tinymodel import EOS_TOKEN, train_tokenizer

    fast = train_tokenizer(texts, vocab_size=400, model_max_length=2048)
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=fast.backend_tokenizer, eos_token=EOS_TOKEN, pad_token=EOS_TOKEN,
        clean_up_tokenization_spaces=False, model_max_length=2048,
    )
    assert tokenizer.bos_token is None
    config = Qwen2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=2, num_key_value_heads=1, max_position_embeddings=2048,
        bos_token_id=None, eos_token_id=tokenizer.eos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=True,
    )
    torch.manual_seed(0)
    model = Qwen2ForCausalLM(config)
    model.generation_config.bos_token_id = None
    path.mkdir(parents=True, exist_ok=True)
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
