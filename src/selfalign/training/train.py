"""Supervised fine-tuning: the SFT JSONL and a base model -> ``results/<run>/checkpoint/``.

The same ``transformers.Trainer`` run as upstream's ``star_align.train`` with the release's
arguments (Adafactor, lr 1e-5, 4 epochs, 1 x 64 accumulation, warmup ratio 0.05, linear schedule,
no gradient clipping, seq 1280, dropout 0, bf16 + flash-attention, seed 42, the dataset shuffled
with the seed before the Trainer's own sampler). Examples come from
:func:`selfalign.training.data.encode_example`: loss on response tokens only.

Where this differs from upstream, on purpose:

* bf16 and flash-attention are used only where the hardware has them (``precision: auto``,
  ``attention: auto``); on a CPU the model trains in float32 with SDPA attention.
* Intermediate checkpoints go to ``<checkpoint>.partial/checkpoint-<step>`` every
  ``save_steps`` optimizer steps, with the Trainer's optimizer, scheduler and RNG states, so a
  killed job resumes from the last one (``resume_from_checkpoint``) and ends with the same
  weights as an uninterrupted run. The partial dir is keyed by a fingerprint of everything that
  shapes the weights; a change of data or parameters starts afresh instead of resuming.
* The finished model is assembled beside the output and renamed into place, so
  ``checkpoint/`` exists only when complete. Its ``training_summary.json`` names the final step,
  the loss curve, the examples truncated, and every file's sha256.

Several GPUs: run the same command under ``accelerate launch --config_file
envs/accelerate/fsdp.yaml -m selfalign train ...`` (``training.accelerate_config``); the Trainer
picks the distributed setup up from accelerate.
"""

from __future__ import annotations

import json
import logging
import math
import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..config import check_params
from ..determinism import check_cpu_kernels
from ..provenance import model_dir_digest
from ..records import (
    JsonObj,
    RecordError,
    fingerprint,
    iter_jsonl,
    sha256_file,
    usual_permissions,
    write_json,
)
from ..runtime import StageStats
from .data import CHAT_TEMPLATE, Encoded, collate, encode_example

log = logging.getLogger(__name__)

#: Bump when what decides the weights changes in code: stale partial checkpoints are dropped.
TRAIN_VERSION = 1

SUMMARY_FILE = "training_summary.json"
FINGERPRINT_FILE = "fingerprint.json"

Precision = Literal["auto", "bf16", "fp32"]
Attention = Literal["auto", "flash_attention_2", "sdpa", "eager"]


#: Config fields that ``training.dropout`` sets where a model's config has them (StarCoder2's
#: attention/residual/embedding dropouts; Llama and Qwen2 have only ``attention_dropout``).
DROPOUT_FIELDS = ("attention_dropout", "residual_dropout", "embedding_dropout", "hidden_dropout",
                  "resid_pdrop", "embd_pdrop", "attn_pdrop")

#: TrainingArguments that a ``training:`` key decides: ``training.extra`` may not set them (it
#: may override any other, e.g. ``report_to``, ``dataloader_num_workers``).
OWNED_ARGUMENTS: dict[str, str] = {
    **{name: f"training.{name}" for name in (
        "learning_rate", "num_train_epochs", "per_device_train_batch_size", "gradient_accumulation_steps",
        "lr_scheduler_type", "optim", "max_grad_norm", "seed", "save_steps", "save_total_limit",
        "logging_steps", "max_steps", "gradient_checkpointing")},
    "warmup_steps": "training.warmup_ratio",
    "warmup_ratio": "training.warmup_ratio",
    "data_seed": "training.seed",
    "bf16": "training.precision",
    "fp16": "training.precision",
    "use_cpu": "training.precision (the device follows the hardware)",
    "output_dir": "the workflow (checkpoint.partial/)",
    "full_determinism": "the workflow (deterministic training)",
}


def training_arguments(defaults: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """``defaults`` updated by ``extra``, each of whose keys must be a TrainingArguments field
    (a clear error instead of TrainingArguments' TypeError)."""
    import dataclasses

    from transformers import TrainingArguments

    known = {f.name for f in dataclasses.fields(TrainingArguments)}
    unknown = sorted(set(extra) - known)
    if unknown:
        import difflib

        hints = [f"{k!r}" + (f" (did you mean {m[0]!r}?)" if (m := difflib.get_close_matches(k, known, 1)) else "")
                 for k in unknown]
        raise ValueError(f"training.extra: not a transformers.TrainingArguments field: {', '.join(hints)}")
    return {**defaults, **extra}


@dataclass(frozen=True)
class TrainParams:
    """The ``training:`` section of the config; defaults are the release's values."""

    learning_rate: float = 1e-5
    num_train_epochs: float = 4.0
    per_device_train_batch_size: int = 1
    gradient_accumulation_steps: int = 64
    warmup_ratio: float = 0.05
    lr_scheduler_type: str = "linear"
    optim: str = "adafactor"
    max_grad_norm: float = -1.0  # upstream: --max_grad_norm -1, no clipping
    max_seq_length: int = 1280
    seed: int = 42  # the TrainingArguments default upstream ran with
    dropout: float = 0.0  # attention, residual and embedding dropout (StarCoder2's default: 0.1)
    precision: Precision = "auto"
    attention: Attention = "auto"
    gradient_checkpointing: bool = False  # the release: off
    save_steps: int = 50  # optimizer steps between resumable checkpoints
    save_total_limit: int = 2
    logging_steps: int = 1
    max_steps: int | None = None  # stop early (tests); null = the epochs decide
    threads: int | None = None  # CPU threads for torch; null = torch's default
    loss_normalization: str = "micro_batch_mean"
    """``micro_batch_mean``: each micro-batch's loss is the mean over its label tokens, and the
    accumulated gradient their average (transformers 4.39, which the release ran); ``tokens``:
    the loss summed over the accumulated batch and divided by its label-token count (the Trainer
    from 4.46 on, where the model accepts ``num_items_in_batch``)."""
    accelerate_config: str | None = None  # used by the workflow rule, not here
    extra: Mapping[str, Any] = field(default_factory=dict)  # more TrainingArguments, verbatim

    def __post_init__(self) -> None:
        # each value's type, bounds and choices: the config schema's training section (from_dict)
        owned = sorted(set(self.extra) & set(OWNED_ARGUMENTS))
        if owned:
            raise ValueError(
                "training.extra: " + "; ".join(f"{k!r} is set by {OWNED_ARGUMENTS[k]}" for k in owned)
                + " (set it there, not in extra)"
            )

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TrainParams:
        check_params(cls, data, "training")
        return cls(**{**data, "extra": dict(data.get("extra") or {})})

    def weights_fingerprint(self) -> JsonObj:
        """The settings that decide the weights (not where or how often they are saved)."""
        skip = {"save_steps", "save_total_limit", "logging_steps", "threads", "accelerate_config",
                "gradient_checkpointing"}  # recomputation does not change the weights
        return {k: v for k, v in asdict(self).items() if k not in skip}


@dataclass(frozen=True)
class Hardware:
    """What the run resolved ``auto`` to."""

    bf16: bool
    attention: str
    device: str


def resolve_hardware(params: TrainParams) -> Hardware:
    """bf16 and flash-attention where a GPU has them; float32 + SDPA on a CPU."""
    import torch

    cuda = torch.cuda.is_available()
    if params.precision == "auto":
        bf16 = cuda and torch.cuda.is_bf16_supported()
    else:
        bf16 = params.precision == "bf16"
    if params.attention == "auto":
        attention = "sdpa"
        if cuda:
            try:
                import flash_attn  # noqa: F401
            except ImportError:
                log.warning("flash_attn is not installed: training with SDPA attention")
            else:
                attention = "flash_attention_2"
    else:
        attention = params.attention
    return Hardware(bf16=bf16, attention=attention, device="cuda" if cuda else "cpu")


# ------------------------------------------------------------------------------------- the data


@dataclass
class EncodedData:
    examples: list[Encoded]
    truncated: int
    tokens_dropped: int
    response_tokens: int


def load_sft(path: str | os.PathLike[str], tokenizer: Any, max_length: int) -> EncodedData:
    """Every SFT record as token ids; a record without string ``instruction`` and ``response``
    stops the run naming file, line and field (nothing is skipped)."""
    examples: list[Encoded] = []
    truncated = dropped = response_tokens = 0
    for lineno, record in iter_jsonl(path, required={"instruction": str, "response": str}):
        full = encode_example(tokenizer, record["instruction"], record["response"], 10**9)
        encoded = encode_example(tokenizer, record["instruction"], record["response"], max_length)
        if not encoded.response_tokens:
            raise RecordError(
                path, lineno,
                f"the prompt alone is {len(full.input_ids) - full.response_tokens} tokens, "
                f"max_seq_length {max_length} leaves no response token to learn from",
            )
        examples.append(encoded)
        truncated += encoded.truncated
        dropped += len(full.input_ids) - len(encoded.input_ids)
        response_tokens += encoded.response_tokens
    if not examples:
        raise RecordError(path, 0, "no SFT records: nothing to train on")
    return EncodedData(examples, truncated, dropped, response_tokens)


# ---------------------------------------------------------------------------------- the trainer


def _partial_dir(out_dir: Path) -> Path:
    return out_dir.with_name(out_dir.name + ".partial")


def _prepare_partial(partial: Path, value: str) -> None:
    """Keep intermediate checkpoints only if they were made from the same inputs and settings."""
    marker = partial / FINGERPRINT_FILE
    if partial.exists():
        try:
            same = json.loads(marker.read_text())["fingerprint"] == value
        except (OSError, ValueError, KeyError):
            same = False
        if same:
            return
        log.warning("%s was made from other data or settings: starting afresh", partial)
        shutil.rmtree(partial)
    partial.mkdir(parents=True)
    write_json(marker, {"fingerprint": value})


def last_checkpoint(partial: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` (the Trainer writes ``trainer_state.json`` last)."""
    from transformers.trainer_utils import get_last_checkpoint

    if not partial.is_dir():
        return None
    found = get_last_checkpoint(str(partial))
    return Path(found) if found else None


def train(
    sft_path: str | os.PathLike[str],
    base_model: str,
    out_dir: str | os.PathLike[str],
    params: TrainParams,
    *,
    revision: str | None = None,
    callbacks: Sequence[Any] = (),
    show_progress: bool = True,
) -> StageStats:
    """Fine-tune ``base_model`` on ``sft_path`` and write the model directory ``out_dir``."""
    import torch
    import transformers
    from datasets import Dataset
    from transformers import (
        AutoConfig,
        AutoModelForCausalLM,
        AutoTokenizer,
        Trainer,
        TrainingArguments,
    )

    out = Path(out_dir)
    partial = _partial_dir(out)
    hardware = resolve_hardware(params)
    if hardware.device == "cpu":
        check_cpu_kernels()
    if params.threads:
        torch.set_num_threads(params.threads)
    transformers.set_seed(params.seed, deterministic=True)

    tokenizer = AutoTokenizer.from_pretrained(base_model, revision=revision)
    data = load_sft(sft_path, tokenizer, params.max_seq_length)
    pad_id = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    value = fingerprint(
        {
            "version": TRAIN_VERSION,
            "sft_sha256": sha256_file(sft_path),
            "base_model": [base_model, revision],
            "base_files": model_dir_digest(base_model),
            "params": params.weights_fingerprint(),
            "hardware": asdict(hardware),
        }
    )
    _prepare_partial(partial, value)
    resume = last_checkpoint(partial)

    model_config = AutoConfig.from_pretrained(base_model, revision=revision)
    for name in DROPOUT_FIELDS:  # training.dropout on every dropout this architecture has
        if hasattr(model_config, name):
            setattr(model_config, name, params.dropout)
    model = AutoModelForCausalLM.from_pretrained(
        base_model,
        revision=revision,
        config=model_config,
        dtype=torch.bfloat16 if hardware.bf16 else torch.float32,
        attn_implementation=hardware.attention,
    )
    # Upstream shuffles the dataset with the seed, then the Trainer's sampler shuffles again.
    dataset = Dataset.from_list(
        [{"input_ids": e.input_ids, "labels": e.labels, "truncated": e.truncated} for e in data.examples]
    ).shuffle(seed=params.seed)

    def collator(rows: list[dict[str, Any]]) -> dict[str, Any]:
        return collate([Encoded(r["input_ids"], r["labels"], r["truncated"]) for r in rows], pad_id)

    defaults: dict[str, Any] = dict(
        output_dir=str(partial),
        learning_rate=params.learning_rate,
        num_train_epochs=params.num_train_epochs,
        max_steps=params.max_steps if params.max_steps is not None else -1,
        per_device_train_batch_size=params.per_device_train_batch_size,
        gradient_accumulation_steps=params.gradient_accumulation_steps,
        warmup_steps=params.warmup_ratio,  # < 1: a ratio of the total steps
        lr_scheduler_type=params.lr_scheduler_type,
        optim=params.optim,
        max_grad_norm=params.max_grad_norm,
        bf16=hardware.bf16,
        seed=params.seed,
        data_seed=params.seed,
        full_determinism=True,
        save_strategy="steps",
        save_steps=params.save_steps,
        save_total_limit=params.save_total_limit,
        logging_strategy="steps",
        logging_steps=params.logging_steps,
        report_to="none",
        remove_unused_columns=False,
        dataloader_num_workers=0,
        disable_tqdm=not show_progress,
        use_cpu=hardware.device == "cpu",
        gradient_checkpointing=params.gradient_checkpointing,
    )
    args = TrainingArguments(**training_arguments(defaults, params.extra))
    trainer = Trainer(
        model=model,
        args=args,
        train_dataset=dataset,
        data_collator=collator,
        callbacks=list(callbacks),
    )
    if params.loss_normalization == "micro_batch_mean":
        # transformers 4.39's rule: no num_items_in_batch to the model, so its loss is the
        # micro-batch's token mean, which training_step then divides by the accumulation steps
        trainer.model_accepts_loss_kwargs = False
    if resume is not None:
        log.info("resuming from %s", resume)
    result = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    losses: list[dict[str, Any]] = [
        {"step": entry["step"], "loss": entry["loss"], "learning_rate": entry.get("learning_rate")}
        for entry in trainer.state.log_history
        if "loss" in entry
    ]
    summary: JsonObj = {
        "base_model": base_model,
        "revision": revision,
        "final_step": trainer.state.global_step,
        "max_steps": trainer.state.max_steps,
        "epochs": trainer.state.epoch,
        "examples": len(data.examples),
        "examples_truncated": data.truncated,
        "tokens_truncated": data.tokens_dropped,
        "response_tokens": data.response_tokens,
        "train_loss": result.training_loss,
        "loss_curve": losses,
        "resumed_from_step": _step_of(resume),
        "hardware": asdict(hardware),
        "params": asdict(params),
    }
    # Every rank takes part in saving (FSDP gathers the shards); rank 0 assembles the output.
    final = partial / "final"
    trainer.save_model(str(final))
    if trainer.is_world_process_zero():
        _write_output(out, final, tokenizer, summary)
        shutil.rmtree(partial, ignore_errors=True)
    stats = StageStats(n_in=len(data.examples), n_out=len(data.examples))
    stats.extra = {k: summary[k] for k in (
        "final_step", "examples_truncated", "tokens_truncated", "response_tokens", "train_loss",
        "resumed_from_step",
    )}
    stats.extra["loss_curve"] = losses
    stats.extra["files"] = summary.get("files", {})
    stats.extra["memory"] = _memory_report(model.config, params, hardware)
    if any(not math.isfinite(entry["loss"]) for entry in losses):
        raise FloatingPointError(f"training loss is not finite: {losses}")
    return stats


def _memory_report(model_config: Any, params: TrainParams, hardware: Hardware) -> JsonObj:
    """The plan's budget for this run's settings and, on a GPU, the peak it measured."""
    import torch

    from .plan import memory_plan, model_shape

    plan = memory_plan(model_shape(model_config), asdict(params) | {"attention": hardware.attention},
                       gpu_memory_bytes=None, bf16=hardware.bf16)
    configured = next(row for row in plan["budgets"] if row["configured"])
    report: JsonObj = {"planned_gib": round(configured["total_gib"], 3), "parameters": plan["model"]["parameters"]}
    if hardware.device == "cuda":
        report["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / 1024**3, 3)
        report["gpu"] = torch.cuda.get_device_name()
    return report


def _step_of(checkpoint: Path | None) -> int | None:
    return int(checkpoint.name.rsplit("-", 1)[1]) if checkpoint is not None else None


def _write_output(out: Path, saved: Path, tokenizer: Any, summary: JsonObj) -> None:
    """Model (as the Trainer saved it in ``saved``), tokenizer with upstream's chat template,
    and the summary, assembled beside ``out`` and renamed into place whole."""
    out.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        for path in sorted(saved.iterdir()):
            if path.is_file():
                shutil.copyfile(path, staging / path.name)
        # the release's template, less its {{bos_token}} where the tokenizer has none (Jinja would print "None")
        tokenizer.chat_template = CHAT_TEMPLATE if tokenizer.bos_token else CHAT_TEMPLATE.replace("{{bos_token}}", "", 1)
        tokenizer.save_pretrained(str(staging))
        (staging / "training_args.bin").unlink(missing_ok=True)  # pickled, not reproducible
        summary["files"] = {p.name: sha256_file(p) for p in sorted(staging.iterdir())}
        write_json(staging / SUMMARY_FILE, summary)
        usual_permissions(staging)
        if out.exists():
            shutil.rmtree(out)
        os.replace(staging, out)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
