"""The tiny base model: deterministic bytes, resume after a kill, loading, generating, round trips.

Every build here uses real text (stdlib functions with docstrings and the upstream few-shot file)
and a model small enough that a build takes a second or two, so the properties the tiny profile
relies on are checked on the real code path rather than on mocks.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import subprocess
import sys
import sysconfig
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from conftest import REPO, shared_data, stdlib_functions
from transformers import AutoModelForCausalLM, AutoTokenizer

from selfalign.records import RecordError, sha256_file, write_jsonl
from selfalign.tinymodel import (
    EOS_TOKEN,
    LOG_FILE,
    SPECIAL_TOKENS,
    STATE_FILE,
    TinyModelParams,
    build_tiny_model,
    load_tiny_model,
    main,
    partial_dir,
    read_documents,
    train_tokenizer,
)

#: A model of a few tens of thousands of weights: a build is dominated by imports, not training.
SMALL: dict[str, Any] = {
    "vocab_size": 400,
    "hidden_size": 32,
    "num_layers": 2,
    "num_heads": 4,
    "num_kv_heads": 2,
    "intermediate_size": 64,
    "seq_len": 32,
    "steps": 24,
    "batch_size": 4,
    "lr": 0.01,
    "warmup": 2,
    "checkpoint_every": 8,
    "text_repeat": 2,
    "threads": 1,
}
COMPARED = ("config.json", "generation_config.json", "model.safetensors") + (
    "tokenizer.json",
    "tokenizer_config.json",
)


class Interrupted(Exception):
    """Stands in for a kill at a chosen step."""


def _interrupt_at(step: int) -> Any:
    def hook(done: int) -> None:
        if done == step:
            raise Interrupted(done)

    return hook


def _files(directory: Path) -> dict[str, bytes]:
    return {name: (directory / name).read_bytes() for name in COMPARED}


@pytest.fixture(scope="session")
def fewshot() -> Path:
    path = shared_data() / "upstream" / "self-ossinstruct-fewshot.txt"
    if not path.is_file():
        pytest.fail(f"{path} is missing: set SELFALIGN_SHARED_DATA to the shared data folder")
    return path


@pytest.fixture(scope="module")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Real stdlib functions, plus one whitespace-only record the build must drop and count."""
    path = tmp_path_factory.mktemp("corpus") / "seeds.jsonl"
    records = stdlib_functions()
    records.insert(3, {"id": "blank", "content": "  \n"})
    write_jsonl(path, records)
    return path


@pytest.fixture(scope="module")
def reference(corpus: Path, fewshot: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("reference") / "tiny"
    stats = build_tiny_model([corpus], [fewshot], out, TinyModelParams.from_dict(SMALL))
    assert stats.drops == {"empty_content": 1}
    assert stats.n_in == stats.n_out + 1
    return out


# ---------------------------------------------------------------------------------- params


def test_params_refuse_unknown_keys_by_name() -> None:
    with pytest.raises(ValueError, match="hiden_size, stepz"):
        TinyModelParams.from_dict({"hiden_size": 64, "stepz": 3})


@pytest.mark.parametrize(
    "bad, message",
    [
        ({"steps": 10, "epochs": 1.0}, "exactly one of steps"),
        ({"steps": 0}, "exactly one of steps"),
        ({"hidden_size": 30, "num_heads": 4}, "multiple of num_heads"),
        ({"num_heads": 8, "num_kv_heads": 3}, "multiple of num_kv_heads"),
        ({"vocab_size": 100}, "vocab_size must be >="),
        ({"seq_len": 9000}, "seq_len must be <= max_position_embeddings"),
        ({"threads": True}, "threads must be a positive integer"),
    ],
)
def test_params_validate(bad: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TinyModelParams.from_dict(bad)


# ------------------------------------------------------------------------------ determinism


def test_two_builds_are_byte_identical(
    reference: Path, corpus: Path, fewshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The second build goes through the CLI, so the entry point is the code path checked too."""
    out = tmp_path / "again"
    code = main(
        ["--corpus", str(corpus), "--text", str(fewshot), "--out", str(out)]
        + ["--params", json.dumps(SMALL), "--quiet"]
    )
    assert code == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["extra"]["files"]["model.safetensors"] == sha256_file(out / "model.safetensors")
    assert _files(out) == _files(reference)
    first = json.loads((reference / LOG_FILE).read_text())
    second = json.loads((out / LOG_FILE).read_text())
    assert first["loss"] == second["loss"]
    assert first["files"] == second["files"]


def test_resume_after_interrupt_gives_the_same_bytes(
    reference: Path, corpus: Path, fewshot: Path, tmp_path: Path
) -> None:
    out = tmp_path / "resumed"
    params = TinyModelParams.from_dict(SMALL)
    with pytest.raises(Interrupted):
        build_tiny_model([corpus], [fewshot], out, params, step_hook=_interrupt_at(19))
    assert not out.exists(), "an interrupted build must not leave a final directory"
    assert (partial_dir(out) / STATE_FILE).is_file()
    assert (partial_dir(out) / "tokenizer" / "tokenizer.json").is_file()

    stats = build_tiny_model([corpus], [fewshot], out, params)
    assert stats.extra["resumed_from_step"] == 16
    assert not partial_dir(out).exists()
    assert _files(out) == _files(reference)
    assert (
        json.loads((out / LOG_FILE).read_text())["loss"]
        == json.loads((reference / LOG_FILE).read_text())["loss"]
    )


def test_resume_after_sigkill_gives_the_same_bytes(
    corpus: Path, fewshot: Path, tmp_path: Path
) -> None:
    """A real SIGKILL of the CLI in another process, then the same build resumed here."""
    params = dict(SMALL, steps=100, checkpoint_every=5, seed=7)
    killed = tmp_path / "killed"
    env = dict(os.environ, PYTHONPATH=str(REPO / "src"), SELFALIGN_NO_PROGRESS="1")
    command = [sys.executable, "-m", "selfalign.tinymodel", "--corpus", str(corpus)]
    command += ["--text", str(fewshot), "--out", str(killed), "--params", json.dumps(params)]
    proc = subprocess.Popen(
        command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, start_new_session=True
    )
    state = partial_dir(killed) / STATE_FILE
    try:
        deadline = time.monotonic() + 60
        while not state.exists() and proc.poll() is None and time.monotonic() < deadline:
            time.sleep(0.02)
        assert proc.poll() is None, "the build ended before it could be killed"
        assert state.exists(), "no checkpoint within 60 s"
        proc.send_signal(signal.SIGKILL)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    assert not killed.exists()

    typed = TinyModelParams.from_dict(params)
    resumed = build_tiny_model([corpus], [fewshot], killed, typed)
    assert resumed.extra["resumed_from_step"] is not None
    assert 0 < resumed.extra["resumed_from_step"] < 100
    straight = tmp_path / "straight"
    build_tiny_model([corpus], [fewshot], straight, typed)
    assert _files(killed) == _files(straight)


def test_changed_params_discard_a_stale_partial(
    corpus: Path, fewshot: Path, tmp_path: Path
) -> None:
    out = tmp_path / "model"
    with pytest.raises(Interrupted):
        build_tiny_model(
            [corpus], [fewshot], out, TinyModelParams.from_dict(SMALL), step_hook=_interrupt_at(9)
        )
    other = TinyModelParams.from_dict(dict(SMALL, seed=11, steps=9))
    stats = build_tiny_model([corpus], [fewshot], out, other)
    assert stats.extra["resumed_from_step"] is None
    assert json.loads((out / LOG_FILE).read_text())["params"]["seed"] == 11


# ------------------------------------------------------------------------------- the model


def test_saved_directory_loads_and_generates(reference: Path, fewshot: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(reference))
    model = AutoModelForCausalLM.from_pretrained(str(reference))
    assert model.config.model_type == "starcoder2"
    assert type(model).__name__ == "Starcoder2ForCausalLM"
    assert tokenizer.eos_token == tokenizer.bos_token == tokenizer.pad_token == EOS_TOKEN
    assert tokenizer.convert_tokens_to_ids(list(SPECIAL_TOKENS)) == list(range(len(SPECIAL_TOKENS)))
    assert model.config.eos_token_id == model.generation_config.eos_token_id == 0

    loaded = load_tiny_model(reference)
    # Longer than the training blocks and the attention window, as few-shot prompts are.
    prompt = fewshot.read_text(encoding="utf-8")[:1500]
    ids = loaded.tokenizer(prompt, return_tensors="pt")["input_ids"]
    assert ids.shape[1] > 3 * SMALL["seq_len"]
    with torch.inference_mode():
        generated = loaded.model.generate(ids, max_new_tokens=8, min_new_tokens=8, do_sample=False)
    assert generated.shape[1] == ids.shape[1] + 8
    assert torch.equal(generated[0, : ids.shape[1]], ids[0])


def test_tokenizer_round_trips_python_source_exactly(reference: Path) -> None:
    tokenizer = AutoTokenizer.from_pretrained(str(reference))
    stdlib = Path(sysconfig.get_paths()["stdlib"])
    texts = [(stdlib / name).read_text(encoding="utf-8") for name in ("textwrap.py", "ast.py")]
    texts += [record["content"] for record in stdlib_functions(("shlex", "tokenize"))]
    texts += [
        "def f(x):\r\n\treturn  x\t+ 1   \n\n\n",
        "s = 'héllo wörld ✓ 🚀 中文'  # non-ASCII and astral\n",
        "x = '<|endoftext|>'<fim_prefix>\n",
        " leading space, trailing spaces   ",
        "0123456789 3.14159e-10 0xFF_FF",
        "\x00\x7f\x1b[0m",
    ]
    for text in texts:
        ids = tokenizer(text, add_special_tokens=True)["input_ids"]
        assert tokenizer.decode(ids, skip_special_tokens=False) == text
    plain = tokenizer("def f(): pass")["input_ids"]
    assert tokenizer.eos_token_id not in plain, "no bos/eos added, as with StarCoder2"


def test_training_loss_decreases(reference: Path) -> None:
    log = json.loads((reference / LOG_FILE).read_text())
    losses = log["loss"]
    assert len(losses) == SMALL["steps"]
    assert sum(losses[-4:]) / 4 < losses[0] - 0.5, losses


def test_training_log_hashes_inputs_and_outputs(
    reference: Path, corpus: Path, fewshot: Path
) -> None:
    log = json.loads((reference / LOG_FILE).read_text())
    assert [item["sha256"] for item in log["inputs"]] == [sha256_file(corpus), sha256_file(fewshot)]
    saved = sorted(p.name for p in reference.iterdir() if p.name != LOG_FILE)
    assert sorted(log["files"]) == saved
    for name, digest in log["files"].items():
        assert sha256_file(reference / name) == digest
    model = AutoModelForCausalLM.from_pretrained(str(reference))
    assert log["param_count"] == sum(p.numel() for p in model.parameters())
    assert log["tokens_seen"] == SMALL["steps"] * SMALL["batch_size"] * SMALL["seq_len"]
    assert log["versions"]["torch"] == torch.__version__
    # Nothing of one run's circumstances (times, resumption) in the artifact: reruns give its bytes.
    assert not {"wall_s", "cpu_s", "resumed_from_step"} & set(log)


# ----------------------------------------------------------------------------------- inputs


def test_bad_corpus_line_names_file_and_line(
    fewshot: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = tmp_path / "broken.jsonl"
    broken.write_text(
        '{"content": "def f(a):\\n    return a\\n"}\n{"content": "x"\n', encoding="utf-8"
    )
    with pytest.raises(RecordError) as info:
        build_tiny_model([broken], [fewshot], tmp_path / "out", TinyModelParams.from_dict(SMALL))
    assert info.value.path == str(broken) and info.value.line == 2

    missing = tmp_path / "missing.jsonl"
    missing.write_text('{"content": "a"}\n{"text": "b"}\n', encoding="utf-8")
    with pytest.raises(RecordError, match=r"missing\.jsonl:2: field 'content'"):
        read_documents([missing], [])

    code = main(["--corpus", str(broken), "--out", str(tmp_path / "cli"), "--quiet"])
    assert code == 2
    assert f"{broken}:2:" in capsys.readouterr().err
    assert not (tmp_path / "out").exists() and not (tmp_path / "cli").exists()


# ------------------------------------------------------------------------------ the context


def _upstream_prompts(fewshot_text: str, seeds: list[str], shots: int = 8) -> list[str]:
    """8-shot S->C and C->I completion prompts laid out as upstream's ``Fewshot.random_prompt``.

    Written out here (rather than imported) so this check of the model's context does not move
    with the generation stage's code.
    """
    content = fewshot_text.strip()
    parts = re.split(r"### Example \d+", content)
    systems = re.split(r"### System: I->R|### System: C->I|### System: S->C", parts[0].strip())
    sys_c_i, sys_s_c = systems[2].strip(), systems[3].strip()
    section = r"\[Code\]\n|\[Property\]\n|\[Instruction\]\n|\[Solution\]\n|\[Response\]\n"
    examples = []
    for body in parts[1:]:
        _, snippet, prop, instruction, _, _ = re.split(section, body.strip())
        concepts = prop.strip().split("\n")[2].split(":", 1)[1].strip()
        examples.append((snippet.rstrip(), prop.strip(), concepts, instruction.strip()))
    prompts = []
    for index, seed in enumerate(seeds):
        rng = random.Random(3407 + index)
        chosen = rng.sample(examples, k=shots)
        body = "\n\n".join(
            f"## Example {n}\n### Snippet\n{ex[0]}\n\n### Concepts\n{ex[2]}"
            for n, ex in enumerate(chosen, start=1)
        )
        query = f"## Example {shots + 1}\n### Snippet\n{seed}\n\n### Concepts\n"
        prompts.append(f"{sys_s_c}\n\n{body}\n\n{query}".rstrip())
        body = "\n\n".join(
            f"## Example {n}\n### Property\n{ex[1]}\n\n### Instruction\n{ex[3]}"
            for n, ex in enumerate(chosen, start=1)
        )
        prompts.append(f"{sys_c_i}\n\n{body}\n\n## Example {shots + 1}\n### Property\n".rstrip())
    return prompts


def test_default_context_holds_an_8_shot_prompt_and_its_completion(fewshot: Path) -> None:
    """Upstream asks for 1,536 new tokens after an 8-shot prompt; the server refuses more than
    ``max_position_embeddings`` in all, so the default context must hold both."""
    defaults = TinyModelParams()
    seeds = [record["content"] for record in stdlib_functions()]
    fewshot_text = fewshot.read_text(encoding="utf-8")
    tokenizer = train_tokenizer(seeds + [fewshot_text], defaults.vocab_size, 8192)
    lengths = [len(tokenizer(p)["input_ids"]) for p in _upstream_prompts(fewshot_text, seeds[:40])]
    assert max(lengths) + 1536 <= defaults.max_position_embeddings, max(lengths)


def test_a_build_under_another_cpu_request_gives_the_same_bytes(
    corpus: Path, fewshot: Path, tmp_path: Path
) -> None:
    """What the e2e's killed-and-resumed run asks of the tiny model stage, proven here at a small
    shape: a caller whose environment asks for this CPU's own kernels (AVX-512 where there is
    one, oneMKL's AUTO branch, oneDNN unbounded) and whose oneMKL answers as the other vendor's
    CPU, run the way the workflow runs every job (its portable variables over the caller's,
    the fixed-order BLAS first in LD_PRELOAD): the same bytes as a plain portable build."""
    from workflow_utils import mkl_vendor_preload

    from selfalign.determinism import MODE_ENV, PORTABLE_CPU_ENV, cpu_kernel_env

    other = "non_intel" if "GenuineIntel" in Path("/proc/cpuinfo").read_text() else "intel"
    clean = {k: v for k, v in os.environ.items() if k not in (*PORTABLE_CPU_ENV, MODE_ENV, "LD_PRELOAD")}
    caller = {**clean, "ATEN_CPU_CAPABILITY": "avx512", "MKL_CBWR": "AUTO", "ONEDNN_MAX_CPU_ISA": "ALL",
              "LD_PRELOAD": mkl_vendor_preload(tmp_path, other)}
    runs = {"plain": {**clean, **cpu_kernel_env("portable")},
            "asked-native": {**caller, **cpu_kernel_env("portable", caller["LD_PRELOAD"])}}
    params = json.dumps({**SMALL, "hidden_size": 64, "intermediate_size": 256, "seq_len": 64, "steps": 6,
                         "threads": 2})
    for name, environ in runs.items():
        done = subprocess.run([sys.executable, "-m", "selfalign.tinymodel", "--corpus", str(corpus), "--text",
                               str(fewshot), "--out", str(tmp_path / name), "--params", params, "--quiet"],
                              env=environ, capture_output=True, text=True, timeout=300)
        assert done.returncode == 0, done.stderr[-3000:]
    # (both ran under SELFALIGN_CPU_KERNELS=portable, so a build without the fixed BLAS had stopped)
    assert _files(tmp_path / "plain") == _files(tmp_path / "asked-native")
