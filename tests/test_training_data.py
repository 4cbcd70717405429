"""SFT examples: upstream's prompt, loss on response tokens only, truncation, padding."""

from __future__ import annotations

import pytest
import torch

from selfalign.tinymodel import train_tokenizer
from selfalign.training.data import (
    CHAT_TEMPLATE,
    IGNORE_INDEX,
    collate,
    encode_example,
    training_prompt,
)

TEXTS = [
    "def add(a, b):\n    return a + b\n",
    "### Instruction\nWrite add.\n\n### Response\nHere it is.\n",
    "You are an exceptionally intelligent coding assistant that consistently delivers accurate "
    "and reliable responses to user instructions.\n",
] * 20


@pytest.fixture(scope="module")
def tokenizer():
    return train_tokenizer(TEXTS, vocab_size=400, model_max_length=2048)


def test_prompt_is_upstreams_template_with_an_empty_response() -> None:
    assert training_prompt("Write add.") == (
        "You are an exceptionally intelligent coding assistant that consistently delivers accurate "
        "and reliable responses to user instructions.\n\n### Instruction\nWrite add.\n\n### Response\n"
    )


def test_only_response_tokens_and_eos_carry_labels(tokenizer) -> None:
    response = "```python\ndef add(a, b):\n    return a + b\n```"
    example = encode_example(tokenizer, "Write add.", response, max_length=2048)
    prompt_len = 1 + len(tokenizer(training_prompt("Write add."), add_special_tokens=False)["input_ids"])
    assert example.input_ids[0] == tokenizer.bos_token_id
    assert example.labels[:prompt_len] == [IGNORE_INDEX] * prompt_len
    assert example.labels[prompt_len:] == example.input_ids[prompt_len:]
    assert example.input_ids[-1] == tokenizer.eos_token_id
    assert tokenizer.decode(example.input_ids[prompt_len:-1]) == response
    assert not example.truncated


def test_loss_ignores_the_prompt(tokenizer) -> None:
    from transformers import Starcoder2Config, Starcoder2ForCausalLM

    torch.manual_seed(0)
    config = Starcoder2Config(
        vocab_size=len(tokenizer), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=256,
    )
    model = Starcoder2ForCausalLM(config).eval()
    a = encode_example(tokenizer, "Write add.", "def add(a, b):\n    return a + b", 256)
    b = encode_example(tokenizer, "Write add, please, with two arguments.", "def add(a, b):\n    return a + b", 256)
    batch = collate([a, b], tokenizer.pad_token_id)
    with torch.no_grad():
        out = model(**batch)
    # the model's loss equals cross-entropy over the response positions alone
    logits = out.logits[:, :-1]
    targets = batch["labels"][:, 1:]
    keep = targets != IGNORE_INDEX
    manual = torch.nn.functional.cross_entropy(logits[keep], targets[keep])
    assert torch.allclose(out.loss, manual, atol=1e-6)
    assert keep.sum() == a.response_tokens + b.response_tokens  # every labelled token counts
    # padding carries no loss and is masked
    assert batch["attention_mask"][0, len(a.input_ids):].sum() == 0
    assert (batch["labels"][0, len(a.input_ids):] == IGNORE_INDEX).all()


def test_long_examples_are_cut_and_flagged(tokenizer) -> None:
    example = encode_example(tokenizer, "Write add.", "x = 1\n" * 200, max_length=64)
    assert len(example.input_ids) == len(example.labels) == 64 and example.truncated


def test_chat_template_renders_upstreams_layout(tokenizer) -> None:
    tokenizer.chat_template = CHAT_TEMPLATE
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Write add."}], tokenize=False)
    assert text == tokenizer.bos_token + training_prompt("Write add.")
