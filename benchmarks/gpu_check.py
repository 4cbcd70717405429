"""The paper's GPU claims, checked in one command (under 8 minutes on an H100/H200):

    python benchmarks/gpu_check.py --out gpu_check.json            # on the GPU machine
    python benchmarks/gpu_check.py --shape tiny --out check.json   # anywhere (CPU): the same code, tiny shapes

a. StarCoder2-15B-shaped training, the release's settings: its config (selfalign's packaged copy,
   or the Hub's), random init in bf16 on the GPU, transformers' Adafactor (lr 1e-5,
   ``scale_parameter=False, relative_step=False``, as the Trainer builds it for
   ``optim: adafactor``), micro-batch 1 x 1280 tokens, accumulation 2, no gradient
   checkpointing, a few optimizer steps: peak ``torch.cuda.max_memory_allocated`` against 80 GiB
   (an A100 80GB), tokens/s, and MFU against the GPU's dense bf16 peak (6 x parameters x
   tokens/s / peak), beside ``selfalign train --plan``'s budget for the same settings.
b. Determinism: a ~1B StarCoder2-shaped model trained twice for the same steps with the
   workflow's settings (``transformers.set_seed(seed, deterministic=True)``, which is what
   ``full_determinism`` does): are the weights byte-identical (sha256 of every tensor)?
c. Batch variance: greedy generation with transformers for 20 HumanEval+ prompts, batch 1 vs
   batch 16 (left-padded): how many completions differ.

Writes every figure to ``--out`` (JSON) and prints a summary. The figures go in
benchmarks/README.md with the machine.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))
# Only the architecture is needed: the packaged config unless HF_HUB_OFFLINE=0 asks the Hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
HUMANEVAL = REPO.parent / "shared" / "data" / "evalplus" / "HumanEvalPlus-v0.1.9.jsonl.gz"
GIB = 1024**3

#: Dense bf16 peak FLOP/s (NVIDIA's datasheets, without sparsity), by a substring of the name.
BF16_PEAK = {"H200": 989e12, "H100": 989e12, "A100": 312e12, "L40S": 362e12, "A10": 125e12}

#: Shapes: the real ones, and tiny ones for a CPU run (the test).
SHAPES: dict[str, dict[str, dict[str, Any]]] = {
    "full": {
        "large": {},  # StarCoder2-15B's own config
        "small": {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 20,
                  "num_attention_heads": 16, "num_key_value_heads": 2},  # ~1.1B
        "run": {"seq_len": 1280, "accumulation": 2, "steps": 3, "det_steps": 3, "prompts": 20, "batch": 16,
                "new_tokens": 128},
    },
    "tiny": {
        "large": {"hidden_size": 64, "intermediate_size": 256, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2},
        "small": {"hidden_size": 32, "intermediate_size": 128, "num_hidden_layers": 2,
                  "num_attention_heads": 4, "num_key_value_heads": 2},
        "run": {"seq_len": 64, "accumulation": 2, "steps": 2, "det_steps": 2, "prompts": 4, "batch": 4,
                "new_tokens": 8},
    },
}


def sc2_config(overrides: dict[str, Any]) -> Any:
    from selfalign.training.plan import load_model_config

    config, source = load_model_config("bigcode/starcoder2-15b", None)
    for key, value in overrides.items():
        setattr(config, key, value)
    config.residual_dropout = config.embedding_dropout = config.attention_dropout = 0.0  # training.dropout
    config._source = source
    return config


def batches(tokenizer_vocab: int, seq_len: int, n: int, seed: int) -> list[Any]:
    """Real-length token sequences: HumanEval+ prompts and solutions as bytes mod vocab (the
    model is random; only the shapes matter), padded or cut to ``seq_len``."""
    import torch

    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        texts = [t["prompt"] + t["canonical_solution"] for t in map(json.loads, handle)]
    stream = [b % tokenizer_vocab for text in texts for b in text.encode()]
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        start = int(torch.randint(0, max(1, len(stream) - seq_len), (1,), generator=g))
        ids = torch.tensor(stream[start:start + seq_len], dtype=torch.long)
        out.append(ids[None, :])
    return out


def train_steps(config: Any, device: str, dtype: Any, seq_len: int, accumulation: int, steps: int,
                seed: int = 42) -> tuple[Any, dict[str, Any]]:
    """``steps`` optimizer steps of the release's training loop; returns the model and figures."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM
    from transformers.optimization import Adafactor

    transformers.set_seed(seed, deterministic=True)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa")
    model.train()
    optimizer = Adafactor(model.parameters(), lr=1e-5, scale_parameter=False, relative_step=False,
                          warmup_init=False)
    data = batches(config.vocab_size, seq_len, steps * accumulation, seed)
    if device == "cuda":
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    losses = []
    started = time.perf_counter()
    for step in range(steps):
        for micro in range(accumulation):
            ids = data[step * accumulation + micro].to(device)
            loss = model(input_ids=ids, labels=ids).loss / accumulation  # micro-batch mean, averaged
            loss.backward()
            losses.append(loss.item() * accumulation)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    if device == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - started
    tokens = steps * accumulation * seq_len
    figures: dict[str, Any] = {
        "steps": steps, "accumulation": accumulation, "seq_len": seq_len, "tokens": tokens,
        "seconds": round(seconds, 3), "tokens_per_s": round(tokens / seconds, 1),
        "parameters": sum(p.numel() for p in model.parameters()), "losses": [round(x, 4) for x in losses],
    }
    if device == "cuda":
        figures["peak_allocated_gib"] = round(torch.cuda.max_memory_allocated() / GIB, 2)
    return model, figures


def weights_digest(model: Any) -> str:
    import torch

    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        digest.update(name.encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def check_training(shape: dict[str, Any], device: str, dtype: Any, gpu_name: str | None) -> dict[str, Any]:
    from selfalign.training.plan import memory_plan, model_shape

    config = sc2_config(shape["large"])
    run = shape["run"]
    model, figures = train_steps(config, device, dtype, run["seq_len"], run["accumulation"], run["steps"])
    del model
    plan = memory_plan(model_shape(config), {"max_seq_length": run["seq_len"], "optim": "adafactor",
                                             "attention": "sdpa"}, gpu_memory_bytes=80 * GIB)
    planned = next(r for r in plan["budgets"] if r["configured"])
    figures["planned_gib"] = round(planned["total_gib"], 2)
    figures["config"] = config._source
    if "peak_allocated_gib" in figures:
        figures["fits_80_gib"] = figures["peak_allocated_gib"] <= 80
    peak = next((v for k, v in BF16_PEAK.items() if gpu_name and k in gpu_name), None)
    if peak:
        figures["mfu"] = round(6 * figures["parameters"] * figures["tokens_per_s"] / peak, 4)
    return figures


def check_determinism(shape: dict[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    import torch

    config = sc2_config(shape["small"])
    run = shape["run"]
    digests = []
    for _ in range(2):
        model, figures = train_steps(config, device, dtype, run["seq_len"], run["accumulation"], run["det_steps"])
        digests.append(weights_digest(model))
        del model
        if device == "cuda":
            torch.cuda.empty_cache()
    return {"parameters": figures["parameters"], "steps": run["det_steps"], "digests": digests,
            "identical": digests[0] == digests[1]}


def check_batch_variance(shape: dict[str, Any], device: str, dtype: Any) -> dict[str, Any]:
    """Greedy completions of the same prompts one at a time and ``batch`` at a time."""
    import torch
    import transformers
    from transformers import AutoModelForCausalLM

    run = shape["run"]
    config = sc2_config(shape["small"])
    transformers.set_seed(0, deterministic=True)
    with torch.device(device):
        model = AutoModelForCausalLM.from_config(config, dtype=dtype, attn_implementation="sdpa").eval()
    with gzip.open(HUMANEVAL, "rt", encoding="utf-8") as handle:
        prompts = [t["prompt"] for t in map(json.loads, handle)][: run["prompts"]]
    encoded = [[b % config.vocab_size for b in p.encode()][-256:] for p in prompts]
    pad = 0

    def generate(group: list[list[int]]) -> list[list[int]]:
        width = max(map(len, group))
        ids = torch.tensor([[pad] * (width - len(g)) + g for g in group], device=device)
        mask = torch.tensor([[0] * (width - len(g)) + [1] * len(g) for g in group], device=device)
        with torch.no_grad():
            out = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=run["new_tokens"],
                                 do_sample=False, pad_token_id=pad, eos_token_id=None)
        return [row[width:].tolist() for row in out]

    one = [generate([e])[0] for e in encoded]
    batched: list[list[int]] = []
    for start in range(0, len(encoded), run["batch"]):
        batched += generate(encoded[start:start + run["batch"]])
    differ = sum(a != b for a, b in zip(one, batched, strict=True))
    return {"prompts": len(prompts), "batch": run["batch"], "new_tokens": run["new_tokens"],
            "differ": differ, "identical": len(prompts) - differ}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--shape", choices=sorted(SHAPES), default="full")
    parser.add_argument("--device", choices=["auto", "cuda", "cpu"], default="auto")
    parser.add_argument("--only", nargs="+", choices=["training", "determinism", "batch_variance"],
                        default=["training", "determinism", "batch_variance"])
    parser.add_argument("--out", default=None, help="write the figures here (JSON)")
    args = parser.parse_args(argv)

    import torch

    device = ("cuda" if torch.cuda.is_available() else "cpu") if args.device == "auto" else args.device
    dtype = torch.bfloat16 if device == "cuda" else torch.float32
    gpu_name = torch.cuda.get_device_name() if device == "cuda" else None
    shape = SHAPES[args.shape]
    report: dict[str, Any] = {"shape": args.shape, "device": device, "gpu": gpu_name, "dtype": str(dtype),
                              "torch": torch.__version__, "cuda": torch.version.cuda,
                              "transformers": __import__("transformers").__version__}
    started = time.perf_counter()
    for name, check in (("training", check_training), ("determinism", check_determinism),
                        ("batch_variance", check_batch_variance)):
        if name not in args.only:
            continue
        t = time.perf_counter()
        report[name] = check(shape, device, dtype, gpu_name) if name == "training" else check(shape, device, dtype)
        report[name]["wall_s"] = round(time.perf_counter() - t, 1)
        print(f"{name}: {json.dumps({k: v for k, v in report[name].items() if k not in ('losses', 'digests')})}",
              flush=True)
        if device == "cuda":
            torch.cuda.empty_cache()
    report["wall_s"] = round(time.perf_counter() - started, 1)
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
