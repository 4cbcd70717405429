"""What rules/livecodebench.smk reads of the ``livecodebench:`` config, per scenario (kept here,
typed and tested, so the rules stay thin)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

SCENARIOS = ("codegeneration", "selfrepair", "testoutputprediction", "codeexecution")
#: Each scenario's own config section (code generation's settings are the section's top level).
SECTIONS = {"selfrepair": "self_repair", "testoutputprediction": "test_output_prediction",
            "codeexecution": "code_execution"}


def section(lcb: Mapping[str, Any], scenario: str) -> Mapping[str, Any]:
    return lcb.get(SECTIONS.get(scenario, ""), None) or {}


def scenarios(lcb: Mapping[str, Any]) -> list[str]:
    chosen = list(lcb.get("scenarios") or ["codegeneration"])
    if "selfrepair" in chosen and "codegeneration" not in chosen:
        chosen.insert(0, "codegeneration")  # self repair repairs code generation's samples
    return [s for s in SCENARIOS if s in chosen]


def codegen_files(lcb: Mapping[str, Any], release_files: Mapping[str, Sequence[str]]) -> list[str]:
    """code_generation_lite's files: local ``files``, or the release's files fetched at the revision."""
    return list(lcb.get("files") or []) or [
        f"results/livecodebench/data/{lcb.get('revision')}/{name}" for name in release_files.get(str(lcb.get("release")), ())]


def files(lcb: Mapping[str, Any], scenario: str, release_files: Mapping[str, Sequence[str]]) -> list[str]:
    """The scenario's dataset files: code_generation_lite's for code generation and self repair;
    a prediction dataset's local files, or the directory it is fetched into."""
    if scenario in ("codegeneration", "selfrepair"):
        return codegen_files(lcb, release_files)
    part = section(lcb, scenario)
    return list(part.get("files") or []) or [f"results/livecodebench/{scenario}-data/{part.get('revision')}"]


def generation(lcb: Mapping[str, Any], scenario: str) -> str:
    """The scenario's sampling as JSON: code generation's, with the scenario's own over it."""
    return json.dumps({**(lcb.get("generation") or {}), **(section(lcb, scenario).get("generation") or {})},
                      sort_keys=True)


def sandbox(lcb: Mapping[str, Any], scenario: str) -> str:
    return json.dumps({**(lcb.get("sandbox") or {}), **(section(lcb, scenario).get("sandbox") or {})},
                      sort_keys=True)


def ks(lcb: Mapping[str, Any], scenario: str) -> str:
    return " ".join(str(k) for k in section(lcb, scenario).get("k") or lcb.get("k") or [1, 5, 10])


def cot(lcb: Mapping[str, Any], scenario: str) -> str:
    return "--cot" if scenario == "codeexecution" and section(lcb, scenario).get("cot") else ""


def select(lcb: Mapping[str, Any]) -> str:
    """The flags every ``lcb generate``/``lcb score`` takes: the contest-date window, the limit,
    which fenced block is an answer's code (given only when not LiveCodeBench's first)."""
    flags = [f"--{flag} {lcb[key]}" for key, flag in
             (("start_date", "start-date"), ("end_date", "end-date"), ("limit", "limit")) if lcb.get(key)]
    if lcb.get("code_block", "first") != "first":
        flags.append(f"--code-block {lcb['code_block']}")
    return " ".join(flags)
