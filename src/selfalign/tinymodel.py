"""The tiny profile's own base model: a byte-level BPE tokenizer and a small StarCoder2 on CPU.

Why this exists: the tiny profile must push real records through every later stage (LLM judge,
S->C / C->I / I->R generation through a completions server, fine-tuning, evaluation) on a 2-core
laptop with no network, so nothing can come from the Hugging Face Hub. This module builds a base
model from the seed functions and the few-shot prompt file(s) in a few minutes, with the same
architecture (``Starcoder2ForCausalLM``) and the same special tokens as StarCoder2, so every stage
exercises the code paths it uses in the paper profile.

Determinism is part of the contract: two builds from the same inputs and parameters produce
byte-identical ``model.safetensors`` and tokenizer files, and a build killed part way resumes from
``<out>.partial/`` to the same bytes as an uninterrupted one. What makes that hold:

* tokenizer training runs single-threaded (``TOKENIZERS_PARALLELISM=false`` while it trains);
  BPE merges break count ties by pair, so the merge list does not depend on hash order;
* the model is initialised right after ``torch.manual_seed(seed)``; there is no dropout, so
  training draws no random numbers; the data order is a pure function of ``(seed, epoch)``;
* ``torch.use_deterministic_algorithms(True)`` and a fixed ``torch.set_num_threads`` (a different
  thread count may split reductions differently, so ``threads`` is part of the parameters);
* the learning rate is a pure function of the step, so the schedule's state is the step number;
* a checkpoint holds the exact fp32 weights and optimizer moments, so training continues on the
  same numbers it would have had;
* safetensors writes tensors in name order with fixed metadata; JSON files are written by
  ``transformers`` with fixed key order, and our own JSON with ``sort_keys``.

Byte identity is promised on one machine and software stack; another CPU (other SIMD kernels) or
another torch version may round differently, which is why the versions go into the training log.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, NamedTuple

from .config import check_params
from .records import (
    RecordError,
    fingerprint,
    iter_jsonl,
    sha256_file,
    usual_permissions,
    write_json,
)
from .runtime import StageStats, progress_bar

log = logging.getLogger(__name__)

#: StarCoder2's special tokens in StarCoder2's id order: ``<|endoftext|>`` is id 0 and serves as
#: bos, eos, pad and unk, as there. Keeping them all means prompts written for StarCoder2 (the LLM
#: judge's ``<issue_start>``/``<issue_comment>`` format, FIM sentinels) tokenize the same way.
SPECIAL_TOKENS: tuple[str, ...] = (
    "<|endoftext|>",
    "<fim_prefix>",
    "<fim_middle>",
    "<fim_suffix>",
    "<fim_pad>",
    "<repo_name>",
    "<file_sep>",
    "<issue_start>",
    "<issue_comment>",
    "<issue_closed>",
    "<jupyter_start>",
    "<jupyter_text>",
    "<jupyter_code>",
    "<jupyter_output>",
    "<jupyter_script>",
    "<empty_output>",
    "<code_to_intermediate>",
    "<intermediate_to_code>",
    "<pr>",
    "<pr_status>",
    "<pr_is_merged>",
    "<pr_base>",
    "<pr_file>",
    "<pr_base_code>",
    "<pr_diff>",
    "<pr_diff_hunk>",
    "<pr_comment>",
    "<pr_event_id>",
    "<pr_review>",
    "<pr_review_state>",
    "<pr_review_comment>",
    "<pr_in_reply_to_review_id>",
    "<pr_in_reply_to_comment_id>",
    "<pr_diff_hunk_comment_line>",
    "<NAME>",
    "<EMAIL>",
    "<KEY>",
    "<PASSWORD>",
)
EOS_TOKEN = SPECIAL_TOKENS[0]

#: Bumped when the checkpoint or log layout changes, so an old ``.partial`` is not resumed.
FORMAT_VERSION = 1
TOKENIZER_FILES: tuple[str, ...] = ("tokenizer.json", "tokenizer_config.json")
STATE_FILE = "state.pt"
LOG_FILE = "training_log.json"


# ---------------------------------------------------------------------------------- parameters


@dataclass
class TinyModelParams:
    """How the tiny base model is built; the defaults are the tiny profile's.

    The defaults were measured to build in about 3-4 minutes on 2 CPU cores from ~650 KB of seed
    functions plus the upstream few-shot file, with the loss falling from ~8.3 to ~2.5.

    * ``max_position_embeddings`` is the context the completions server grants: an 8-shot S->C
      prompt from the upstream few-shot file is up to ~2,750 tokens with a 4,096-token vocabulary,
      and requests ask for 1,536 new tokens on top, so 4,096 is too small; 8,192 costs nothing
      (rotary positions have no weights).
    * ``seq_len`` is the training block length, kept short because attention and activations
      dominate CPU time. ``sliding_window`` (``None``: equal to ``seq_len``) limits attention at
      inference to the distances seen in training, so a 3,000-token few-shot prompt looks to the
      model like the text it learned from instead of like positions it never saw. Set it to
      ``max_position_embeddings`` for plain full attention.
    * ``steps`` > 0 fixes the number of optimizer steps; otherwise ``epochs`` (passes over the
      packed blocks) decides it.
    * ``text_repeat``: how often each text file (the few-shot prompts) appears in the training
      stream; one copy is a small share next to hundreds of functions, and the ``## Example``
      layout it teaches is what the generation stages stop on.
    * ``threads`` is part of the result: a different count may round differently.
    * ``checkpoint_every``: steps between resumable checkpoints in ``<out>.partial/``.
    """

    vocab_size: int = 4096
    hidden_size: int = 256
    num_layers: int = 4
    num_heads: int = 8
    num_kv_heads: int = 2
    intermediate_size: int = 1024
    max_position_embeddings: int = 8192
    sliding_window: int | None = None
    rope_theta: float = 10000.0
    seq_len: int = 256
    steps: int = 200
    epochs: float = 0.0
    batch_size: int = 16
    lr: float = 2e-3
    min_lr_ratio: float = 0.1
    warmup: int = 20
    weight_decay: float = 0.1
    grad_clip: float = 1.0
    text_repeat: int = 4
    seed: int = 3407
    threads: int = 2
    checkpoint_every: int = 25

    def __post_init__(self) -> None:
        """The rules between fields (each field's type and bounds are the config schema's,
        checked by :meth:`from_dict`)."""
        if (self.steps > 0) == (self.epochs > 0):
            raise ValueError(
                "tinymodel: give exactly one of steps > 0 or epochs > 0 "
                f"(got steps={self.steps}, epochs={self.epochs})"
            )
        minimum_vocab = 256 + len(SPECIAL_TOKENS)
        if self.vocab_size < minimum_vocab:
            raise ValueError(
                f"tinymodel.vocab_size must be >= {minimum_vocab} "
                "(256 byte symbols plus StarCoder2's special tokens)"
            )
        if self.hidden_size % self.num_heads:
            raise ValueError("tinymodel.hidden_size must be a multiple of num_heads")
        if (self.hidden_size // self.num_heads) % 2:
            raise ValueError("tinymodel: hidden_size / num_heads must be even (rotary embeddings)")
        if self.num_heads % self.num_kv_heads:
            raise ValueError("tinymodel.num_heads must be a multiple of num_kv_heads")
        if self.seq_len > self.max_position_embeddings:
            raise ValueError("tinymodel.seq_len must be <= max_position_embeddings")

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TinyModelParams:
        """Build from a config section, refusing unknown keys so a typo is not silently ignored."""
        check_params(cls, data, "tinymodel")  # types and bounds: the schema's
        return cls(**dict(data))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def attention_window(self) -> int:
        """The sliding window the model is saved with (``None`` in the params means ``seq_len``)."""
        return self.seq_len if self.sliding_window is None else self.sliding_window


class TinyModel(NamedTuple):
    model: Any
    tokenizer: Any


# ------------------------------------------------------------------------------------- inputs


@dataclass
class Documents:
    """The training documents: seed functions in file and line order, then the text files."""

    corpus: list[str]
    texts: list[str]
    n_in: int
    drops: Counter[str]
    inputs: list[dict[str, str]]

    def all(self) -> list[str]:
        return self.corpus + self.texts


def read_documents(corpus_files: Sequence[Path], text_files: Sequence[Path]) -> Documents:
    """Seed functions (``content`` of each JSONL record) and text files, with their hashes.

    Corpus lines are read strictly, so a bad line stops the build with its file and line. A
    record whose content is only whitespace teaches nothing and is dropped, counted by reason.
    Text files are used verbatim (they are prompt layouts: every byte of whitespace matters).
    """
    docs = Documents([], [], 0, Counter(), [])
    for path in corpus_files:
        docs.inputs.append({"kind": "corpus", "path": str(path), "sha256": sha256_file(path)})
        for _, record in iter_jsonl(path, {"content": str}):
            docs.n_in += 1
            if record["content"].strip():
                docs.corpus.append(record["content"])
            else:
                docs.drops["empty_content"] += 1
    for path in text_files:
        docs.inputs.append({"kind": "text", "path": str(path), "sha256": sha256_file(path)})
        docs.n_in += 1
        try:
            text = Path(path).read_bytes().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise RecordError(path, 1, f"not UTF-8 ({exc.reason} at byte {exc.start})") from None
        if text.strip():
            docs.texts.append(text)
        else:
            docs.drops["empty_text_file"] += 1
    return docs


# ---------------------------------------------------------------------------------- tokenizer


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    """Set an environment variable for a block and put back what was there."""
    previous = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous


def train_tokenizer(texts: Sequence[str], vocab_size: int, model_max_length: int) -> Any:
    """A StarCoder2-style byte-level BPE tokenizer trained on ``texts``, wrapped for transformers.

    Like StarCoder2's: digits split one by one, GPT-2 byte-level pre-tokenization without a
    prefix space, no normalizer and no added bos/eos, so ``decode(encode(s)) == s`` for every
    string (the execution filter and the evaluation depend on code surviving a round trip).
    ``clean_up_tokenization_spaces`` is off for the same reason.
    """
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tokenizer = Tokenizer(models.BPE())
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Digits(individual_digits=True),
            pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
        ]
    )
    tokenizer.decoder = decoders.ByteLevel()
    tokenizer.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        min_frequency=2,
        special_tokens=list(SPECIAL_TOKENS),
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    # One thread: merge ties are already broken deterministically, but a single thread leaves
    # nothing to scheduling at all, and the corpus is small enough that it costs < 1 s.
    with _env("TOKENIZERS_PARALLELISM", "false"):
        tokenizer.train_from_iterator(list(texts), trainer=trainer, length=len(texts))
    return PreTrainedTokenizerFast(
        tokenizer_object=tokenizer,
        bos_token=EOS_TOKEN,
        eos_token=EOS_TOKEN,
        unk_token=EOS_TOKEN,
        pad_token=EOS_TOKEN,
        additional_special_tokens=list(SPECIAL_TOKENS[1:]),
        clean_up_tokenization_spaces=False,
        model_max_length=model_max_length,
    )


def _load_tokenizer(path: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(path))


# ------------------------------------------------------------------------------------- model


def model_config(params: TinyModelParams, vocab_size: int, eos_id: int) -> Any:
    """The ``Starcoder2Config`` for these params: StarCoder2's architecture with dropout off."""
    from transformers import Starcoder2Config

    return Starcoder2Config(
        vocab_size=vocab_size,
        hidden_size=params.hidden_size,
        intermediate_size=params.intermediate_size,
        num_hidden_layers=params.num_layers,
        num_attention_heads=params.num_heads,
        num_key_value_heads=params.num_kv_heads,
        hidden_act="gelu_pytorch_tanh",
        max_position_embeddings=params.max_position_embeddings,
        initializer_range=0.02,
        norm_epsilon=1e-5,
        use_cache=True,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=eos_id,
        rope_parameters={"rope_type": "default", "rope_theta": float(params.rope_theta)},
        sliding_window=params.attention_window,
        attention_dropout=0.0,
        residual_dropout=0.0,
        embedding_dropout=0.0,
        use_bias=True,
        tie_word_embeddings=True,
    )


def lr_at(step: int, total: int, params: TinyModelParams) -> float:
    """Linear warmup to ``lr`` then cosine decay to ``lr * min_lr_ratio``; a pure function of step.

    Being stateless is what lets a resumed run use exactly the rates of an uninterrupted one.
    """
    if step < params.warmup:
        return params.lr * (step + 1) / params.warmup
    span = max(1, total - params.warmup)
    progress = min(1.0, (step - params.warmup) / span)
    cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
    return params.lr * (params.min_lr_ratio + (1.0 - params.min_lr_ratio) * cosine)


class _Batches:
    """Training blocks in a seeded order: block stream position ``p`` lies in epoch ``p // n``.

    Each epoch is its own permutation drawn from a generator seeded with ``(seed, epoch)``, and a
    step's batch is positions ``[step * b, (step + 1) * b)`` of the endless stream, so any step's
    batch can be produced without replaying the steps before it.
    """

    def __init__(self, blocks: Any, batch_size: int, seed: int):
        self.blocks = blocks
        self.batch_size = batch_size
        self.seed = seed
        self._orders: dict[int, list[int]] = {}

    def _order(self, epoch: int) -> list[int]:
        import torch

        if epoch not in self._orders:
            generator = torch.Generator().manual_seed(self.seed * 1_000_003 + epoch + 1)
            self._orders[epoch] = torch.randperm(len(self.blocks), generator=generator).tolist()
        return self._orders[epoch]

    def batch(self, step: int) -> Any:
        n = len(self.blocks)
        start = step * self.batch_size
        rows = [self._order(p // n)[p % n] for p in range(start, start + self.batch_size)]
        return self.blocks[rows]


# ------------------------------------------------------------------------------------ driver


@contextmanager
def _torch_settings(threads: int) -> Iterator[None]:
    """Deterministic kernels and a fixed thread count for the build, restored afterwards.

    Restoring matters because the build may run inside a longer-lived process (tests, a CLI
    that does more), whose other work should not inherit these global switches.
    """
    import torch

    from .determinism import check_cpu_kernels

    check_cpu_kernels()
    previous_threads = torch.get_num_threads()
    previous_deterministic = torch.are_deterministic_algorithms_enabled()
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(previous_deterministic)
        torch.set_num_threads(previous_threads)


def _versions() -> dict[str, str]:
    import tokenizers
    import torch
    import transformers

    return {
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "tokenizers": tokenizers.__version__,
    }


def partial_dir(out_dir: Path) -> Path:
    """Where an interrupted build keeps its checkpoint: ``<out>.partial`` beside the output."""
    return out_dir.parent / f"{out_dir.name}.partial"


def _save_state(path: Path, state: dict[str, Any]) -> None:
    """``torch.save`` to a temp file renamed into place: a kill never leaves half a checkpoint."""
    import torch

    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            torch.save(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def _prepare_partial(partial: Path, fingerprint_value: str) -> None:
    """Keep a ``.partial`` only if it was made from the same inputs, params and library versions."""
    marker = partial / "fingerprint.json"
    if partial.exists():
        try:
            previous = json.loads(marker.read_text(encoding="utf-8"))["fingerprint"]
        except (OSError, ValueError, KeyError):
            previous = None
        if previous != fingerprint_value:
            log.info("discarding %s: made from other inputs or params", partial)
            shutil.rmtree(partial)
    partial.mkdir(parents=True, exist_ok=True)
    if not marker.exists():
        write_json(marker, {"fingerprint": fingerprint_value})


def _tokenizer_in_partial(partial: Path, texts: Sequence[str], params: TinyModelParams) -> Any:
    """The build's tokenizer: trained once and kept in the partial dir so a resume reuses it."""
    saved = partial / "tokenizer"
    if saved.is_dir() and all((saved / name).is_file() for name in TOKENIZER_FILES):
        return _load_tokenizer(saved)
    tokenizer = train_tokenizer(texts, params.vocab_size, params.max_position_embeddings)
    staging = Path(tempfile.mkdtemp(prefix=".tokenizer.", dir=partial))
    tokenizer.save_pretrained(str(staging))
    if saved.exists():
        shutil.rmtree(saved)
    os.replace(staging, saved)
    # Reload what was written, so an uninterrupted build and a resumed one use the same object.
    return _load_tokenizer(saved)


def _pack(tokenizer: Any, texts: Sequence[str], params: TinyModelParams) -> tuple[Any, int]:
    """Concatenate the documents, each followed by ``<|endoftext|>``, into ``seq_len`` blocks.

    Text files come ``text_repeat`` times (they follow the corpus in ``texts``). The tail shorter
    than one block is left out; returns the blocks and the total token count before cutting.
    """
    import torch

    eos = int(tokenizer.eos_token_id)
    # The backend directly: the wrapper warns about documents longer than the model's context,
    # which is expected here (they are cut into blocks below).
    encodings = tokenizer.backend_tokenizer.encode_batch(list(texts), add_special_tokens=False)
    encoded = [encoding.ids for encoding in encodings]
    stream: list[int] = []
    for ids in encoded:
        stream.extend(ids)
        stream.append(eos)
    n_blocks = len(stream) // params.seq_len
    if n_blocks < 1:
        raise ValueError(
            f"tinymodel: the training text is {len(stream)} tokens, less than one block of "
            f"seq_len={params.seq_len}: give more corpus or a shorter seq_len"
        )
    blocks = torch.tensor(stream[: n_blocks * params.seq_len], dtype=torch.long)
    return blocks.view(n_blocks, params.seq_len), len(stream)


def build_tiny_model(
    corpus_files: Sequence[Path],
    text_files: Sequence[Path],
    out_dir: Path,
    params: TinyModelParams | None = None,
    *,
    show_progress: bool = True,
    step_hook: Callable[[int], None] | None = None,
) -> StageStats:
    """Train the tokenizer and the model and write them to ``out_dir``; resumable, deterministic.

    ``out_dir`` appears only when complete: it is assembled in a temporary directory beside it
    and renamed into place. Until then, ``<out_dir>.partial/`` holds the tokenizer and, every
    ``checkpoint_every`` steps, the model, optimizer, step, losses and RNG state; rerunning the
    same build after a kill resumes there and finishes with the same bytes.

    ``step_hook(step)`` is called after each completed optimizer step (and its checkpoint); tests
    use it to interrupt a build at a chosen point.

    Returns the stage's counts: documents in, documents trained on, drops by reason, and in
    ``extra`` the numbers of the training log (loss start/end, tokens, time, sizes).
    """
    params = params or TinyModelParams()
    started, cpu_started = time.monotonic(), time.process_time()
    out_dir = Path(out_dir)
    if not corpus_files and not text_files:
        raise ValueError("tinymodel: no corpus or text files to train on")
    docs = read_documents([Path(p) for p in corpus_files], [Path(p) for p in text_files])
    if not docs.all():
        raise ValueError("tinymodel: every input document is empty")
    versions = _versions()
    partial = partial_dir(out_dir)
    _prepare_partial(
        partial,
        fingerprint(
            {
                "format": FORMAT_VERSION,
                "params": params.to_dict(),
                "inputs": [(item["kind"], item["sha256"]) for item in docs.inputs],
                "versions": versions,
            }
        ),
    )

    with _torch_settings(params.threads):
        tokenizer = _tokenizer_in_partial(partial, docs.all(), params)
        repeated = [text for text in docs.texts for _ in range(params.text_repeat)]
        blocks, n_tokens = _pack(tokenizer, docs.corpus + repeated, params)
        n_blocks = int(blocks.shape[0])
        total = params.steps or max(1, math.ceil(params.epochs * n_blocks / params.batch_size))
        model = _new_model(params, tokenizer)
        optimizer = _optimizer(model, params)
        step, losses = _restore(partial / STATE_FILE, model, optimizer)
        resumed_from = step if step else None
        n_params = sum(p.numel() for p in model.parameters())
        log.info(
            "tiny model: %d parameters, vocab %d, %d blocks of %d tokens, step %d of %d",
            n_params,
            len(tokenizer),
            n_blocks,
            params.seq_len,
            step,
            total,
        )
        batches = _Batches(blocks, params.batch_size, params.seed)
        bar = progress_bar(
            desc="train tiny model", total=total, unit="step", initial=step, enabled=show_progress
        )
        model.train()
        with bar:
            while step < total:
                lr = lr_at(step, total, params)
                losses.append(_train_step(model, optimizer, batches.batch(step), lr, params))
                step += 1
                bar.update(1)
                bar.set_postfix(loss=f"{losses[-1]:.3f}", refresh=False)
                if step % params.checkpoint_every == 0 and step < total:
                    log.info("step %d/%d loss %.4f: checkpoint", step, total, losses[-1])
                    _checkpoint(partial / STATE_FILE, model, optimizer, step, losses)
                if step_hook is not None:
                    step_hook(step)
        model.eval()
        log.info("trained %d steps: loss %.4f -> %.4f", total, losses[0], losses[-1])
        summary: dict[str, Any] = {
            "format": FORMAT_VERSION,
            "params": params.to_dict(),
            "inputs": docs.inputs,
            "versions": versions,
            "param_count": n_params,
            "vocab_size": len(tokenizer),
            "documents": {"corpus": len(docs.corpus), "text": len(docs.texts)},
            "tokens_total": n_tokens,
            "blocks": n_blocks,
            "steps": total,
            "tokens_seen": total * params.batch_size * params.seq_len,
            "epochs_seen": total * params.batch_size / n_blocks,
            "loss": losses,
            "loss_start": losses[0],
            "loss_end": sum(losses[-10:]) / len(losses[-10:]),
        }
        # How this particular run went (resumed or not, its times) goes to the sidecar only:
        # the model directory holds what the config determines, so a rerun gives its bytes.
        run_facts = {
            "resumed_from_step": resumed_from,
            "wall_s": round(time.monotonic() - started, 3),
            "cpu_s": round(time.process_time() - cpu_started, 3),
        }
        _write_output(out_dir, partial, model, summary)

    shutil.rmtree(partial, ignore_errors=True)
    skipped = ("format", "params", "inputs", "versions", "loss", "documents")
    extra = {key: value for key, value in summary.items() if key not in skipped} | run_facts
    return StageStats(n_in=docs.n_in, n_out=len(docs.all()), drops=docs.drops, extra=extra)


def _new_model(params: TinyModelParams, tokenizer: Any) -> Any:
    """A freshly initialised model: the weights depend only on ``params.seed`` and the config."""
    import torch
    from transformers import GenerationConfig, Starcoder2ForCausalLM

    torch.manual_seed(params.seed)
    config = model_config(params, len(tokenizer), int(tokenizer.eos_token_id))
    model = Starcoder2ForCausalLM(config)
    model.generation_config = GenerationConfig(
        bos_token_id=config.bos_token_id,
        eos_token_id=config.eos_token_id,
        pad_token_id=config.pad_token_id,
    )
    return model


def _restore(path: Path, model: Any, optimizer: Any) -> tuple[int, list[float]]:
    """Load a checkpoint into model and optimizer if there is one; returns (step, losses so far)."""
    import torch

    if not path.exists():
        return 0, []
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["torch_rng"])
    log.info("resuming from %s at step %d", path, state["step"])
    return int(state["step"]), [float(x) for x in state["losses"]]


def _optimizer(model: Any, params: TinyModelParams) -> Any:
    """AdamW with weight decay on matrices only (norms and biases are not decayed, as usual)."""
    import torch

    decay = [p for name, p in model.named_parameters() if p.ndim >= 2]
    no_decay = [p for name, p in model.named_parameters() if p.ndim < 2]
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": params.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=params.lr,
        betas=(0.9, 0.95),
        eps=1e-8,
        foreach=False,
    )


def _train_step(
    model: Any, optimizer: Any, batch: Any, lr: float, params: TinyModelParams
) -> float:
    import torch

    for group in optimizer.param_groups:
        group["lr"] = lr
    loss = model(input_ids=batch, labels=batch).loss
    loss.backward()
    if params.grad_clip > 0:
        torch.nn.utils.clip_grad_norm_(model.parameters(), params.grad_clip)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    return float(loss.detach())


def _checkpoint(path: Path, model: Any, optimizer: Any, step: int, losses: list[float]) -> None:
    import torch

    _save_state(
        path,
        {
            "format": FORMAT_VERSION,
            "step": step,
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "losses": list(losses),
            "torch_rng": torch.get_rng_state(),
        },
    )


def _write_output(out_dir: Path, partial: Path, model: Any, summary: dict[str, Any]) -> None:
    """Assemble model, tokenizer and log in a temp dir beside ``out_dir``, then rename it there.

    The tokenizer files are copied byte for byte from the partial dir (not re-saved), so the
    output holds exactly what training used. Each saved file's sha256 goes into the log.
    """
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".tmp", dir=out_dir.parent))
    try:
        model.save_pretrained(str(staging))
        for name in sorted(os.listdir(partial / "tokenizer")):
            shutil.copyfile(partial / "tokenizer" / name, staging / name)
        summary["files"] = {
            name: sha256_file(staging / name) for name in sorted(os.listdir(staging))
        }
        write_json(staging / LOG_FILE, summary)
        usual_permissions(staging)
        if out_dir.exists():
            old = Path(
                tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".old", dir=out_dir.parent)
            )
            os.replace(out_dir, old / out_dir.name)
            os.replace(staging, out_dir)
            shutil.rmtree(old)
        else:
            os.replace(staging, out_dir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def load_tiny_model(path: Path) -> TinyModel:
    """Load a built model directory the way later stages do, and check that its parts agree.

    A mismatch here (tokenizer larger than the embedding, eos ids that differ) would show up much
    later as garbage generations, so it is refused at load time instead.
    """
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(path))
    model = AutoModelForCausalLM.from_pretrained(str(path))
    model.eval()
    if len(tokenizer) > model.config.vocab_size:
        raise ValueError(
            f"{path}: tokenizer has {len(tokenizer)} tokens, model embeds {model.config.vocab_size}"
        )
    if tokenizer.eos_token_id != model.config.eos_token_id:
        raise ValueError(
            f"{path}: tokenizer eos id {tokenizer.eos_token_id} "
            f"!= model eos id {model.config.eos_token_id}"
        )
    if model.generation_config.eos_token_id != tokenizer.eos_token_id:
        raise ValueError(f"{path}: generation_config eos id differs from the tokenizer's")
    return TinyModel(model, tokenizer)


# ---------------------------------------------------------------------------------------- CLI


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m selfalign.tinymodel --corpus ... --text ... --out DIR --params JSON``."""
    from .config import ConfigError, parse_params

    parser = argparse.ArgumentParser(
        prog="python -m selfalign.tinymodel", description="Build the tiny profile's base model."
    )
    parser.add_argument(
        "--corpus", nargs="+", type=Path, default=[], help="seed JSONL files (field 'content')"
    )
    parser.add_argument(
        "--text",
        nargs="*",
        type=Path,
        default=[],
        help="text files used verbatim (few-shot prompts)",
    )
    parser.add_argument("--out", type=Path, required=True, help="output model directory")
    parser.add_argument("--params", default="{}", help="JSON object, or @file.json / @file.yaml")
    parser.add_argument("--summary", type=Path, help="also write the returned counts here as JSON")
    parser.add_argument("--quiet", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        params = TinyModelParams.from_dict(parse_params(args.params))
        stats = build_tiny_model(
            args.corpus, args.text, args.out, params, show_progress=not args.quiet
        )
    except (RecordError, ConfigError, ValueError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    result = stats.to_json()
    if args.summary:
        write_json(args.summary, result)
    print(json.dumps(result, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
