"""HumanEvalPack's three tasks in six languages: prompts, post-processing and test programs.

Reproduces what the bigcode-evaluation-harness does for OctoPack (``bigcode_eval/tasks/
humanevalpack.py`` at commit 8fc5bae6, the harness OctoPack's README points to), my own code:

* **prompts** (``get_prompt``): HumanEvalSynthesize gives the task's ``instruction`` and the
  ``prompt`` (signature with docstring) to continue; HumanEvalFix gives "Fix bugs in
  <entry_point>." with the buggy function (and, in the *tests* variant, its tests) as context
  and the declaration to continue (*docs* variant: the prompt with its docstring);
  HumanEvalExplain first asks for a description of at most ``len(docstring)`` characters
  (*describe*), then, in a second run, for code from that description alone (*synthesize*).
  Rust's declaration gets ``fn main(){}`` in front. Formats: ``octocoder`` ("Question: ...
  Answer:"), ``instruct`` (context, instruction, then the code), and ``sc2-instruct`` (the
  release's SC2 instruction template around the same input and code). Every prompt is
  ``.strip()``-ed, as the harness does.
* **post-processing** (``postprocess_generation``): the completion is cut at the first stop
  word, then at the end of the first closed function (``remove_last_block``; Python: the first
  unindented line), and put behind the prompt's code; descriptions are cut to the docstring's
  length with lines of the solution over 20 characters removed.
* **programs** (``process_results``): Python gets the harness's import helper in front, C++ its
  includes (and anything from ``int main`` on dropped), Java loses an empty ``Main`` class, Go
  gets the test setup and the imports the code uses, Rust ``fn main(){}`` and the declaration's
  ``use`` lines; then ``"\\n" + test``. A program passes when it compiles and exits 0.
"""

from __future__ import annotations

import gzip
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..prompt_template import SC2_INSTRUCT_PROMPT
from ..sandbox.languages import LANGUAGES as SANDBOX_LANGUAGES

LANGUAGES = ("python", "js", "java", "go", "cpp", "rust")
"""HumanEvalPack's six; each is a row of the sandbox's language table, which says how it runs."""
if not set(LANGUAGES) <= set(SANDBOX_LANGUAGES):
    raise AssertionError("a HumanEvalPack language is missing from selfalign.sandbox.languages")
LANGUAGE_NAME = {key: SANDBOX_LANGUAGES[key].name for key in LANGUAGES}
TASKS = ("synthesize", "fixtests", "fixdocs", "explaindescribe", "explainsynthesize")
"""HumanEvalPack task kinds, named as the harness's task names are (``humaneval<kind>-<lang>``)."""
FORMATS = ("octocoder", "instruct", "sc2-instruct")

STOP_WORDS: dict[str, tuple[str, ...]] = {
    "python": ("\nclass", "\ndef", "\n#", "\n@", "\nprint", "\nif", "\nassert"),
    "cpp": (),
    "js": (),
    "go": ("\n//", "\nfunc main(", "struct", "\nfunc"),
    "java": (),
    "rust": (),
}
"""The harness's ``LANGUAGE_TO_STOP_WORDS`` (from CodeGeeX); ``<|endoftext|>`` is added to all."""
END_OF_TEXT = "<|endoftext|>"

TIMEOUT_S = {key: SANDBOX_LANGUAGES[key].timeout_s for key in LANGUAGES}
"""Per program, compile and run together (see :data:`selfalign.sandbox.languages.LANGUAGES`)."""

PYTHON_IMPORTS = (
    "import math", "import re", "import sys", "import copy", "import datetime",
    "import itertools", "import collections", "import heapq", "import statistics",
    "import functools", "import hashlib", "import numpy", "import numpy as np", "import string",
    "from typing import *", "from collections import *",
)  # fmt: skip
GO_IMPORTS = (
    "math", "strings", "fmt", "strconv", "time", "bytes", "regexp", "sort", "math/rand",
    "crypto/md5",
)  # fmt: skip
CPP_IMPORTS = (
    "using namespace std;", "#include<stdlib.h>", "#include<algorithm>", "#include<cmath>",
    "#include<math.h>", "#include<numeric>", "#include<stdio.h>", "#include<vector>",
    "#include<set>", "#include<map>", "#include<queue>", "#include<stack>", "#include<list>",
    "#include<deque>", "#include<boost/any.hpp>", "#include<string>", "#include<climits>",
    "#include<cstring>", "#include<iostream>", "#include<sstream>", "#include<fstream>",
)  # fmt: skip
"""The harness's ``IMPORT_HELPER`` lists (from CodeGeeX), prepended as it does."""

FIELDS = ("task_id", "prompt", "declaration", "canonical_solution", "buggy_solution", "test",
          "entry_point", "instruction", "docstring")  # fmt: skip


class TaskError(ValueError):
    """A HumanEvalPack file or record is malformed (file, line and field in the message)."""


@dataclass(frozen=True)
class Task:
    """One HumanEvalPack task in one language."""

    language: str
    fields: Mapping[str, str]

    @property
    def task_id(self) -> str:
        return self.fields["task_id"]

    def __getitem__(self, name: str) -> str:
        return self.fields[name]


def load_tasks(path: str | Path, language: str, limit: int | None = None) -> list[Task]:
    """The tasks of one language's ``humanevalpack.jsonl`` (gzipped or not), in file order."""
    if language not in LANGUAGES:
        raise TaskError(f"unknown HumanEvalPack language {language!r}: expected one of {LANGUAGES}")
    path = Path(path)
    opener: Any = gzip.open if path.suffix == ".gz" else open
    need = FIELDS + (("import", "test_setup") if language == "go" else ())
    tasks: list[Task] = []
    with opener(path, "rt", encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise TaskError(f"{path}:{lineno}: not JSON ({exc})") from None
            for name in need:
                if not isinstance(row.get(name), str):
                    raise TaskError(f"{path}:{lineno}: field {name!r} missing or not a string")
            tasks.append(Task(language, {k: row[k] for k in need}))
            if limit is not None and len(tasks) >= limit:
                break
    if not tasks:
        raise TaskError(f"{path}: no tasks")
    return tasks


# -- prompts -----------------------------------------------------------------------------------


_FILE_NAME = re.compile(r"^humanevalpack-([a-z]+)\.jsonl(\.gz)?$")


def files_by_language(paths: Sequence[str | Path]) -> dict[str, Path]:
    """``language -> path`` of task files named ``humanevalpack-<language>.jsonl[.gz]`` (the
    names the workflow and the shared mirror give them), in LANGUAGES order."""
    found: dict[str, Path] = {}
    for raw in paths:
        path = Path(raw)
        match = _FILE_NAME.match(path.name)
        if not match or match.group(1) not in LANGUAGES:
            raise TaskError(f"{path}: not a HumanEvalPack task file name (humanevalpack-<language>.jsonl[.gz], "
                            f"language one of {', '.join(LANGUAGES)})")
        if match.group(1) in found:
            raise TaskError(f"{path}: a second file for {match.group(1)} (first: {found[match.group(1)]})")
        found[match.group(1)] = path
    return {lang: found[lang] for lang in LANGUAGES if lang in found}


def find_files(directory: str | Path, languages: Sequence[str]) -> dict[str, Path]:
    """Each language's task file in ``directory``: ``humanevalpack-<language>.jsonl``, else its
    ``.gz``; a missing one is an error naming both."""
    out: dict[str, Path] = {}
    for language in languages:
        if language not in LANGUAGES:
            raise TaskError(f"unknown HumanEvalPack language {language!r}: expected one of {LANGUAGES}")
        plain = Path(directory) / f"humanevalpack-{language}.jsonl"
        packed = plain.with_name(plain.name + ".gz")
        if not plain.is_file() and not packed.is_file():
            raise TaskError(f"no task file for {language}: neither {plain} nor {packed}")
        out[language] = plain if plain.is_file() else packed
    return out


def prompt_base(task: Task, with_docs: bool) -> str:
    """The code the model continues: the prompt (with docstring) or the bare declaration."""
    if with_docs:
        return task["prompt"]
    if task.language == "rust":
        return "fn main(){}\n" + task["declaration"]
    return task["declaration"]


def _wrap(fmt: str, base: str, instruction: str, context: str | None) -> str:
    """The harness's ``HumanEvalPack.get_prompt`` for our formats."""
    if context is None:
        inp = instruction
    elif fmt in ("instruct", "sc2-instruct"):
        inp = context + "\n" + instruction
    else:
        inp = instruction + "\n" + context
    if fmt == "octocoder":
        prompt = f"Question: {inp}\n\nAnswer:\n{base}"
    elif fmt == "instruct":
        prompt = inp + "\n\n" + base
    elif fmt == "sc2-instruct":
        prompt = SC2_INSTRUCT_PROMPT.format(instruction=inp, response=base)
    else:
        raise ValueError(f"unknown prompt format {fmt!r}: expected one of {FORMATS}")
    return prompt.strip()


def _describe_limit(task: Task) -> int:
    return len(task["docstring"])


def build_prompt(task: Task, kind: str, fmt: str = "octocoder", description: str | None = None) -> str:
    """The prompt for one task of ``kind`` (see ``TASKS``); ``description`` for explainsynthesize."""
    if kind == "synthesize":
        return _wrap(fmt, prompt_base(task, True), task["instruction"].strip(), None)
    if kind in ("fixtests", "fixdocs"):
        base = prompt_base(task, kind == "fixdocs")
        context = base + task["buggy_solution"]
        if kind == "fixtests":
            context += "\n" + task["test"]
        return _wrap(fmt, base, f"Fix bugs in {task['entry_point']}.", context)
    if kind == "explaindescribe":
        instruction = (
            "Provide a concise natural language description of the code using at most "
            f"{_describe_limit(task)} characters."
        )
        return _wrap(fmt, "", instruction, prompt_base(task, False) + task["canonical_solution"])
    if kind == "explainsynthesize":
        if description is None:
            raise ValueError("explainsynthesize needs the description written by explaindescribe")
        instruction = f"Write functional code in {LANGUAGE_NAME[task.language]} according to the description."
        return _wrap(fmt, prompt_base(task, False), instruction, description)
    raise ValueError(f"unknown HumanEvalPack task {kind!r}: expected one of {TASKS}")


def stop_words(language: str) -> tuple[str, ...]:
    """Where generation stops (the harness's stop words for the language, plus end of text)."""
    return (*STOP_WORDS[language], END_OF_TEXT)


# -- post-processing ---------------------------------------------------------------------------


def remove_last_block(code: str, language: str) -> str:
    """The harness's ``remove_last_block``: cut at a stop word, then after the first closed
    function (Python: before the first unindented line)."""
    for word in stop_words(language):
        if word in code:
            code = code[: code.find(word)]
    if language == "python":
        lines = code.split("\n")
        for i, line in enumerate(lines):
            if line.strip() and line[0] not in (" ", "\t"):
                return "\n".join(lines[:i])
        return code
    open_brackets = 2 if language == "java" else 1
    for i, c in enumerate(code):
        if c == "{":
            open_brackets += 1
        elif c == "}":
            open_brackets -= 1
        if open_brackets == 0:
            return code[: i + 1]
    if language == "java":
        main_pos = code.find("public static void main")
        if main_pos != -1:
            code = code[:main_pos] + "}"
        if "}" in code:
            code = code[: code.rfind("}")] + "}"
        if code.count("{") - 1 == code.count("}"):
            code += "\n}"
    elif "}" in code:
        code = code[: code.rfind("}")] + "}"
    return code


def postprocess(task: Task, kind: str, completion: str) -> str:
    """The code (or, for explaindescribe, the description) the harness keeps of a completion
    (what follows the prompt)."""
    if kind == "explaindescribe":
        text = completion.strip()[: _describe_limit(task)]
        for word in stop_words(task.language):
            if word in text:
                text = text[: text.find(word)]
        text = text.rstrip()
        for line in task["canonical_solution"].split("\n"):
            line = line.strip()
            if len(line) > 20 and line in text:
                text = text.replace(line, "")
        return text
    gen = remove_last_block(completion.rstrip(), task.language)
    if kind in ("fixtests", "fixdocs"):
        return prompt_base(task, kind == "fixdocs").rstrip() + gen
    if kind in ("synthesize", "explainsynthesize"):
        return task["prompt"].rstrip() + gen  # the harness uses the prompt here for both
    raise ValueError(f"unknown HumanEvalPack task {kind!r}: expected one of {TASKS}")


# -- test programs -----------------------------------------------------------------------------


def _go_program(task: Task, gen: str) -> str:
    reference = "\n" + task["test"]
    for line in task["import"].split("\n"):
        name = line.replace("import", "").replace("(", "").replace(")", "").replace('"', "").strip()
        if name and name not in GO_IMPORTS:
            raise TaskError(f"{task.task_id}: Go import {name!r} is not in the import helper")
    setup = task["test_setup"] + "\n"
    for line in setup.split("\n"):
        line = line.replace("import", "").replace("(", "").replace(")", "").strip()
        if line.startswith('"') and line in gen:
            setup = setup.replace(line, "")
    whole = setup + gen + "\n" + reference
    used: list[str] = []
    for pkg in GO_IMPORTS:
        if '"' + pkg + '"' not in whole:
            short = pkg.split("/")[-1]
            if short + "." in whole:
                for line in whole.split("\n"):
                    if short + "." in line and not line.strip().startswith("//"):
                        used.append('"' + short + '"')  # the harness imports the last element
                        break
    imports = ""
    if used:
        # The harness collects these in a set (its order varies per process); sorted here.
        imports = "import (\n" + "\n".join("    " + p for p in sorted(set(used))) + "\n)\n"
    if "package main" in gen and "package main" in setup:
        gen = gen.replace("package main", "")
    return setup + imports + gen


def _rust_program(task: Task, gen: str) -> str:
    out = "" if "fn main()" in gen else "fn main(){}\n"
    for line in task["declaration"].split("\n"):
        if line.strip() not in gen:
            if line.strip().startswith("fn") and line.strip().split("(")[0] in gen:
                continue
            out += line.strip() + "\n"
    gen = "fn main()".join(gen.split("fn main()")[0:2])
    return out + gen


def check_program(task: Task, generation: str) -> str:
    """The whole program one generation is tested with: the harness's per-language changes to
    the generation, then a newline and the task's tests."""
    language = task.language
    if language == "python":
        code = ("\n".join(PYTHON_IMPORTS) + "\n" + generation).strip()
    elif language == "cpp":
        code = ("\n".join(CPP_IMPORTS) + "\n" + generation.split("int main")[0]).strip()
    elif language == "java":
        code = generation.replace("public class Main {\n    }", "").strip()
    elif language == "go":
        code = _go_program(task, generation)
    elif language == "rust":
        code = _rust_program(task, generation)
    else:
        code = generation
    return code + "\n" + task["test"]


def reference_generations(task: Task) -> dict[str, str]:
    """What the self-check runs: the canonical solution (must pass) and the buggy one (must fail),
    each behind the code it continues (the harness's ``get_reference(get_solution=True)``)."""
    return {
        "canonical": task["prompt"] + task["canonical_solution"],
        "buggy": task["prompt"] + task["buggy_solution"],
    }
