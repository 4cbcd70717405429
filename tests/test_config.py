from __future__ import annotations

import re
from pathlib import Path

import pytest
import yaml

from selfalign.config import ConfigError, load_config, validate_config


def test_paper_and_tiny_configs_are_valid(repo: Path) -> None:
    paper = load_config([repo / "config.yaml"])
    assert paper["run_name"] == "paper"
    tiny = load_config([repo / "config.yaml", repo / "profiles/tiny/recipe.yaml"])
    assert tiny["run_name"] == "tiny"
    assert tiny["seeds"]["source"]["kind"] == "stdlib"
    # the tiny recipe overrides, it does not replace: the paper's filter settings carry over
    assert tiny["seeds"]["filter"]["bad_words"] == paper["seeds"]["filter"]["bad_words"]


def test_paper_config_holds_the_upstream_seed_parameters(repo: Path) -> None:
    seeds = load_config([repo / "config.yaml"])["seeds"]
    assert seeds["source"]["path"] == "bigcode/the-stack-dedup"
    assert seeds["source"]["data_dir"] == "data/python"
    assert seeds["dedup"]["threshold"] == 0.5
    assert seeds["quality"]["pyright_batch_size"] == 250
    assert seeds["quality"]["autoimport_timeout_s"] == 10
    f = seeds["filter"]
    assert f["bad_words"] == ["todo", "fixme", "bug"]
    assert f["bad_imports"] == ["argparse", "os", "subprocess", "sys", "setuptools", "distutils", "matplotlib", "seaborn"]
    assert f["max_lines"] == 150 and f["drop_no_argument"] is True


def _paper(repo: Path) -> dict:
    return yaml.safe_load((repo / "config.yaml").read_text())


def test_typo_is_named_with_a_suggestion(repo: Path) -> None:
    config = _paper(repo)
    config["seeds"]["dedup"]["treshold"] = config["seeds"]["dedup"].pop("threshold")
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert "unknown config key 'seeds.dedup.treshold'" in message
    assert "did you mean 'seeds.dedup.threshold'" in message


def test_wrong_type_and_range_are_named(repo: Path) -> None:
    config = _paper(repo)
    config["seeds"]["shards"]["quality"] = "many"
    config["seeds"]["dedup"]["threshold"] = 1.5
    with pytest.raises(ConfigError) as err:
        validate_config(config)
    message = str(err.value)
    assert "'seeds.shards.quality'" in message and "not of type 'integer'" in message
    assert "'seeds.dedup.threshold'" in message


def test_start_from_needs_exactly_one_source(repo: Path) -> None:
    config = _paper(repo)
    config["start_from"] = {"stage": "quality", "jsonl": "a.jsonl", "dataset": "x/y"}
    with pytest.raises(ConfigError):
        validate_config(config)
    config["start_from"] = {"stage": "sft", "jsonl": "a.jsonl"}
    with pytest.raises(ConfigError, match="'start_from.stage'"):
        validate_config(config)
    config["start_from"] = {"stage": "dedup", "jsonl": "a.jsonl"}
    validate_config(config)
    config["start_from"] = {"stage": "executed", "shape": "release", "dataset": "parquet", "data_files": ["a.parquet"]}
    validate_config(config)


def test_start_from_under_seeds_says_where_it_moved(repo: Path) -> None:
    config = _paper(repo)
    config["seeds"]["start_from"] = {"stage": "dedup", "jsonl": "a.jsonl"}
    with pytest.raises(ConfigError, match="moved to the top level"):
        validate_config(config)


def test_local_source_needs_a_path(repo: Path) -> None:
    config = _paper(repo)
    config["seeds"]["source"] = {"kind": "local"}
    with pytest.raises(ConfigError, match="path"):
        validate_config(config)


# Each stage's params class and the config section it reads. Their types, bounds and choices are
# written once, in the schema; from_dict must refuse whatever the schema refuses, naming the key.
PARAMS_SECTIONS = [
    ("selfalign.generation.client:ClientParams", "client", {"base_url": "http://x/v1", "model": "m"}),
    ("selfalign.evaluation.generate:EvalParams", "evaluation", {}),
    ("selfalign.evaluation.score:ScoreParams", "evaluation.sandbox", {}),
    ("selfalign.training.train:TrainParams", "training", {}),
    ("selfalign.execution:ExecutionParams", "execution", {}),
    ("selfalign.seeds.extract:SourceParams", "seeds.source", {"kind": "stdlib"}),
    ("selfalign.seeds.quality:QualityParams", "seeds.quality", {}),
    ("selfalign.seeds.filter:FilterParams", "seeds.filter", {}),
    ("selfalign.curation:CleanParams", "curation.clean", {}),
    ("selfalign.curation:SmartParams", "curation.sft", {}),
]


def _outside(rule: dict) -> list[object]:
    """Values the schema rule refuses: just past each bound, a wrong type, an unknown choice."""
    from selfalign.config import load_schema

    while "$ref" in rule:
        rule = load_schema()["$defs"][rule["$ref"].rsplit("/", 1)[1]]
    bad: list[object] = []
    if "minimum" in rule:
        bad.append(rule["minimum"] - 1)
    if "exclusiveMinimum" in rule:
        bad.append(rule["exclusiveMinimum"])
    if "maximum" in rule:
        bad.append(rule["maximum"] + 1)
    if "exclusiveMaximum" in rule:
        bad.append(rule["exclusiveMaximum"])
    if "enum" in rule:
        bad.append("no-such-choice")
    if rule.get("type") in ("integer", "number", "boolean"):
        bad.append("text")
    return bad


@pytest.mark.parametrize(("target", "section", "base"), PARAMS_SECTIONS, ids=[s for _, s, _ in PARAMS_SECTIONS])
def test_params_classes_refuse_what_the_schema_refuses(target: str, section: str, base: dict) -> None:
    import dataclasses
    import importlib

    from selfalign.config import section_schema

    module, _, name = target.partition(":")
    cls = getattr(importlib.import_module(module), name)
    cls.from_dict(dict(base))  # the defaults are valid
    checked = 0
    taken = {f.name for f in dataclasses.fields(cls)}  # the rule-level keys (shards) are not its
    for key, rule in section_schema(section)["properties"].items():
        for value in _outside(rule) if key in taken else ():
            with pytest.raises(ValueError, match=rf"^{re.escape(section)}\.{key}\b"):
                cls.from_dict({**base, key: value})
            checked += 1
    assert checked >= 2
