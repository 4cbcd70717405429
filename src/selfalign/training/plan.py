"""The memory plan of a fine-tuning run, from the model's config alone (no GPU, no weights).

``selfalign train --plan`` builds the configured model on PyTorch's meta device (shapes, no
memory), counts its parameters and prices what one GPU holds at the peak of a training step
with the configured settings:

* weights and gradients in the training dtype (bf16 where the GPU has it, as the release);
* the optimizer's state: Adafactor (the release's ``optim: adafactor``, transformers' with
  ``beta1=None``) keeps a row and a column vector per matrix and a full second moment per
  vector, in the parameter's dtype, plus, while it updates one parameter, float32 copies of
  that parameter, its gradient and the update (the largest parameter sets that peak); AdamW
  keeps two float32 moments per parameter;
* activations saved for the backward pass at ``max_seq_length`` tokens per micro-batch: per
  decoder layer the inputs of its norms, projections and MLP (the formula below), and the
  attention core, O(s) with a fused kernel (flash-attention 2, or SDPA's flash / memory-
  efficient kernels, which transformers picks for a causal mask without padding) and O(s^2)
  with the eager path (the float32 softmax kept for backward); with gradient checkpointing only
  each layer's input is kept, and one layer's activations are rebuilt at a time;
* the logits and the float32 loss over the vocabulary, and a fixed allowance for the CUDA
  context and the allocator (``OVERHEAD_GIB``).

It is an estimate, in the spirit of Korthikanti et al. (2022)'s activation count: it says
which settings can fit, not the last GiB; ``benchmarks/gpu_check.py`` measures the peak where
a GPU is at hand.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

#: CUDA context, cuBLAS workspaces and allocator slack, GiB.
OVERHEAD_GIB = 2.0
GIB = 1024**3

#: Configs the plan can use when the Hub cannot be reached (``selfalign/data/model-configs/``).
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "data" / "model-configs"


def parse_memory(text: str) -> float:
    """``80GiB``, ``80GB`` (decimal), ``141 GiB`` -> bytes."""
    match = re.fullmatch(r"\s*([0-9.]+)\s*(GiB|GB|G|MiB|MB)?\s*", text)
    if not match:
        raise ValueError(f"--gpu-memory: expected e.g. 80GiB or 80GB, got {text!r}")
    value, unit = float(match.group(1)), match.group(2) or "GiB"
    scale = {"GiB": GIB, "G": GIB, "GB": 1e9, "MiB": 1024**2, "MB": 1e6}[unit]
    return value * scale


@dataclass(frozen=True)
class ModelShape:
    """What the plan needs of a model, counted on the meta device."""

    model_type: str
    parameters: int
    largest_parameter: int
    matrix_state: int  # Adafactor's factored entries: rows + columns of every matrix
    vector_parameters: int  # entries of 1-d parameters (biases, norms): unfactored state
    layers: int
    hidden: int
    intermediate: int
    heads: int
    kv_heads: int
    head_dim: int
    vocab: int
    no_split_modules: tuple[str, ...]


def load_model_config(name: str, revision: str | None, model_config: str | None = None) -> tuple[Any, str]:
    """The model's transformers config and where it came from: ``model_config`` (a config.json
    or a model directory), else the Hub (or its local cache) at ``revision``, else a packaged
    copy for the models this project's configs name."""
    from transformers import AutoConfig

    if model_config is not None:
        path = Path(model_config)
        if path.is_file():
            data = json.loads(path.read_text(encoding="utf-8"))
            model_type = data.pop("model_type")
            return AutoConfig.for_model(model_type, **data), str(path)
        return AutoConfig.from_pretrained(str(path)), str(path)
    try:
        return AutoConfig.from_pretrained(name, revision=revision), f"{name}@{revision or 'main'}"
    except OSError as exc:
        packaged = PACKAGED_CONFIGS / (name.replace("/", "--") + ".json")
        if not packaged.is_file():
            raise ValueError(
                f"cannot read the config of {name!r} ({exc}); pass --model-config config.json"
            ) from None
        data = json.loads(packaged.read_text(encoding="utf-8"))
        source = data.pop("_source")
        model_type = data.pop("model_type")
        return AutoConfig.for_model(model_type, **data), f"packaged copy of {source} (the Hub was not reachable)"


def model_shape(config: Any) -> ModelShape:
    """Build the model on the meta device and count its parameters."""
    import torch
    from transformers import AutoModelForCausalLM

    with torch.device("meta"):
        model = AutoModelForCausalLM.from_config(config)
    total = largest = matrix_state = vectors = 0
    for param in model.parameters():
        n = param.numel()
        total += n
        largest = max(largest, n)
        if param.dim() >= 2:
            matrix_state += param.shape[-2] + param.shape[-1]
        else:
            vectors += n
    heads = config.num_attention_heads
    hidden = config.hidden_size
    head_dim = getattr(config, "head_dim", None) or hidden // heads
    return ModelShape(
        model_type=config.model_type,
        parameters=total,
        largest_parameter=largest,
        matrix_state=matrix_state,
        vector_parameters=vectors,
        layers=config.num_hidden_layers,
        hidden=hidden,
        intermediate=config.intermediate_size,
        heads=heads,
        kv_heads=getattr(config, "num_key_value_heads", None) or heads,
        head_dim=head_dim,
        vocab=config.vocab_size,
        no_split_modules=tuple(getattr(model, "_no_split_modules", None) or ()),
    )


#: Families with a gated MLP (three projections), RMSNorm and rotary embeddings on q and k.
LLAMA_LIKE = ("llama", "qwen2", "qwen3", "mistral", "gemma", "gemma2")


def layer_activation_bytes(shape: ModelShape, tokens: int, dtype_bytes: int, attention: str) -> float:
    """Bytes one decoder layer keeps for backward at ``tokens`` tokens (micro-batch x length).

    Kept tensors: the two norms' inputs and outputs (4 h), the query and the attention output
    (2 h), keys and values (2 kv_heads x head_dim), the MLP's two hidden-size-`i` tensors (the
    activation's input and output; a gated MLP keeps a third), all in the training dtype; plus
    the attention core: with a fused kernel its log-sum-exp (float32, heads x s), with eager
    attention the float32 softmax and its bf16 copy (6 bytes x heads x s^2).
    """
    h, i = shape.hidden, shape.intermediate
    kv = shape.kv_heads * shape.head_dim
    llama_like = shape.model_type in LLAMA_LIKE
    per_token = dtype_bytes * (6 * h + 2 * kv + (3 if llama_like else 2) * i)
    if llama_like:
        per_token += 24 * h  # RMSNorm's float32 upcasts and RoPE's intermediates (measured, see tests)
    core = 4.0 * shape.heads * tokens if attention != "eager" else 6.0 * shape.heads * tokens * tokens
    return per_token * tokens + core


@dataclass(frozen=True)
class Budget:
    attention: str
    gradient_checkpointing: bool
    weights_gib: float
    gradients_gib: float
    optimizer_gib: float
    optimizer_step_gib: float
    activations_gib: float
    logits_gib: float
    overhead_gib: float

    @property
    def total_gib(self) -> float:
        return (self.weights_gib + self.gradients_gib + self.optimizer_gib + self.optimizer_step_gib
                + self.activations_gib + self.logits_gib + self.overhead_gib)


def budget(
    shape: ModelShape,
    *,
    seq_len: int,
    micro_batch: int,
    bf16: bool,
    optim: str,
    attention: str,
    gradient_checkpointing: bool,
) -> Budget:
    dtype_bytes = 2 if bf16 else 4
    p = shape.parameters
    tokens = seq_len * micro_batch
    if optim.startswith("adafactor"):
        state = float(dtype_bytes * (shape.matrix_state + shape.vector_parameters))
        step = 12.0 * shape.largest_parameter  # float32 param, grad and update of one parameter
    elif "adam" in optim:
        state = 8.0 * p  # two float32 moments
        step = 0.0
    else:
        state, step = 4.0 * p, 0.0
    per_layer = layer_activation_bytes(shape, tokens, dtype_bytes, attention)
    if gradient_checkpointing:
        activations = shape.layers * dtype_bytes * shape.hidden * tokens + per_layer
    else:
        activations = shape.layers * per_layer
    logits = tokens * shape.vocab * (dtype_bytes + 4 + 4)  # logits, float32 upcast, its gradient
    return Budget(
        attention=attention,
        gradient_checkpointing=gradient_checkpointing,
        weights_gib=p * dtype_bytes / GIB,
        gradients_gib=p * dtype_bytes / GIB,
        optimizer_gib=state / GIB,
        optimizer_step_gib=step / GIB,
        activations_gib=activations / GIB,
        logits_gib=logits / GIB,
        overhead_gib=OVERHEAD_GIB,
    )


def memory_plan(
    shape: ModelShape,
    training: Mapping[str, Any],
    *,
    gpu_memory_bytes: float | None,
    gpu_name: str | None = None,
    bf16: bool = True,
) -> dict[str, Any]:
    """Every (attention, gradient checkpointing) combination's budget, and the configured one."""
    seq_len = int(training.get("max_seq_length", 1280))
    micro = int(training.get("per_device_train_batch_size", 1))
    optim = str(training.get("optim", "adafactor"))
    configured_gc = bool(training.get("gradient_checkpointing", False))
    attention = str(training.get("attention", "auto"))
    configured_attention = "flash_attention_2" if attention == "auto" else attention
    rows = []
    for attn in ("flash_attention_2", "sdpa", "eager"):
        for gc in (False, True):
            b = budget(shape, seq_len=seq_len, micro_batch=micro, bf16=bf16, optim=optim, attention=attn,
                       gradient_checkpointing=gc)
            row = {**asdict(b), "total_gib": b.total_gib,
                   "configured": attn == configured_attention and gc == configured_gc}
            if gpu_memory_bytes is not None:
                row["fits"] = b.total_gib * GIB <= gpu_memory_bytes
            rows.append(row)
    return {
        "model": asdict(shape),
        "settings": {"max_seq_length": seq_len, "per_device_train_batch_size": micro, "optim": optim,
                     "dtype": "bf16" if bf16 else "fp32", "gradient_checkpointing": configured_gc,
                     "attention": configured_attention},
        "gpu": {"name": gpu_name, "memory_gib": gpu_memory_bytes / GIB if gpu_memory_bytes else None},
        "budgets": rows,
    }


def format_plan(plan: Mapping[str, Any], source: str) -> str:
    m, s, gpu = plan["model"], plan["settings"], plan["gpu"]
    lines = [
        f"model: {m['model_type']}, {m['parameters'] / 1e9:.2f}B parameters "
        f"({m['layers']} layers, hidden {m['hidden']}, MLP {m['intermediate']}, {m['heads']} heads / "
        f"{m['kv_heads']} kv, vocab {m['vocab']}); config: {source}",
        f"training: {s['dtype']} weights and gradients, {s['optim']}, micro-batch "
        f"{s['per_device_train_batch_size']} x {s['max_seq_length']} tokens; FSDP would wrap "
        f"{', '.join(m['no_split_modules']) or '(no _no_split_modules)'}",
        "",
        "| attention | grad. ckpt | weights | grads | optimizer | opt. step | activations | logits | overhead | total GiB |"
        + (" fits |" if gpu["memory_gib"] else ""),
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|" + ("---|" if gpu["memory_gib"] else ""),
    ]
    for r in plan["budgets"]:
        mark = " (configured)" if r["configured"] else ""
        cells = [f"{r[k]:.1f}" for k in ("weights_gib", "gradients_gib", "optimizer_gib", "optimizer_step_gib",
                                         "activations_gib", "logits_gib", "overhead_gib", "total_gib")]
        row = f"| {r['attention']}{mark} | {'on' if r['gradient_checkpointing'] else 'off'} | " + " | ".join(cells) + " |"
        if gpu["memory_gib"]:
            row += f" {'yes' if r['fits'] else 'NO'} |"
        lines.append(row)
    if gpu["memory_gib"]:
        configured = next(r for r in plan["budgets"] if r["configured"])
        verdict = "fits" if configured["fits"] else "does NOT fit"
        lines += ["", f"configured run: {configured['total_gib']:.1f} GiB, {verdict} in "
                  f"{gpu['memory_gib']:.0f} GiB{' (' + gpu['name'] + ')' if gpu['name'] else ''}"]
    return "\n".join(lines)
