"""Loading and validating the recipe configuration.

The schema (``schemas/config.schema.yaml``) closes every object, so a misspelt key is reported
as unknown, with the closest known key, before any job runs.
"""

from __future__ import annotations

import copy
import difflib
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import MISSING, fields
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import yaml

SCHEMA_PATH = Path(__file__).with_name("schemas") / "config.schema.yaml"


class ConfigError(ValueError):
    """The configuration is invalid; the message names every offending key."""


@cache
def load_schema() -> dict[str, Any]:
    with open(SCHEMA_PATH, encoding="utf-8") as handle:
        schema: dict[str, Any] = yaml.safe_load(handle)
    return schema


def deep_merge(base: Mapping[str, Any], override: Mapping[str, Any]) -> dict[str, Any]:
    """Recursively merge ``override`` into a copy of ``base`` (the way snakemake merges configfiles)."""
    merged = copy.deepcopy(dict(base))
    for key, value in override.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = copy.deepcopy(value)
    return merged


def load_config(paths: Sequence[str | os.PathLike[str]]) -> dict[str, Any]:
    """Load and merge YAML config files in order, then validate the result."""
    config: dict[str, Any] = {}
    for path in paths:
        with open(path, encoding="utf-8") as handle:
            data = yaml.safe_load(handle) or {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
        config = deep_merge(config, data)
    validate_config(config)
    return config


def _key(path: Sequence[Any]) -> str:
    return ".".join(str(p) for p in path) or "<top level>"


def _describe(error: jsonschema.ValidationError, schema: Mapping[str, Any]) -> list[str]:
    where = list(error.absolute_path)
    if error.validator == "additionalProperties":
        known = sorted((error.schema.get("properties") or {}).keys())
        extra = sorted(set(error.instance) - set(known)) if isinstance(error.instance, dict) else []
        lines = []
        for key in extra:
            hint = difflib.get_close_matches(key, known, n=1)
            suggestion = f" (did you mean {_key([*where, hint[0]])!r}?)" if hint else ""
            lines.append(f"unknown config key {_key([*where, key])!r}{suggestion}; known keys here: {', '.join(known)}")
        return lines
    if error.validator == "required":
        return [f"config key {_key(where)!r}: {error.message}"]
    if error.validator in ("oneOf", "anyOf") and error.context:
        # Report the deepest sub-error (e.g. the bad enum value inside the object branch) rather
        # than "is not valid under any of the given schemas" or the null branch's type error.
        best = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        return _describe(best, schema)
    value = json.dumps(error.instance, default=str)
    if len(value) > 80:
        value = value[:77] + "..."
    if error.validator == "pattern" and error.schema.get("description"):
        # a regular expression is no help to the reader: say what the value must be instead
        return [f"config key {_key(where)!r} = {value}: must be {error.schema['description']}"]
    return [f"config key {_key(where)!r} = {value}: {error.message}"]


def validate_config(config: Mapping[str, Any]) -> None:
    """Raise ConfigError listing every problem, each naming its dotted key."""
    seeds = config.get("seeds")
    if isinstance(seeds, Mapping) and "start_from" in seeds:
        raise ConfigError(
            "invalid configuration:\n  config key 'seeds.start_from' moved to the top level:"
            " write 'start_from:' (it can now stand in for any stage up to 'executed')"
        )
    schema = load_schema()
    validator = jsonschema.Draft202012Validator(schema)
    errors = sorted(validator.iter_errors(config), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        lines: list[str] = []
        for error in errors:
            lines.extend(_describe(error, schema))
        raise ConfigError("invalid configuration:\n  " + "\n  ".join(dict.fromkeys(lines)))


def _load_cli_value(value: str) -> Any:
    if value.startswith("@"):
        with open(value[1:], encoding="utf-8") as handle:
            return yaml.safe_load(handle)
    return json.loads(value)


def parse_params(value: str) -> dict[str, Any]:
    """A stage's parameters from the CLI: inline JSON, or ``@path`` to a JSON/YAML file."""
    loaded = _load_cli_value(value)
    if not isinstance(loaded, dict):
        raise ConfigError(f"--params must be a JSON object, got {type(loaded).__name__}")
    return loaded


def parse_list(value: str, option: str) -> list[Any]:
    """A list-valued option (inline JSON or ``@path``), e.g. ``--mix``."""
    loaded = _load_cli_value(value)
    if not isinstance(loaded, list):
        raise ConfigError(f"{option} must be a JSON list, got {type(loaded).__name__}")
    return loaded


def check_choice(key: str, value: Any, allowed: Sequence[str]) -> None:
    """Refuse a value that is not one of ``allowed``, naming the dotted key and the choices."""
    if value not in allowed:
        raise ValueError(f"{key} = {value!r}: must be one of {', '.join(allowed)}")


def recipe_line(config: Mapping[str, Any]) -> str:
    """Which recipe a config is: the release (tag and commit), or an overlay on it; for the run
    report and the dataset card."""
    release = config.get("release") or {}
    where = f"{release.get('repo', '?')} tag {release.get('tag', '?')} = {str(release.get('commit', '?'))[:7]}"
    variant = config.get("recipe_variant", "release")
    if variant == "release":
        return f"the release ({where})"
    return f"{variant}: the release ({where}) with the {variant} overlay (README, Deviations from the release)"


def reject_unknown(cls: type, data: Mapping[str, Any], section: str) -> None:
    """Refuse keys that are not fields of the dataclass ``cls``, naming them and the known ones,
    so a typo in a config section is an error rather than a silently ignored setting."""
    known = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise ValueError(
            f"unknown {section} parameter(s): {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )


def section_schema(section: str) -> dict[str, Any]:
    """The schema of one config section (a dotted path such as ``evaluation.sandbox``; ``a.b[]``:
    an item of the list ``a.b``), with the
    root's ``$defs`` so its references resolve, and without the section's own ``required`` (a
    stage's parameters may leave any key to its default), ``additionalProperties`` (which keys
    a stage takes is its params class's fields: :func:`reject_unknown`) and the rules that
    relate two keys (``dependentSchemas``, ``allOf`` conditions: the class states them, with
    the words a user needs, and the whole config's validation keeps them too)."""
    root = load_schema()
    node: Mapping[str, Any] = root
    for part in section.split("."):
        items = part.endswith("[]")  # "mix[]": the schema of one item of the list "mix"
        node = (node.get("properties") or {}).get(part.removesuffix("[]")) or {}
        for step in (True, False) if items else (False,):
            while "$ref" in node:
                node = root["$defs"][node["$ref"].rsplit("/", 1)[1]]
            if step:
                node = node.get("items") or {}
    dropped = ("required", "additionalProperties", "dependentSchemas", "allOf")
    sub = {k: v for k, v in node.items() if k not in dropped}
    return {"$defs": root["$defs"], **sub}


_TYPE_WORDS = {"integer": "an integer", "number": "a number", "string": "a string",
               "boolean": "true or false", "null": "null", "array": "a list", "object": "a mapping"}


def _bound_message(section: str, error: jsonschema.ValidationError) -> str:
    """One schema error of a stage's parameters, in the words the classes used to write."""
    if error.validator in ("oneOf", "anyOf") and error.context:
        best = max(error.context, key=lambda e: (len(e.absolute_path), e.validator != "type"))
        if best.validator != "type":
            return _bound_message(section, best)
    where = _key([section, *error.absolute_path])
    got = json.dumps(error.instance, default=str)[:80]
    rule, expected = error.validator, error.validator_value
    if error.schema.get("x-expected") and rule in ("type", "minimum", "exclusiveMinimum", "maximum"):
        return f"{where} must be {error.schema['x-expected']}, got {got}"
    if rule in ("oneOf", "anyOf"):
        words = [_TYPE_WORDS.get(str(b.get("type")), str(b.get("type"))) for b in expected if "type" in b]
        return f"{where} must be {' or '.join(words) or 'valid'}, got {got}"
    if rule == "type":
        kinds = expected if isinstance(expected, list) else [expected]
        return f"{where} must be {' or '.join(_TYPE_WORDS.get(str(k), str(k)) for k in kinds)}, got {got}"
    ops = {"minimum": ">=", "exclusiveMinimum": ">", "maximum": "<=", "exclusiveMaximum": "<"}
    if rule in ops:
        return f"{where} must be {ops[rule]} {expected}, got {got}"
    if rule == "enum":
        return f"{where} = {got}: must be one of {', '.join(map(str, expected))}"
    if rule == "pattern" and error.schema.get("description"):
        return f"{where} = {got}: must be {error.schema['description']}"
    return f"{where}: {error.message}"


def check_params(cls: type, data: Mapping[str, Any], section: str) -> None:
    """Refuse keys that are not fields of ``cls``, then check each value against the config
    schema's ``section``: its types, bounds and choices are written there and nowhere else (the
    class holds the defaults and the rules that relate two fields)."""
    reject_unknown(cls, data, section)
    # the values the stage will run with, as YAML would give them (tuples as lists): the data,
    # and the class's defaults where it leaves a key out, so a default cannot drift out of the
    # schema either
    values: dict[str, Any] = {}
    for f in fields(cls):
        if f.name in data:
            value = data[f.name]
        elif f.default is not MISSING or f.default_factory is not MISSING:
            value = f.default if f.default is not MISSING else f.default_factory()  # type: ignore[operator]
            if value is None:  # "not set": the schema has no value to check
                continue
        else:
            continue
        try:
            values[f.name] = json.loads(json.dumps(value))
        except TypeError:  # a nested params object: its own from_dict checks it
            pass
    validator = jsonschema.Draft202012Validator(section_schema(section))
    errors = sorted(validator.iter_errors(values), key=lambda e: [str(p) for p in e.absolute_path])
    if errors:
        raise ConfigError("; ".join(dict.fromkeys(_bound_message(section, e) for e in errors)))
