from __future__ import annotations

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
