"""The registries that replace string keys: benchmarks, sandbox languages, and the one pass@k."""

from __future__ import annotations

import subprocess
import sys
from math import comb
from pathlib import Path

import pytest
import yaml

from selfalign.evaluation import generate, score
from selfalign.evaluation.benchmarks import (
    BENCHMARKS,
    EVALPLUS,
    EVALPLUS_RELEASES,
    benchmark,
    keys,
    load_evalplus_tasks,
)
from selfalign.evaluation.metrics import mean_pass_at_k, pass_at_k
from selfalign.evaluation.prompts import eval_prompt
from selfalign.octopack import executors, humanevalpack, toolchains
from selfalign.sandbox.languages import LANGUAGES, debian_packages, language

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    ("n", "c", "k", "expected"),
    [
        (1, 0, 1, 0.0),
        (1, 1, 1, 1.0),
        (10, 3, 1, 0.3),  # pass@1 is the fraction that passed
        (5, 1, 2, 0.4),  # 1 - C(4,2)/C(5,2) = 1 - 6/10
        (20, 5, 10, 1 - 3003 / 184756),  # 1 - C(15,10)/C(20,10)
        (20, 0, 10, 0.0),
        (20, 11, 10, 1.0),  # fewer than k failures: some draw of k always holds a pass
    ],
)
def test_pass_at_k_known_values(n: int, c: int, k: int, expected: float) -> None:
    assert pass_at_k(n, c, k) == pytest.approx(expected, abs=1e-12)


def test_pass_at_k_equals_the_papers_stable_product_form() -> None:
    # Chen et al. 2021's numerically stable form: 1 - prod_{i=n-c+1}^{n} (1 - k/i)
    for n in (1, 5, 20, 200):
        for c in range(0, n + 1, max(1, n // 7)):
            for k in (1, 2, 10, 100):
                if k > n:
                    continue
                stable = 1.0 if n - c < k else 1.0 - _prod(1 - k / i for i in range(n - c + 1, n + 1))
                assert pass_at_k(n, c, k) == pytest.approx(stable, rel=1e-9, abs=1e-12)
                assert pass_at_k(n, c, k) == pytest.approx(1 - comb(n - c, k) / comb(n, k), abs=1e-12)


def _prod(values: object) -> float:
    out = 1.0
    for v in values:  # type: ignore[attr-defined]
        out *= v
    return out


def test_pass_at_k_refuses_what_it_cannot_estimate() -> None:
    for n, c, k in ((5, 6, 1), (5, -1, 1), (5, 1, 0), (5, 1, 6)):
        with pytest.raises(ValueError, match="pass@k needs"):
            pass_at_k(n, c, k)
    assert mean_pass_at_k([], 1) == 0.0
    assert mean_pass_at_k([(20, 0), (20, 20), (20, 10)], 1) == pytest.approx(0.5)
    assert score._pass_at_1(7, 20) == 0.35  # the EvalPlus table's pass@1 goes through it


def test_the_evalplus_benchmarks_come_from_the_registry() -> None:
    assert EVALPLUS == ("humaneval", "mbpp")
    assert score.DATASETS == generate.DATASETS == EVALPLUS
    assert score.PAPER_PASS_AT_1 == {"humaneval": (72.6, 63.4), "mbpp": (75.2, 61.2)}
    for key in EVALPLUS:
        row = benchmark(key)
        assert row.default_version == next(v for d, v in EVALPLUS_RELEASES if d == key)
        assert row.parts == ("base", "plus")
        assert getattr(generate.EvalParams(), str(row.version_param)) == row.default_version
        # generation and scoring dispatch through these: the registry is where they are looked up
        assert row.hook("loader") is load_evalplus_tasks
        assert row.hook("prompt") is eval_prompt
        assert row.hook("postprocess") is generate.sample_record
        assert row.hook("checker") is score.score_task
    # the config schema's rescore section names exactly the registry's EvalPlus benchmarks
    schema = yaml.safe_load((REPO / "src/selfalign/schemas/config.schema.yaml").read_text())
    pattern = next(iter(schema["properties"]["rescore"]["patternProperties"]))
    assert pattern == f"^({'|'.join(EVALPLUS)})$"
    with pytest.raises(ValueError, match=r"unknown benchmark 'humaneval\+'"):
        benchmark("humaneval+")


def test_humanevalpack_tasks_are_registered_per_kind_and_language() -> None:
    pack = keys("humanevalpack")
    assert len(pack) == len(humanevalpack.TASKS) * len(humanevalpack.LANGUAGES) == 30
    assert "humanevalfixtests-rust" in pack and "humanevalsynthesize-python" in pack
    for key in pack:
        row = BENCHMARKS[key]
        assert row.language in LANGUAGES and key.endswith(f"-{row.language}")
        assert row.hook("prompt") is humanevalpack.build_prompt
        assert row.hook("checker") is humanevalpack.check_program


def test_the_language_table_drives_executors_harness_timeouts_and_setup() -> None:
    assert humanevalpack.LANGUAGES == ("python", "js", "java", "go", "cpp", "rust")
    assert humanevalpack.TIMEOUT_S == {"python": 10.0, "js": 10.0, "java": 35.0, "go": 20.0, "cpp": 60.0,
                                       "rust": 300.0}
    assert humanevalpack.LANGUAGE_NAME["cpp"] == "C++"
    assert {k: v.timeout_s for k, v in executors.LIMITS.items()} == humanevalpack.TIMEOUT_S
    assert toolchains.DEBIAN_PACKAGES == debian_packages()
    for key, lang in LANGUAGES.items():
        assert set(lang.tools) <= set(toolchains.TOOLS), key
        if lang.steps is None:
            assert key == "python"  # runs as a module in the sandbox's interpreter
            with pytest.raises(ValueError, match="runs as a module"):
                executors.program(key, "", None)
    with pytest.raises(ValueError, match="no sandbox language 'cobol'"):
        language("cobol")
    # setup.sh installs what the table lists, reading it before any virtualenv exists
    script = REPO / "src/selfalign/sandbox/languages.py"
    out = subprocess.run([sys.executable, "-S", str(script), "debian-packages", "--without-node"],
                         capture_output=True, text=True, check=True).stdout.split()
    assert out == [p for p in debian_packages() if p not in ("nodejs", "npm")]
    assert "sandbox/languages.py debian-packages" in (REPO / "scripts/setup.sh").read_text()
    bad = subprocess.run([sys.executable, str(script), "packages"], capture_output=True, text=True)
    assert bad.returncode == 2 and "usage" in bad.stderr
