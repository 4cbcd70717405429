"""The memory plan (selfalign train --plan): the 15B budget, and its activation count checked
against what autograd actually saves, on CPU at a tiny shape."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from selfalign.training.plan import (
    GIB,
    layer_activation_bytes,
    load_model_config,
    memory_plan,
    model_shape,
    parse_memory,
)

REPO = Path(__file__).resolve().parents[1]
RELEASE = {"max_seq_length": 1280, "per_device_train_batch_size": 1, "optim": "adafactor"}


@pytest.fixture(scope="module")
def sc2_15b():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    config, source = load_model_config("bigcode/starcoder2-15b", None)
    return model_shape(config), source


def _row(plan: dict, attention: str, gc: bool) -> dict:
    return next(r for r in plan["budgets"] if r["attention"] == attention and r["gradient_checkpointing"] == gc)


def test_the_release_training_fits_80_gib_with_a_fused_attention_kernel(sc2_15b) -> None:
    shape, source = sc2_15b
    assert 15.5e9 < shape.parameters < 16.5e9
    assert shape.no_split_modules == ("Starcoder2DecoderLayer",)
    plan = memory_plan(shape, RELEASE, gpu_memory_bytes=parse_memory("80GiB"))
    flash = _row(plan, "flash_attention_2", False)
    assert flash["configured"] and flash["fits"]
    # bf16 weights and gradients alone are 2 x 2 bytes x 16B parameters
    assert flash["weights_gib"] == pytest.approx(shape.parameters * 2 / GIB)
    assert flash["optimizer_gib"] < 0.1  # Adafactor: factored second moments, no first moment
    assert 60 < flash["total_gib"] < 80
    # eager attention keeps the s x s softmax per head: over budget unless activations are recomputed
    assert not _row(plan, "eager", False)["fits"] and _row(plan, "eager", True)["fits"]
    assert _row(plan, "flash_attention_2", True)["activations_gib"] < flash["activations_gib"] / 5
    # AdamW's float32 moments (8 bytes a parameter) could not fit
    adam = memory_plan(shape, {**RELEASE, "optim": "adamw_torch"}, gpu_memory_bytes=parse_memory("80GiB"))
    assert not any(r["fits"] for r in adam["budgets"])


@pytest.mark.parametrize("model_type", ["starcoder2", "qwen2"])
@pytest.mark.parametrize("attention", ["sdpa", "eager"])
def test_activation_count_matches_what_autograd_saves(model_type: str, attention: str) -> None:
    import torch
    from transformers import AutoConfig, AutoModelForCausalLM

    config = AutoConfig.for_model(
        model_type, vocab_size=512, hidden_size=256, intermediate_size=1024, num_hidden_layers=4,
        num_attention_heads=8, num_key_value_heads=2, max_position_embeddings=1024, bos_token_id=0, eos_token_id=0,
    )
    if model_type == "starcoder2":
        config.residual_dropout = config.embedding_dropout = 0.0
    torch.manual_seed(0)
    model = AutoModelForCausalLM.from_config(config, attn_implementation=attention).train()
    tokens = 256
    ids = torch.randint(0, 512, (1, tokens))
    saved: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        saved[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        model(input_ids=ids, labels=ids)
    weights = {p.untyped_storage().data_ptr() for p in model.parameters()}
    measured = sum(n for ptr, n in saved.items() if ptr not in weights)
    shape = model_shape(config)
    planned = config.num_hidden_layers * layer_activation_bytes(shape, tokens, 4, attention) + tokens * 512 * 12
    assert 0.8 < measured / planned < 1.25, (measured, planned)


def test_parse_memory() -> None:
    assert parse_memory("80GiB") == 80 * GIB
    assert parse_memory("80GB") == 80e9
    with pytest.raises(ValueError, match="80GiB"):
        parse_memory("eighty")


def test_train_plan_command_prints_the_paper_budget(tmp_path: Path) -> None:
    out = tmp_path / "plan.json"
    result = subprocess.run(
        [str(Path(sys.executable).with_name("selfalign")), "train", "--plan", "--configfile", str(REPO / "config.yaml"),
         "--gpu-memory", "80GiB", "--gpu-name", "A100 80GB", "--json", str(out)],
        capture_output=True, text=True, env={**os.environ, "HF_HUB_OFFLINE": "1"}, timeout=300,
    )
    assert result.returncode == 0, result.stderr
    assert "15.96B parameters" in result.stdout
    assert "configured run:" in result.stdout and "fits in 80 GiB (A100 80GB)" in result.stdout
    plan = json.loads(out.read_text())
    assert plan["settings"]["gradient_checkpointing"] is False
