"""Every file config.yaml pins by URL + sha256 is the release's file, and resolves offline."""

from __future__ import annotations

import copy
import gzip
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from conftest import shared_data
from workflow_utils import REPO, copy_workflow, run

from selfalign.config import load_config
from selfalign.fetch import FetchError, fetch_pinned
from selfalign.pins import check_pins, config_pins, hub_pins, octopack_pins, rescore_pins

MIRRORS = [str(shared_data() / "evalplus"), str(shared_data() / "upstream"), str(shared_data() / "octopack")]
RELEASE = "0b19dbcdccb4db0601a9a77ac0df53c7abcfb8cc"


def paper() -> dict:
    return load_config([REPO / "config.yaml"])


def test_every_pin_of_the_paper_config_is_the_release_file_in_the_mirror() -> None:
    reports = check_pins(paper(), extra_mirrors=MIRRORS, require_mirror=True)
    assert [r.problems for r in reports] == [()] * len(reports)
    keys = {r.pin.key for r in reports}
    assert {"generation.fewshot", "rescore.humaneval.samples", "rescore.mbpp.published"} <= keys
    fewshot = next(r for r in reports if r.pin.key == "generation.fewshot")
    assert f"/{RELEASE}/prompts/" in fewshot.pin.url


def test_a_pin_at_a_later_commit_fails_even_with_the_right_sha256() -> None:
    config = copy.deepcopy(paper())
    later = "1d85858abb13f12d0a66bbf176e8e4dcb0100dcf"
    config["generation"]["fewshot"]["url"] = config["generation"]["fewshot"]["url"].replace(RELEASE, later)
    [bad] = [r for r in check_pins(config, extra_mirrors=MIRRORS) if not r.ok]
    assert bad.pin.key == "generation.fewshot"
    text = "\n".join(bad.problems)
    assert "release commit" in text and "22aae54c" in text  # the file at 1d85858 is the 21-example one


def test_a_wrong_sha256_fails_on_the_mirror_copy_and_a_missing_mirror_when_required(tmp_path: Path) -> None:
    config = copy.deepcopy(paper())
    config["generation"]["fewshot"]["sha256"] = "0" * 64
    bad = [r for r in check_pins(config, extra_mirrors=MIRRORS) if not r.ok]
    assert [r.pin.key for r in bad] == ["generation.fewshot"]
    missing = [r for r in check_pins(paper(), extra_mirrors=[str(tmp_path)], require_mirror=True) if not r.ok]
    assert len(missing) == len(config_pins(paper()))


def test_a_gzipped_mirror_copy_is_found_by_content_and_decompressed_into_the_cache(tmp_path: Path) -> None:
    pin = rescore_pins(paper())["humaneval.samples"]
    path = fetch_pinned(pin.url, pin.sha256, mirrors=[shared_data() / "upstream"], cache_dir=tmp_path)
    assert path.parent == tmp_path and path.name == "evalplus-starcoder2-15b-instruct-v0.1-humaneval.jsonl"
    with gzip.open(shared_data() / "upstream" / "sc2-15b-instruct-humaneval-samples.jsonl.gz", "rb") as handle:
        assert path.read_bytes() == handle.read()
    # no mirror, no network: the error lists where it looked
    with pytest.raises(FetchError, match="tried"):
        fetch_pinned(pin.url.replace("https://", "https://127.0.0.1:9/"), pin.sha256, cache_dir=tmp_path / "none", timeout=2)


@pytest.mark.slow
@pytest.mark.timeout(1500)  # above run()'s own 1200 s, which kills snakemake's whole group
def test_rescore_from_a_fresh_workflow_copy_reproduces_the_published_verdicts(tmp_path: Path) -> None:
    """`snakemake --profile profiles/tiny rescore`: the released samples by pinned URL + sha256
    (the shared folder as mirror), scored with the release checker: HumanEval+ 119/104 and
    MBPP+ 300/245, every task agreeing with the published verdicts but Mbpp/255 (a time-limit
    failure on the published machine; the sample is the reference solution)."""
    workdir = copy_workflow(tmp_path / "selfalign")
    home = tmp_path / "home"  # an empty download cache
    overlay = tmp_path / "cache.yaml"
    overlay.write_text(yaml.safe_dump({"rescore": {"cache_dir": str(home)}}))
    result = run(["--profile", "profiles/tiny", "rescore", "--configfile", "config.yaml",
                  "profiles/tiny/recipe.yaml", str(overlay)], workdir, timeout=1200)
    assert result.returncode == 0, result.stdout[-4000:]
    he = json.loads((workdir / "results/rescore/humaneval.json").read_text())
    mbpp = json.loads((workdir / "results/rescore/mbpp.json").read_text())
    assert (he["base"]["passed"], he["plus"]["passed"]) == (119, 104)
    assert (he["agreement"]["base"]["agree"], he["agreement"]["plus"]["agree"]) == (164, 164)
    assert (mbpp["base"]["passed"], mbpp["plus"]["passed"]) == (300, 245)
    assert [d["task_id"] for d in mbpp["agreement"]["disagreements"]] == ["Mbpp/255"]
    table = (workdir / "results/rescore/table.md").read_text()
    assert "119" in table and "245" in table


OCTOPACK = "e17a8f6470264286bc6a52eb8263582083bf3bf6"


def test_octopack_pins_are_the_files_at_octopacks_commit_each_in_its_own_cache() -> None:
    pins = octopack_pins(paper())
    assert sorted(pins) == sorted([f"humanevalpack-{lang}" for lang in ("python", "js", "java", "go", "cpp", "rust")]
                                  + ["oasstcommitpackft"])
    assert all(f"/bigcode-project/octopack/{OCTOPACK}/" in pin.url for pin in pins.values())
    # six files share the base name humanevalpack.jsonl: one cache directory each, or they would
    # evict each other
    assert len({pin.cache_dir for pin in pins.values()}) == len(pins)
    keys = {r.pin.key: r for r in check_pins(paper(), extra_mirrors=MIRRORS, require_mirror=True)}
    assert {f"octopack.{name}" for name in pins} <= set(keys)
    # octopack's pins are checked against octopack's commit, not the self-align release's
    config = copy.deepcopy(paper())
    section = config["octopack"]["humanevalpack"]["go"]
    section["url"] = section["url"].replace(OCTOPACK, "0" * 40)
    [bad] = [r for r in check_pins(config, extra_mirrors=MIRRORS) if not r.ok]
    assert bad.pin.key == "octopack.humanevalpack-go" and "octopack.commit" in "\n".join(bad.problems)
    # and against the upstream git history's sha256 of that path
    config = copy.deepcopy(paper())
    config["octopack"]["humanevalpack"]["js"]["sha256"] = paper()["octopack"]["humanevalpack"]["java"]["sha256"]
    [bad] = [r for r in check_pins(config, extra_mirrors=MIRRORS) if not r.ok]
    assert "upstream git history" in "\n".join(bad.problems)


def test_a_placeholder_is_an_error_in_a_pinned_file_and_in_a_hub_revision(tmp_path: Path) -> None:
    # A value still to be filled in (the config's old `<40-hex commit>`) or a branch is never a pin:
    # check_pins and hub_pins say so for a config built in code, the schema for a config file.
    config = copy.deepcopy(paper())
    config["octopack"]["oasstcommitpackft"]["sha256"] = "<sha256>"
    [bad] = [r for r in check_pins(config, extra_mirrors=MIRRORS) if not r.ok]
    assert bad.pin.key == "octopack.oasstcommitpackft" and "not 64 hex digits" in bad.problems[0]
    commit = "fc56fe33c030c6daa414c2b112c932b8eed085e6"
    config["curation"]["mix"] = [
        {"name": name, "kind": "hub", "dataset": "bigcode/commitpackft", "revision": revision}
        for name, revision in (("pinned", commit), ("placeholder", "<40-hex commit>"), ("branch", "main"))]
    problems = {hub.key: hub.problems() for hub in hub_pins(config)}
    assert problems["curation.mix['pinned']"] == ()
    assert "a placeholder" in problems["curation.mix['placeholder']"][0]
    assert "a branch moves" in problems["curation.mix['branch']"][0]
    # LiveCodeBench's problems are a Hub pin too (the paper config's, a commit), unless local files replace them
    assert problems["livecodebench"] == ()
    config["livecodebench"]["revision"] = "main"
    assert "a branch moves" in next(h for h in hub_pins(config) if h.key == "livecodebench").problems()[0]
    config["livecodebench"]["files"] = ["problems.jsonl"]
    assert "livecodebench" not in {h.key for h in hub_pins(config)}
    # and the prediction scenarios' datasets, each at its commit
    assert problems["livecodebench.test_output_prediction"] == problems["livecodebench.code_execution"] == ()

    overlay = tmp_path / "placeholder.yaml"
    overlay.write_text(yaml.safe_dump({"curation": {"mix": [
        {"name": "commitpackft", "kind": "hub", "dataset": "bigcode/commitpackft", "revision": "<40-hex commit>",
         "format": "commit"}]}}))
    result = subprocess.run([sys.executable, "-m", "selfalign", "pins", "check",
                             str(REPO / "config.yaml"), str(overlay)], capture_output=True, text=True, cwd=REPO)
    assert result.returncode != 0 and "revision" in result.stderr
    overlay.write_text(yaml.safe_dump({"curation": {"mix": [
        {"name": "commitpackft", "kind": "hub", "dataset": "bigcode/commitpackft", "revision": commit,
         "format": "commit"}]}}))
    result = subprocess.run([sys.executable, "-m", "selfalign", "pins", "check",
                             str(REPO / "config.yaml"), str(overlay)],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0, result.stderr
    assert f"ok  curation.mix['commitpackft']: bigcode/commitpackft@{commit}" in result.stdout
