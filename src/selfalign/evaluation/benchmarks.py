"""The benchmark registry: every benchmark the workflow knows, in one table.

A :class:`Benchmark` names how its tasks are loaded (a pinned release), how a prompt is built
from a task, how a completion becomes a program, how that program is judged, and the figures
published for it. The rules (which eval targets exist), generation, scoring, the CLI's
choices and the report read this table; adding a benchmark is a row here plus the functions
its row names (README, "Architecture: add a benchmark").

Hooks are ``"module:function"`` strings, imported when called, so reading the table imports
no benchmark's code (the Snakefile reads it on every dry run).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from ..records import JsonObj

Family = Literal["evalplus", "humanevalpack", "livecodebench"]


@dataclass(frozen=True)
class Published:
    """A published figure: pass@1 in percent for ``model`` on one part of a benchmark."""

    model: str
    part: str  # "base", "plus", or the task kind
    pass_at_1: float
    source: str


@dataclass(frozen=True)
class Benchmark:
    """One benchmark (one task file of one language, for a multi-language suite)."""

    key: str  # what rules, file names and --dataset use
    label: str
    family: Family
    versions: tuple[str, ...]  # the pinned releases; the first is the default (the paper's)
    loader: str  # "module:function"
    prompt: str
    postprocess: str
    checker: str
    parts: tuple[str, ...] = ("base",)  # what a task's verdict has (EvalPlus: base and plus)
    published: tuple[Published, ...] = ()
    language: str = "python"
    version_param: str | None = None  # the ``evaluation:`` config key that picks the release
    tags: Mapping[str, str] = field(default_factory=dict)

    @property
    def default_version(self) -> str:
        return self.versions[0]

    def hook(self, name: Literal["loader", "prompt", "postprocess", "checker"]) -> Callable[..., Any]:
        """The function a hook names, imported now."""
        module, _, attribute = str(getattr(self, name)).partition(":")
        function: Callable[..., Any] = getattr(importlib.import_module(module), attribute)
        return function

    def paper(self, model: str = "StarCoder2-15B-Instruct-v0.1") -> dict[str, float]:
        """``part -> pass@1`` published for ``model``."""
        return {p.part: p.pass_at_1 for p in self.published if p.model == model}


@dataclass(frozen=True)
class Tasks:
    """A pinned release's tasks: where they came from and what they are."""

    dataset: str
    version: str
    path: Path
    sha256: str
    tasks: list[JsonObj]

    @property
    def ids(self) -> list[str]:
        return [t["task_id"] for t in self.tasks]


def load_evalplus_tasks(
    dataset: str, version: str | None = None, mirrors: Sequence[str | os.PathLike[str]] = (),
    cache_dir: str | os.PathLike[str] = "~/.cache/selfalign/benchmarks",
) -> Tasks:
    """Every task of an EvalPlus release (default: the paper's), fetched by pinned sha256."""
    from ..benchdata import evalplus_release, read_gzip_jsonl
    from ..fetch import fetch_pinned

    version = version or benchmark(dataset).default_version
    url, sha256 = evalplus_release(dataset, version)
    path = fetch_pinned(url, sha256, mirrors=mirrors, cache_dir=Path(cache_dir).expanduser())
    return Tasks(dataset, version, path, sha256, read_gzip_jsonl(path))


#: The pinned EvalPlus releases: ``(dataset, version) -> (url, sha256 of the .jsonl.gz)``, the
#: hashes those of the release assets (also in the shared data folder's ``SHA256SUMS``); a
#: dataset's first is its default (the paper's).
EVALPLUS_RELEASES: dict[tuple[str, str], tuple[str, str]] = {
    ("humaneval", "v0.1.9"): (
        "https://github.com/evalplus/humanevalplus_release/releases/download/"
        "v0.1.9/HumanEvalPlus-v0.1.9.jsonl.gz",
        "e62f4130146963d969da64553f407a66e52d095adbfed4ee6733b4d59e14a3ed",
    ),
    ("humaneval", "v0.1.10"): (
        "https://github.com/evalplus/humanevalplus_release/releases/download/"
        "v0.1.10/HumanEvalPlus-v0.1.10.jsonl.gz",
        "272720b90ac375502c8ed23cd791c2a93dfb22a911641a494da74a426c09f101",
    ),
    ("mbpp", "v0.1.0"): (
        "https://github.com/evalplus/mbppplus_release/releases/download/"
        "v0.1.0/MbppPlus-v0.1.0.jsonl.gz",
        "57d639e77667d88930052b2b07212011c25c0bab94dfc1f19d15e1f7f558bfa9",
    ),
    ("mbpp", "v0.2.0"): (
        "https://github.com/evalplus/mbppplus_release/releases/download/"
        "v0.2.0/MbppPlus-v0.2.0.jsonl.gz",
        "af43697e8791c4c149bdfd6b489d8b5412507551ac20e28a439f650b8225db63",
    ),
}


def _versions(dataset: str) -> tuple[str, ...]:
    return tuple(v for d, v in EVALPLUS_RELEASES if d == dataset)


_CARD = "StarCoder2-15B-Instruct-v0.1 model card (bigcode/starcoder2-15b-instruct-v0.1)"

def _evalplus(key: str, label: str, base: float, plus: float) -> Benchmark:
    """An EvalPlus benchmark: its pinned releases, the EvalPlus loader, prompt, post-processing
    and sandboxed checker, and the model card's pass@1 (base and plus)."""
    card = "StarCoder2-15B-Instruct-v0.1"
    return Benchmark(
        key, label, "evalplus", _versions(key),
        loader="selfalign.evaluation.benchmarks:load_evalplus_tasks",
        prompt="selfalign.evaluation.prompts:eval_prompt",
        postprocess="selfalign.evaluation.generate:sample_record",
        checker="selfalign.evaluation.score:score_task",
        parts=("base", "plus"),
        published=(Published(card, "base", base, _CARD), Published(card, "plus", plus, _CARD)),
        version_param=f"{key}_version",
    )


_EVALPLUS: tuple[Benchmark, ...] = (
    _evalplus("humaneval", "HumanEval+", 72.6, 63.4),
    _evalplus("mbpp", "MBPP+", 75.2, 61.2),
)


_OCTOCODER_CARD = "bigcode/octocoder model card (model-index)"
_OCTOPACK_FIGURE = "OctoPack paper Figure 1 data (bigcode-project/octopack e17a8f6, visuals/plots.ipynb)"

#: OctoCoder's published pass@1 by (task kind, language); ``avg`` is the six-language mean. Where
#: each was read: the model card's ``model-index`` (HumanEvalSynthesize per language; the octopack
#: README's 46.2 for Python is the same figure), and the data of the OctoPack paper's Figure 1
#: (the Fix and Explain averages; the paper's Fix is the tests variant). The paper's per-language
#: Fix and Explain figures (its Table 2) could not be read from here and are not guessed.
OCTOCODER: Mapping[tuple[str, str], Published] = {
    (kind, language): Published("OctoCoder", kind, value, source)
    for kind, language, value, source in (
        ("synthesize", "python", 46.2, _OCTOCODER_CARD),
        ("synthesize", "js", 39.2, _OCTOCODER_CARD),
        ("synthesize", "java", 38.2, _OCTOCODER_CARD),
        ("synthesize", "go", 30.4, _OCTOCODER_CARD),
        ("synthesize", "cpp", 35.6, _OCTOCODER_CARD),
        ("synthesize", "rust", 23.4, _OCTOCODER_CARD),
        ("synthesize", "avg", 35.5, _OCTOCODER_CARD),
        ("fixtests", "avg", 27.0, _OCTOPACK_FIGURE),
        ("explainsynthesize", "avg", 24.5, _OCTOPACK_FIGURE),
    )
}


def _humanevalpack() -> tuple[Benchmark, ...]:
    """HumanEvalPack: each task kind in each language, named as the evaluation harness names
    them (``humaneval<kind>-<language>``), from the pinned OctoPack files (``octopack:``), with
    OctoCoder's published pass@1 where it was read."""
    from ..octopack.humanevalpack import LANGUAGES, TASKS

    return tuple(
        Benchmark(
            f"humaneval{kind}-{language}", f"HumanEval{kind.capitalize()} ({language})", "humanevalpack",
            ("e17a8f6",),  # the octopack commit its files are pinned at (config octopack.commit)
            loader="selfalign.octopack.humanevalpack:load_tasks",
            prompt="selfalign.octopack.humanevalpack:build_prompt",
            postprocess="selfalign.octopack.humanevalpack:postprocess",
            checker="selfalign.octopack.humanevalpack:check_program",
            published=tuple(p for p in (OCTOCODER.get((kind, language)),) if p is not None),
            language=language,
            tags={"kind": kind},
        )
        for kind in TASKS
        for language in LANGUAGES
    )


def _lcb(scenario: str, version: str, loader: str, prompt: str, postprocess: str, checker: str,
         card: float) -> Benchmark:
    """One LiveCodeBench scenario's row; hooks are ``module:function`` under selfalign.livecodebench."""
    return Benchmark(f"lcb-{scenario}", f"LiveCodeBench ({TITLES[scenario]})", "livecodebench", (version,),
                     loader=f"selfalign.livecodebench.{loader}", prompt=f"selfalign.livecodebench.{prompt}",
                     postprocess=f"selfalign.livecodebench.{postprocess}",
                     checker=f"selfalign.livecodebench.{checker}",
                     published=(Published("StarCoder2-15B-Instruct-v0.1", "base", card, _CARD),),
                     tags={"scenario": scenario})


TITLES = {"codegeneration": "code generation", "selfrepair": "self repair",
          "testoutputprediction": "test output prediction", "codeexecution": "code execution"}
#: LiveCodeBench's four scenarios (``selfalign.livecodebench``), keyed ``lcb-<scenario>`` as the
#: rules name them, each with the dataset commit it is pinned at (config ``livecodebench``) and
#: the model card's pass@1 (figures made with LiveCodeBench's own runner, April 2024).
_LIVECODEBENCH = (
    _lcb("codegeneration", "356356a", "codegen:load_problems", "codegen:build_prompt", "codegen:extract_code",
         "codegen:grading_program", 20.4),
    _lcb("selfrepair", "356356a", "codegen:load_problems", "selfrepair:repair_prompt", "codegen:extract_code",
         "codegen:grading_program", 20.9),
    _lcb("testoutputprediction", "6f3ac40", "prediction:load_test_output", "prediction:test_output_prompt",
         "prediction:extract_test_output", "prediction:test_output_program", 29.8),
    _lcb("codeexecution", "e3bbac6", "prediction:load_execution", "prediction:execution_prompt",
         "prediction:extract_execution", "prediction:execution_program", 28.1),
)


def _table() -> dict[str, Benchmark]:
    rows = (*_EVALPLUS, *_humanevalpack(), *_LIVECODEBENCH)
    table = {b.key: b for b in rows}
    if len(table) != len(rows):
        raise AssertionError("two benchmarks share a key")
    return table


BENCHMARKS: Mapping[str, Benchmark] = _table()

#: The EvalPlus benchmarks, in the order the rules, the table and the report list them.
EVALPLUS: tuple[str, ...] = tuple(b.key for b in BENCHMARKS.values() if b.family == "evalplus")


def benchmark(key: str) -> Benchmark:
    try:
        return BENCHMARKS[key]
    except KeyError:
        families = sorted({b.family for b in BENCHMARKS.values()})
        raise ValueError(
            f"unknown benchmark {key!r}; EvalPlus: {', '.join(EVALPLUS)}; families: {', '.join(families)}"
        ) from None


def keys(family: Family) -> tuple[str, ...]:
    """The benchmarks of one family, in registry order."""
    return tuple(b.key for b in BENCHMARKS.values() if b.family == family)


def paper_pass_at_1(model: str = "StarCoder2-15B-Instruct-v0.1") -> dict[str, tuple[float, float]]:
    """``dataset -> (base, plus)`` pass@1 published for ``model`` on the EvalPlus benchmarks."""
    out = {}
    for key in EVALPLUS:
        figures = BENCHMARKS[key].paper(model)
        if figures:
            out[key] = (figures["base"], figures["plus"])
    return out
