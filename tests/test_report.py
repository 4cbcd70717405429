"""The run report (selfalign.audit.report, `selfalign report`, rules/report.smk) on small synthetic runs:
artifacts written by the project's own sidecar writer, counts chosen by hand."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest
from workflow_utils import copy_workflow, run

from selfalign.audit.report import (
    BEYOND_LIMIT,
    FUNNEL_STAGES,
    ReportError,
    build_funnel,
    build_report,
    collect_artifacts,
    load_sidecar,
    write_report,
)
from selfalign.cli import main
from selfalign.evaluation.score import PAPER_PASS_AT_1, write_table
from selfalign.provenance import sidecar_path, write_sidecar
from selfalign.records import sha256_file

RUN = "results/demo"

# (artifact, stage, in, out, drops): a funnel whose every stage accounts for its records.
CHAIN: list[tuple[str, str, int, int, dict[str, int]]] = [
    ("seeds/raw.jsonl", "seeds.raw", 1000, 990, {"exact_duplicate": 10}),
    ("seeds/dedup.jsonl", "seeds.dedup", 990, 900, {"near_duplicate": 90}),
    ("seeds/quality.jsonl", "seeds.quality", 900, 300, {"no_return": 250, "pyright_error": 350}),
    ("seeds/filtered.jsonl", "seeds.filter", 300, 240, {"bad_import": 50, "bad_word": 7, "no_argument": 3}),
    ("seeds/judged.jsonl", "generate.judge", 100, 70, {"judge_no": 25, "judge_tie": 5}),
    ("concepts.jsonl", "generate.concepts", 70, 60, {"parse_unfinished": 10}),
    ("instructions.jsonl", "generate.instructions", 60, 40, {"parse_unfinished": 20}),
    ("responses.jsonl", "generate.responses", 40, 38, {"no_response": 2}),
    ("executed.jsonl", "execute", 300, 120, {"no_code": 100, "fail:assertion": 80}),
    ("sanitized.jsonl", "sanitize", 120, 90, {"format:tag_count": 30}),
    ("cleaned.jsonl", "clean", 90, 30, {"duplicate_instruction": 60}),
    ("sft.jsonl", "sft", 30, 29, {"decontaminated": 1}),
]
SAMPLES = {"samples": 400, "samples_kept": 300, "sample_drops": {"parse_unfinished": 95, "parse_empty": 5}}
BEYOND = 140  # filtered out - judged in: past generation.limit


def _write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def _score(dataset: str, base: int, plus: int, n: int) -> dict[str, Any]:
    return {
        "dataset": dataset, "version": {"humaneval": "v0.1.9", "mbpp": "v0.1.0"}[dataset], "n_tasks": n,
        "n_samples": n, "missing_samples": 0,
        "base": {"passed": base, "pass_at_1": base / n}, "plus": {"passed": plus, "pass_at_1": plus / n},
        "tasks": {},
    }


def make_run(root: Path, *, chain: list[tuple[str, str, int, int, dict[str, int]]] | None = None) -> Path:
    """A finished run under ``root/results/demo``, sidecars written by write_sidecar from ``root``."""
    results = root / RUN
    previous: str | None = None
    for rel, stage, n_in, n_out, drops in chain if chain is not None else CHAIN:
        art = _write(results / rel, "".join(json.dumps({"id": f"{rel}/{i}"}) + "\n" for i in range(n_out)))
        inputs = [f"{RUN}/{previous}"] if previous else []
        extra: dict[str, Any] = {}
        if rel == "seeds/judged.jsonl":
            extra = {"stats": {"records_beyond_limit": BEYOND, "units_resumed": 3}}
        if rel == "responses.jsonl":
            extra = {"stats": dict(SAMPLES, units_resumed=1)}
        if rel != "seeds/raw.jsonl":
            inputs.append(f"{RUN}/{rel.removesuffix('.jsonl')}/shard-0000.jsonl")  # a removed temp shard
        write_sidecar(art, stage=stage, inputs=inputs, counts={"in": n_in, "out": n_out, "dropped": sum(drops.values())},
                      drops=drops, config={"stage": stage, "k": 1}, extra=extra)
        previous = rel
    # the checkpoint: a directory whose sidecar lists its files' hashes
    ckpt = results / "checkpoint"
    _write(ckpt / "model.safetensors", "weights")
    _write(ckpt / "config.json", "{}")
    files = {p.name: sha256_file(p) for p in sorted(ckpt.iterdir())}
    write_sidecar(ckpt, stage="train", inputs=[f"{RUN}/sft.jsonl"], counts={"in": 29, "out": 29, "dropped": 0},
                  config={"learning_rate": 1e-5}, extra={"final_checkpoint": {"path": str(ckpt), "files": files}})
    shared = _write(root / "shared" / "HumanEvalPlus.jsonl.gz", "release").relative_to(root)  # outside the run
    scores = []
    for dataset, (base, plus) in (("humaneval", (5, 4)), ("mbpp", (8, 6))):
        samples = _write(results / "eval" / f"{dataset}.samples.jsonl", '{"task_id": "x"}\n')
        write_sidecar(samples, stage=f"eval.generate.{dataset}", inputs=[f"{RUN}/checkpoint/model.safetensors"],
                      counts={"in": 20, "out": 20, "dropped": 0}, config={})
        score = _write(results / "eval" / f"{dataset}.json", json.dumps(_score(dataset, base, plus, 20)))
        write_sidecar(score, stage="eval.score", inputs=[f"{RUN}/eval/{dataset}.samples.jsonl", str(shared)],
                      counts={"tasks": 20, "base_passed": base, "plus_passed": plus},
                      drops={"base:fail": 20 - base}, config={"dataset": dataset, "limit": 20},
                      extra={"timing": {"wall_seconds": 12.5}})
        scores.append(score)
    write_table(scores, results / "eval" / "table.md")
    _write(results / "README.md", "# card\n")
    return results


def _report(root: Path, **kwargs: Any) -> dict[str, Any]:
    results = root / RUN
    return build_report(
        results, run_name="demo", config={"run_name": "demo", "model": {"name": "m"}}, prefix=RUN,
        eval_results=[results / "eval" / "humaneval.json", results / "eval" / "mbpp.json"],
        eval_table=results / "eval" / "table.md", files=[results / "README.md"], **kwargs,
    )


@pytest.fixture
def demo(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    make_run(tmp_path)
    return tmp_path


# ---------------------------------------------------------------------------------- funnel


def test_funnel_rows_are_the_sidecars_counts_and_drops(demo: Path) -> None:
    rows = [r.to_json() for r in build_funnel(demo / RUN)]
    assert [r["key"] for r in rows] == [s.key for s in FUNNEL_STAGES]
    by_artifact = {r["artifact"]: r for r in rows if r["key"] != "samples"}
    for rel, stage, n_in, n_out, drops in CHAIN:
        row = by_artifact[rel]
        assert (row["in"], row["out"], row["drops"], row["sidecar_stage"]) == (n_in, n_out, drops, stage)
        assert row["dropped"] == sum(drops.values()) and row["balanced"] is True
    samples = next(r for r in rows if r["key"] == "samples")
    assert (samples["in"], samples["out"], samples["drops"]) == (400, 300, SAMPLES["sample_drops"])
    assert samples["chained"] is None  # records -> samples: another unit
    # the judge saw only generation.limit of the filtered seeds: said so, and the chain holds
    judged = by_artifact["seeds/judged.jsonl"]
    assert judged["skipped_before"] == {BEYOND_LIMIT: BEYOND} and judged["chained"] is True
    assert rows[0]["chained"] is None and all(r["chained"] for r in rows[1:] if r["key"] != "samples")
    paper = {r["key"]: r["paper"]["out"] for r in rows if r["paper"]}
    assert paper == {"raw": 5_000_000, "judged": 250_000, "instructions": 238_000, "samples": 2_400_000,
                     "executed": 500_000, "sft": 50_000}


def test_funnel_flags_a_stage_that_did_not_receive_what_the_one_before_passed_on(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    chain = [list(c) for c in CHAIN]
    chain[2][2], chain[2][4] = 899, {"no_return": 249, "pyright_error": 350}  # quality in 899 != dedup out 900
    make_run(tmp_path, chain=[tuple(c) for c in chain])  # type: ignore[misc]
    rows = {r.stage.key: r for r in build_funnel(tmp_path / RUN)}
    assert rows["quality"].chained is False and rows["quality"].balanced is True
    assert rows["filtered"].chained is True


def test_funnel_starts_at_an_imported_stage(demo: Path) -> None:
    for stage in ("raw", "dedup"):
        (demo / RUN / "seeds" / f"{stage}.jsonl").unlink()
        sidecar_path(demo / RUN / "seeds" / f"{stage}.jsonl").unlink()
    quality = sidecar_path(demo / RUN / "seeds" / "quality.jsonl")
    quality.write_text(quality.read_text().replace('"stage": "seeds.quality"', '"stage": "import.quality"'))
    rows = build_funnel(demo / RUN)
    assert rows[0].stage.key == "quality" and rows[0].chained is None and len(rows) == len(FUNNEL_STAGES) - 2
    assert rows[0].label == "high-quality subset (imported)" and rows[1].label == "heuristic filter"


def test_a_missing_sidecar_in_the_chain_is_an_error_naming_it(demo: Path) -> None:
    missing = sidecar_path(demo / RUN / "concepts.jsonl")
    missing.unlink()
    with pytest.raises(ReportError, match=re.escape(f"{missing}: missing sidecar")):
        build_funnel(demo / RUN)
    with pytest.raises(ReportError, match=re.escape(str(missing))):
        _report(demo)


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "malformed sidecar, not JSON"),
        ("[1, 2]", "malformed sidecar, not a JSON object"),
        (json.dumps({"artifact": "x", "stage": "s", "sha256": "0", "bytes": 1}), "malformed sidecar, no 'counts', 'drops'"),
    ],
)
def test_a_malformed_sidecar_is_an_error_naming_it(demo: Path, content: str, message: str) -> None:
    bad = sidecar_path(demo / RUN / "cleaned.jsonl")
    bad.write_text(content, encoding="utf-8")
    with pytest.raises(ReportError, match=re.escape(f"{bad}: {message}")):
        _report(demo)


def test_a_sidecar_with_a_non_integer_count_is_malformed(demo: Path) -> None:
    bad = sidecar_path(demo / RUN / "sanitized.jsonl")
    meta = json.loads(bad.read_text())
    meta["counts"]["out"] = "90"
    bad.write_text(json.dumps(meta))
    with pytest.raises(ReportError, match=re.escape(f"{bad}: malformed sidecar, count 'out' is not an integer")):
        load_sidecar(bad)


def test_a_sidecar_that_no_longer_describes_its_artifact_is_stale(demo: Path) -> None:
    art = demo / RUN / "sanitized.jsonl"
    with art.open("a") as handle:
        handle.write('{"id": "added later"}\n')
    with pytest.raises(ReportError, match=re.escape(f"{sidecar_path(art)}: stale sidecar")):
        _report(demo)


def test_verify_rehashes_and_catches_a_same_size_change(demo: Path) -> None:
    art = demo / RUN / "cleaned.jsonl"
    art.write_text(art.read_text().replace("cleaned", "CLEANED"))
    _report(demo)  # same size: only a rehash can tell
    with pytest.raises(ReportError, match=re.escape(f"{sidecar_path(art)}: stale sidecar, {art} hashes to")):
        _report(demo, verify=True)


# ------------------------------------------------------------------------------- artifacts


def test_artifacts_carry_the_sidecars_hashes_and_link_their_inputs(demo: Path) -> None:
    arts = {a.path: a.to_json() for a in collect_artifacts(demo / RUN, prefix=RUN, files=[demo / RUN / "README.md"])}
    for rel, *_ in CHAIN:
        meta = json.loads(sidecar_path(demo / RUN / rel).read_text())
        art = arts[f"{RUN}/{rel}"]
        assert (art["sha256"], art["bytes"], art["stage"], art["sha256_from"]) == (
            meta["sha256"], meta["bytes"], meta["stage"], "sidecar")
        assert art["code"] == meta["code"] and art["config"] == meta["config"] and len(art["config_sha256"]) == 64
    assert arts[f"{RUN}/checkpoint"]["kind"] == "directory"
    readme = arts[f"{RUN}/README.md"]
    assert readme["sha256"] == sha256_file(demo / RUN / "README.md") and readme["sha256_from"] == "report"
    links = {i["path"]: i for i in arts[f"{RUN}/sft.jsonl"]["inputs"]}
    assert links[f"{RUN}/cleaned.jsonl"]["status"] == "match"
    assert links[f"{RUN}/sft/shard-0000.jsonl"]["status"] == "temporary"
    # a file inside a directory artifact is checked against the hash its sidecar lists
    model = arts[f"{RUN}/eval/humaneval.samples.jsonl"]["inputs"][0]
    assert model["status"] == "match" and model["from"] == f"{RUN}/checkpoint"
    assert arts[f"{RUN}/eval/humaneval.json"]["inputs"][1]["status"] == "external"


def test_an_input_read_with_another_hash_than_the_kept_artifact_is_flagged(demo: Path) -> None:
    path = sidecar_path(demo / RUN / "sft.jsonl")
    meta = json.loads(path.read_text())
    meta["inputs"][0]["sha256"] = "0" * 64  # cleaned.jsonl was rebuilt after sft read it
    path.write_text(json.dumps(meta))
    report = _report(demo)
    sft = next(a for a in report["artifacts"] if a["path"] == f"{RUN}/sft.jsonl")
    assert sft["inputs"][0]["status"] == "differs"
    assert report["input_links"]["differs"] == 1


# ------------------------------------------------------------------------------ evaluation


def test_eval_rows_are_the_eval_tables_beside_the_papers_numbers(demo: Path) -> None:
    evaluation = _report(demo)["evaluation"]
    table_md = (demo / RUN / "eval" / "table.md").read_text()
    for row in evaluation["rows"]:
        assert "| " + " | ".join(row) + " |" in table_md
    assert evaluation["table_md_matches"] is True
    he = evaluation["scores"][0]
    assert he["base"] == {"passed": 5, "pass_at_1": 25.0, "paper": PAPER_PASS_AT_1["humaneval"][0],
                          "difference": round(25.0 - PAPER_PASS_AT_1["humaneval"][0], 1)}
    assert he["plus"]["paper"] == PAPER_PASS_AT_1["humaneval"][1] and he["limit"] == 20


def test_a_stale_eval_table_is_reported(demo: Path) -> None:
    (demo / RUN / "eval" / "table.md").write_text("| old |\n")
    report = _report(demo)
    assert report["evaluation"]["table_md_matches"] is False
    write_report(report, html_out=demo / "x.html", json_out=demo / "x.json")
    assert "NO, it is stale" in (demo / "x.html").read_text()


# ------------------------------------------------------------------------------ the page


def test_page_is_self_contained_with_the_plot_and_tables(demo: Path) -> None:
    report = _report(demo)
    out = demo / RUN / "report"
    write_report(report, html_out=out / "index.html", json_out=out / "report.json", svg_out=out / "funnel.svg")
    page = (out / "index.html").read_text()
    svg = (out / "funnel.svg").read_text()
    assert page.startswith("<!DOCTYPE html>") and "<style>" in page
    assert svg[svg.index("<svg"):] in page  # the plot, inline
    assert "<script" not in page and not re.search(r'(src|href)="(https?:)?//', page)
    assert "@import" not in page and not re.search(r"url\(['\"]?(https?:)?//", page)
    for rel, _stage, n_in, n_out, drops in CHAIN:
        assert f"<code>{rel}</code>" in page
        assert f'<td class="n">{n_in:,}</td><td class="n">{n_out:,}</td>' in page
        for reason, count in drops.items():
            assert f"{reason} {count:,}" in page
    for row in report["evaluation"]["rows"]:
        assert "".join(f'<td class="n">{c}</td>' if i in (2, 3, 4, 5, 6) else f"<td>{c}</td>"
                       for i, c in enumerate(row)) in page
    for art in report["artifacts"]:
        assert art["sha256"] in page
    assert json.loads((out / "report.json").read_text()) == json.loads(json.dumps(report))


def test_same_inputs_give_the_same_bytes_whatever_the_volatile_sidecar_keys_and_directory(
    demo: Path, tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    def render(root: Path) -> dict[str, bytes]:
        out = root / "out"
        write_report(_report(root), html_out=out / "index.html", json_out=out / "report.json",
                     svg_out=out / "funnel.svg")
        return {p.name: p.read_bytes() for p in sorted(out.iterdir())}

    first = render(demo)
    other = tmp_path_factory.mktemp("elsewhere")
    shutil.copytree(demo / "results", other / "results")
    monkeypatch.chdir(other)
    # what differs between two runs of the same config: wall time, timestamps, host, resumption
    for meta_path in (other / RUN).rglob("*.meta.json"):
        meta = json.loads(meta_path.read_text())
        meta.update(wall_time_s=999.0, created_at="2030-01-01T00:00:00Z", host="elsewhere")
        if "stats" in meta:
            meta["stats"]["units_resumed"] = 0
        meta_path.write_text(json.dumps(meta))
    assert render(other) == first
    assert b"2030-01-01" not in first["index.html"] and str(demo).encode() not in first["index.html"]


# ----------------------------------------------------------------------------- CLI, rule


def test_cli_writes_page_json_plot_and_their_sidecars(demo: Path) -> None:
    results = demo / RUN
    args = ["report", "--results", RUN, "--run-name", "demo", "--config", '{"run_name": "demo"}',
            "--eval", f"{RUN}/eval/humaneval.json", f"{RUN}/eval/mbpp.json", "--eval-table", f"{RUN}/eval/table.md",
            "--files", f"{RUN}/README.md", "--html", f"{RUN}/report/index.html", "--json", f"{RUN}/report/report.json",
            "--svg", f"{RUN}/report/funnel.svg"]
    assert main(args) == 0
    report = json.loads((results / "report" / "report.json").read_text())
    assert [r["out"] for r in report["funnel"] if r["key"] == "sft"] == [29]
    for name in ("index.html", "report.json", "funnel.svg"):
        meta = load_sidecar(sidecar_path(results / "report" / name))
        assert meta["stage"] == "report" and meta["counts"]["artifacts"] == len(report["artifacts"])
    # a rerun does not list the report's own files as artifacts of the run
    assert main(args) == 0
    again = json.loads((results / "report" / "report.json").read_text())
    assert again == report and not any("/report/" in a["path"] for a in again["artifacts"])


def test_cli_error_names_the_missing_sidecar(demo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = sidecar_path(Path(RUN) / "executed.jsonl")
    missing.unlink()
    code = main(["report", "--results", RUN, "--run-name", "demo", "--config", "{}",
                 "--html", "x/index.html", "--json", "x/report.json"])
    assert code == 2
    assert f"selfalign: error: {missing}: missing sidecar" in capsys.readouterr().err
    assert not Path("x").exists()


@pytest.mark.slow
def test_tiny_dry_run_ends_in_the_report(tmp_path: Path) -> None:
    workdir = copy_workflow(tmp_path / "selfalign")
    result = run(["--profile", "profiles/tiny", "-n", "-p"], workdir, timeout=120)
    assert result.returncode == 0, result.stdout
    command = next(line for line in result.stdout.splitlines() if "selfalign report " in line)
    assert "--results results/tiny --run-name tiny" in command
    assert "--eval results/tiny/eval/humaneval.json results/tiny/eval/mbpp.json" in command
    assert "--html results/tiny/report/index.html --json results/tiny/report/report.json" in command
    # the bytes are checked against the lock first, so the report shows the verdict; not strict
    # by default (a divergence is a result), strict with profiles/tiny/strict.yaml (CI, e2e)
    # ... and HumanEvalPack's and LiveCodeBench's tables are in it (the tiny profile enables both)
    assert command.rstrip().endswith("--verdict results/tiny/verify.json --humanevalpack results/tiny/octopack/table.json"
                                     " --livecodebench results/tiny/livecodebench/table.json"
                                     " > results/tiny/logs/report.log 2>&1")
    out = result.stdout
    assert out.index("selfalign verify results/tiny") < out.index("selfalign report ")
    assert "--strict" not in next(line for line in out.splitlines() if "selfalign verify " in line)
    strict = run(["--profile", "profiles/tiny", "--configfile", "config.yaml", "profiles/tiny/recipe.yaml",
                  "profiles/tiny/strict.yaml", "-n", "-p"], workdir, timeout=120)
    assert strict.returncode == 0, strict.stdout
    assert "--strict" in next(line for line in strict.stdout.splitlines() if "selfalign verify " in line)
    assert (workdir / "report" / "workflow.rst").is_file()


def test_the_page_shows_the_runs_verdict_against_its_lock(demo: Path) -> None:
    from selfalign.audit.verify import make_lock, verify

    results = demo / RUN
    lock = make_lock(results)
    (results / "README.md").write_text("another card\n")
    verdict = demo / "verify.json"
    verdict.write_text(json.dumps(verify(results, lock)))
    report = _report(demo, verdict=verdict)
    assert report["verification"]["ok"] is False
    assert report["verification"]["summary"].startswith("not verified: ")
    out = results / "report"
    write_report(report, html_out=out / "index.html", json_out=out / "report.json", svg_out=out / "funnel.svg")
    page = (out / "index.html").read_text()
    assert "<b>Bytes against the lock:</b> not verified: " in page and "first divergence: README.md" in page
    assert _report(demo)["verification"] is None


def test_the_page_shows_humanevalpack_beside_octocoder(demo: Path) -> None:
    from selfalign.octopack.results import build_table

    entry = {"tasks": 2, "samples_per_task": 1, "passed": 1, "missing_tasks": 0, "pass_at_k": {"pass@1": 0.5}}
    table = build_table({"synthesize": {"kind": "synthesize", "backend": "gvisor", "limit": 2,
                                        "languages": {"python": entry, "rust": entry}}})
    path = demo / "table.json"
    path.write_text(json.dumps(table))
    report = _report(demo, humanevalpack=path)
    assert report["humanevalpack"] == table
    out = demo / RUN / "report"
    write_report(report, html_out=out / "index.html", json_out=out / "report.json", svg_out=out / "funnel.svg")
    page = (out / "index.html").read_text()
    assert "HumanEvalPack (OctoPack)" in page and "the first 2 tasks per language" in page
    assert ('<td>HumanEvalSynthesize</td><td>Python</td><td class="n">2</td><td class="n">50.0</td>'
            '<td class="n">-</td><td class="n">46.2</td>') in page
    assert '<td>average</td><td class="n">4</td><td class="n">50.0</td><td class="n">-</td><td class="n">35.5</td>' in page
    assert _report(demo)["humanevalpack"] is None
