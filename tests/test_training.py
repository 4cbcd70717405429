"""Fine-tuning: a resumed run ends with the same weights as an uninterrupted one, reruns are
byte-identical, and the checkpoint directory is complete and self-describing."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoTokenizer, Starcoder2ForCausalLM, TrainerCallback

from selfalign.records import RecordError, sha256_file, write_jsonl
from selfalign.tinymodel import TinyModelParams, model_config, train_tokenizer
from selfalign.training.data import CHAT_TEMPLATE, collate
from selfalign.training.train import SUMMARY_FILE, TrainParams, last_checkpoint, load_sft, train

RECORDS = [
    {"id": f"r{i}", "instruction": f"Write a function add{i} that adds {i} to x.",
     "response": f"```python\ndef add{i}(x):\n    return x + {i}\n```"}
    for i in range(6)
]

PARAMS = TrainParams(
    learning_rate=1e-3,
    num_train_epochs=2,
    gradient_accumulation_steps=2,
    max_seq_length=256,
    save_steps=2,
    save_total_limit=1,
    threads=1,
)


@pytest.fixture(scope="module")
def base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small random StarCoder2 model with its own tokenizer, saved like a Hub checkpoint."""
    path = tmp_path_factory.mktemp("base")
    texts = [r["instruction"] + "\n" + r["response"] for r in RECORDS] * 10
    tokenizer = train_tokenizer(texts, vocab_size=300, model_max_length=1024)
    torch.manual_seed(0)
    params = TinyModelParams(hidden_size=32, intermediate_size=64, num_layers=2,
                             num_heads=2, num_kv_heads=1)
    model = Starcoder2ForCausalLM(model_config(params, len(tokenizer), tokenizer.eos_token_id))
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def sft(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("data") / "sft.jsonl"
    write_jsonl(path, RECORDS)
    return path


@pytest.fixture(scope="module")
def uninterrupted(base: Path, sft: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("run") / "checkpoint"
    train(sft, str(base), out, PARAMS, show_progress=False)
    return out


class _Kill(TrainerCallback):
    """Dies like a killed job, right after the optimizer step ``at`` (past a saved checkpoint)."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_step_end(self, args, state, control, **kwargs):  # type: ignore[no-untyped-def]
        if state.global_step == self.at:
            raise KeyboardInterrupt(f"killed at step {self.at}")


def test_checkpoint_is_a_complete_model_directory(uninterrupted: Path, base: Path) -> None:
    names = {p.name for p in uninterrupted.iterdir()}
    assert {"config.json", "model.safetensors", "tokenizer.json", SUMMARY_FILE} <= names
    assert not uninterrupted.with_name("checkpoint.partial").exists()
    summary = json.loads((uninterrupted / SUMMARY_FILE).read_text())
    # 6 examples, 2 per optimizer step, 2 epochs
    assert summary["final_step"] == summary["max_steps"] == 6
    assert summary["examples"] == 6 and summary["examples_truncated"] == 0
    assert [e["step"] for e in summary["loss_curve"]] == [1, 2, 3, 4, 5, 6]
    assert summary["loss_curve"][-1]["loss"] < summary["loss_curve"][0]["loss"]
    assert summary["files"]["model.safetensors"] == sha256_file(uninterrupted / "model.safetensors")
    tokenizer = AutoTokenizer.from_pretrained(uninterrupted)
    assert tokenizer.chat_template == CHAT_TEMPLATE
    text = tokenizer.apply_chat_template([{"role": "user", "content": "Hi"}], tokenize=False)
    assert text.endswith("### Instruction\nHi\n\n### Response\n")
    # the weights moved away from the base model's
    assert sha256_file(uninterrupted / "model.safetensors") != sha256_file(base / "model.safetensors")


def test_rerun_is_byte_identical(uninterrupted: Path, base: Path, sft: Path, tmp_path: Path) -> None:
    out = tmp_path / "checkpoint"
    train(sft, str(base), out, PARAMS, show_progress=False)
    for name in ("model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"):
        assert sha256_file(out / name) == sha256_file(uninterrupted / name), name


def test_resumed_run_matches_an_uninterrupted_one(
    uninterrupted: Path, base: Path, sft: Path, tmp_path: Path
) -> None:
    out = tmp_path / "checkpoint"
    with pytest.raises(KeyboardInterrupt):
        train(sft, str(base), out, PARAMS, callbacks=[_Kill(3)], show_progress=False)
    assert not out.exists()
    saved = last_checkpoint(out.with_name("checkpoint.partial"))
    assert saved is not None and saved.name == "checkpoint-2"

    stats = train(sft, str(base), out, PARAMS, show_progress=False)
    assert stats.extra["resumed_from_step"] == 2
    assert sha256_file(out / "model.safetensors") == sha256_file(uninterrupted / "model.safetensors")
    resumed = json.loads((out / SUMMARY_FILE).read_text())
    whole = json.loads((uninterrupted / SUMMARY_FILE).read_text())
    # the loss curve carries over from the checkpoint: the whole run's, step for step
    assert resumed["loss_curve"] == whole["loss_curve"]
    assert resumed["resumed_from_step"] == 2 and whole["resumed_from_step"] is None


def test_changed_data_does_not_resume_stale_checkpoints(base: Path, sft: Path, tmp_path: Path) -> None:
    out = tmp_path / "checkpoint"
    with pytest.raises(KeyboardInterrupt):
        train(sft, str(base), out, PARAMS, callbacks=[_Kill(3)], show_progress=False)
    other = tmp_path / "other.jsonl"
    write_jsonl(other, RECORDS[:4])
    stats = train(other, str(base), out, PARAMS, show_progress=False)
    assert stats.extra["resumed_from_step"] is None
    assert stats.extra["final_step"] == 4


def test_bad_record_names_file_line_and_field(base: Path, tmp_path: Path) -> None:
    path = tmp_path / "bad.jsonl"
    write_jsonl(path, [RECORDS[0], {"id": "x", "instruction": "Write it."}])
    tokenizer = AutoTokenizer.from_pretrained(base)
    with pytest.raises(RecordError, match=r"bad\.jsonl:2: field 'response': missing"):
        load_sft(path, tokenizer, 256)


def test_truncation_is_counted_and_a_prompt_filling_the_window_is_refused(base: Path, tmp_path: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(base)
    path = tmp_path / "long.jsonl"
    write_jsonl(path, [{**RECORDS[0], "response": RECORDS[0]["response"] * 20}])
    data = load_sft(path, tokenizer, 200)
    assert data.truncated == 1 and data.tokens_dropped > 0
    assert all(len(e.input_ids) == 200 for e in data.examples)
    with pytest.raises(RecordError, match="leaves no response token"):
        load_sft(path, tokenizer, 10)


def test_params_reject_unknown_and_bad_values() -> None:
    with pytest.raises(ValueError, match="learning_rte"):
        TrainParams.from_dict({"learning_rte": 1e-5})
    with pytest.raises(ValueError, match=r"training.warmup_ratio must be < 1, got 1.5"):
        TrainParams.from_dict({"warmup_ratio": 1.5})
    assert TrainParams().gradient_accumulation_steps == 64 and TrainParams().optim == "adafactor"


def test_fsdp_config_is_a_valid_accelerate_config(repo: Path) -> None:
    from accelerate.commands.config.config_args import load_config_from_file
    from accelerate.utils import DistributedType
    from transformers.models.qwen2 import modeling_qwen2
    from transformers.models.starcoder2 import modeling_starcoder2

    config = load_config_from_file(str(repo / "envs" / "accelerate" / "fsdp.yaml"))
    assert config.distributed_type == DistributedType.FSDP and config.mixed_precision == "bf16"
    # no layer class named: accelerate wraps the model's own _no_split_modules, whatever the model
    assert "fsdp_transformer_layer_cls_to_wrap" not in config.fsdp_config
    assert modeling_starcoder2.Starcoder2PreTrainedModel._no_split_modules == ["Starcoder2DecoderLayer"]
    assert modeling_qwen2.Qwen2PreTrainedModel._no_split_modules == ["Qwen2DecoderLayer"]
    assert config.fsdp_config["fsdp_state_dict_type"] == "FULL_STATE_DICT"


def test_extra_overrides_training_arguments_but_not_what_a_training_key_sets(tmp_path: Path) -> None:
    from transformers import TrainingArguments

    from selfalign.training.train import training_arguments

    args = TrainingArguments(**training_arguments({"output_dir": str(tmp_path), "report_to": "none"},
                                                  TrainParams(extra={"report_to": "wandb"}).extra))
    assert args.report_to == ["wandb"]
    with pytest.raises(ValueError, match="'learning_rate' is set by training.learning_rate"):
        TrainParams(extra={"learning_rate": 1e-4})
    with pytest.raises(ValueError, match="'gradient_checkpointing' is set by training.gradient_checkpointing"):
        TrainParams.from_dict({"extra": {"gradient_checkpointing": True}})
    with pytest.raises(ValueError, match="'report_too' \\(did you mean 'report_to'\\?\\)"):
        training_arguments({}, {"report_too": "wandb"})


class _Grads(TrainerCallback):
    """The accumulated gradient of the first optimizer step, before the optimizer sees it."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}

    def on_pre_optimizer_step(self, args, state, control, model=None, **kwargs):  # type: ignore[no-untyped-def]
        if not self.grads:
            self.grads = {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


@pytest.mark.parametrize("mode", ["micro_batch_mean", "tokens"])
def test_loss_normalization_over_accumulation(mode: str, base: Path, tmp_path: Path) -> None:
    """micro_batch_mean (transformers 4.39, the release): the step's gradient is the average of
    each micro-batch's token-mean gradient; tokens (the Trainer from 4.46): of the loss summed
    over the accumulated batch and divided by its label tokens. Two examples of different
    response lengths, accumulation 2: one optimizer step holds both."""
    records = [
        {"id": "short", "instruction": "Say one.", "response": "1"},
        {"id": "long", "instruction": "Write add.", "response": "```python\ndef add(a, b):\n    return a + b\n```"},
    ]
    data = tmp_path / "sft.jsonl"
    write_jsonl(data, records)
    grads = _Grads()
    params = TrainParams(learning_rate=1e-3, num_train_epochs=1, gradient_accumulation_steps=2,
                         max_seq_length=256, save_steps=10, threads=1, loss_normalization=mode)
    train(data, str(base), tmp_path / "ckpt", params, callbacks=[grads], show_progress=False)

    tokenizer = AutoTokenizer.from_pretrained(base)
    encoded = load_sft(data, tokenizer, 256).examples
    model = Starcoder2ForCausalLM.from_pretrained(base, attn_implementation="sdpa")
    model.config.attention_dropout = model.config.residual_dropout = model.config.embedding_dropout = 0.0
    counts = [e.response_tokens for e in encoded]
    assert counts[0] != counts[1]
    losses = [model(**collate([e], tokenizer.pad_token_id or 0)).loss for e in encoded]
    if mode == "micro_batch_mean":
        total = (losses[0] + losses[1]) / 2
    else:
        total = (losses[0] * counts[0] + losses[1] * counts[1]) / sum(counts)
    total.backward()
    for name, param in model.named_parameters():
        if name in grads.grads:
            assert torch.allclose(grads.grads[name], param.grad, rtol=1e-4, atol=1e-6), (mode, name)
