"""Benchmark the fine-tuning path (selfalign.training.train) against a plain PyTorch loop.

    python benchmarks/training.py [--size tiny|small] [--examples 64] [--seq 256]
                                  [--accumulation 4] [--device auto|cpu|cuda]

Both sides train the same randomly initialised StarCoder2 (``tiny``: the tiny profile's 3.8M
parameters; ``small``: 8 layers of 1024, ~150M) for one epoch on the same examples, with the
same Adafactor settings transformers' ``optim="adafactor"`` uses, and report trained tokens per
second and peak memory:

* ours: :func:`selfalign.training.train.train` end to end: a ``transformers.Trainer`` with
  upstream's arguments, response-only labels, resumable checkpoints (``save_steps`` larger than
  the run, so none is written), the finished model directory assembled and hashed;
* baseline: the same model, batches and optimizer in a bare ``for`` loop (forward, backward,
  Adafactor step every ``--accumulation`` examples), nothing saved.

The ratio ours / baseline is the Trainer path's overhead. On a GPU both sides use bf16 and the
attention ``selfalign.training.train.resolve_hardware`` picks (flash-attention 2 when
installed, else SDPA): this is the GPU check of the bf16 + flash-attention training step.
Examples: instructions of 20 words and responses of ``--seq`` minus the prompt, from the
model's own tokenizer trained on them, so every example has exactly ``--seq`` tokens.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import torch

from selfalign.records import write_jsonl
from selfalign.tinymodel import TinyModelParams, model_config, train_tokenizer
from selfalign.training.data import Encoded, collate, encode_example
from selfalign.training.train import TrainParams, resolve_hardware, train

SIZES = {
    "tiny": TinyModelParams(),
    "small": TinyModelParams(hidden_size=1024, intermediate_size=4096, num_layers=8, num_heads=16, num_kv_heads=4),
}


def _records(n: int) -> list[dict[str, str]]:
    words = "return value list index sort merge parse token string number".split()
    return [
        {
            "id": f"r{i}",
            "instruction": " ".join(words[(i + k) % len(words)] for k in range(20)),
            "response": "```python\n" + "\n".join(f"x{i}_{k} = {k} * {i}" for k in range(400)) + "\n```",
        }
        for i in range(n)
    ]


def _peak_memory_mb(device: str) -> float:
    if device == "cuda":
        return torch.cuda.max_memory_allocated() / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _baseline(model_dir: Path, examples: list[Encoded], params: TrainParams, device: str) -> dict[str, Any]:
    from transformers import AutoModelForCausalLM
    from transformers.optimization import Adafactor

    hardware = resolve_hardware(params)
    model = AutoModelForCausalLM.from_pretrained(
        model_dir,
        dtype=torch.bfloat16 if hardware.bf16 else torch.float32,
        attn_implementation=hardware.attention,
    ).to(device)  # type: ignore[arg-type]
    model.train()
    # what TrainingArguments(optim="adafactor") builds
    optimizer = Adafactor(model.parameters(), lr=params.learning_rate, scale_parameter=False, relative_step=False)
    if device == "cuda":
        torch.cuda.reset_peak_memory_stats()
        torch.cuda.synchronize()
    started = time.perf_counter()
    tokens = 0
    for start in range(0, len(examples), params.gradient_accumulation_steps):
        group = examples[start : start + params.gradient_accumulation_steps]
        for example in group:
            batch = {k: v.to(device) for k, v in collate([example], 0).items()}
            loss = model(**batch).loss / len(group)
            loss.backward()
            tokens += len(example.input_ids)
        optimizer.step()
        optimizer.zero_grad()
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    return {"tokens": tokens, "seconds": seconds, "peak_mb": _peak_memory_mb(device)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", choices=sorted(SIZES), default="tiny")
    parser.add_argument("--examples", type=int, default=64)
    parser.add_argument("--seq", type=int, default=256)
    parser.add_argument("--accumulation", type=int, default=4)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeat", type=int, default=2, help="runs per side, alternating; the best counts")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = "cuda" if torch.cuda.is_available() else "cpu"

    with tempfile.TemporaryDirectory(prefix="selfalign-bench-train-") as tmp:
        root = Path(tmp)
        records = _records(args.examples)
        tokenizer = train_tokenizer([r["instruction"] + r["response"] for r in records], 2048, 4096)
        torch.manual_seed(0)
        from transformers import Starcoder2ForCausalLM

        model = Starcoder2ForCausalLM(model_config(SIZES[args.size], len(tokenizer), tokenizer.eos_token_id))
        n_params = sum(p.numel() for p in model.parameters())
        model.save_pretrained(root / "base")
        tokenizer.save_pretrained(root / "base")
        write_jsonl(root / "sft.jsonl", records)
        params = TrainParams(
            num_train_epochs=1,
            gradient_accumulation_steps=args.accumulation,
            max_seq_length=args.seq,
            save_steps=10**6,
            logging_steps=10**6,
            threads=args.threads,
        )
        examples = [encode_example(tokenizer, r["instruction"], r["response"], args.seq) for r in records]
        hardware = resolve_hardware(params)
        print(f"{args.size}: {n_params / 1e6:.1f}M parameters, {len(examples)} examples x {args.seq} tokens, "
              f"accumulation {args.accumulation}, {device}, bf16={hardware.bf16}, attention={hardware.attention}")

        tokens = sum(len(e.input_ids) for e in examples)
        bases, ours_runs = [], []
        for run in range(args.repeat):
            # alternate which side goes first, so warm-up and machine noise hit both
            for side in (("baseline", "ours") if run % 2 == 0 else ("ours", "baseline")):
                if side == "baseline":
                    bases.append(_baseline(root / "base", examples, params, device))
                    continue
                if device == "cuda":
                    torch.cuda.reset_peak_memory_stats()
                started = time.perf_counter()
                stats = train(root / "sft.jsonl", str(root / "base"), root / f"checkpoint-{run}", params,
                              show_progress=False)
                if device == "cuda":
                    torch.cuda.synchronize()
                ours_runs.append({"tokens": tokens, "seconds": time.perf_counter() - started,
                                  "peak_mb": _peak_memory_mb(device), "steps": stats.extra["final_step"]})
        base = min(bases, key=lambda r: r["seconds"])
        ours = min(ours_runs, key=lambda r: r["seconds"])

    rate = {name: r["tokens"] / r["seconds"] for name, r in (("ours", ours), ("baseline", base))}
    print(f"best of {args.repeat} runs per side")
    print(f"baseline (plain loop): {rate['baseline']:,.0f} tokens/s, peak {base['peak_mb']:,.0f} MiB")
    print(f"ours (Trainer path, end to end incl. load and save): {rate['ours']:,.0f} tokens/s, "
          f"peak {ours['peak_mb']:,.0f} MiB, {ours['steps']} optimizer steps")
    print(f"ratio ours / baseline: {rate['ours'] / rate['baseline']:.2f}")
    print(json.dumps({"size": args.size, "device": device, "bf16": hardware.bf16, "attention": hardware.attention,
                      "ours": ours, "baseline": base}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
