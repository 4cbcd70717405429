"""External instruction sets mixed into the SFT set (config ``curation.mix``; the release used none).

OctoCoder was fine-tuned on CommitPackFT plus OctoPack's filtered OpenAssistant data; a user
comparing it with a self-aligned model, or mixing the two recipes, adds such records here. Each
source is one entry:

* ``kind: pinned``: a file pinned by URL + sha256 (``pin: octopack.oasstcommitpackft`` names one of the
  config's own pins, :func:`selfalign.pins.config_pins`; or ``url`` + ``sha256`` inline);
* ``kind: jsonl``: a local JSONL file (plain or gzipped);
* ``kind: hub``: a Hugging Face dataset by ``dataset`` + ``revision`` (a commit, required),
  ``data_dir`` (CommitPackFT's language subsets are ``data/<language>``) and ``split``, loaded
  with ``datasets.load_dataset``.

``format`` maps a row to an instruction and a response: ``oasst_conversation`` (OctoCoder's
filtered OASST, the Hub dataset ``bigcode/oasst-octopack``: a row is a conversation tree,
``conversations`` a list of messages with ``text``, of which OctoPack kept the first two, the
question and its answer), ``prompt_completion`` (the octopack repository's
``dataset/oasst/oasstcommitpackft.jsonl``: ``prompt``, ``completion``), ``instruction_response``
(this project's SFT fields), or
``commit`` (CommitPackFT rows as OctoPack turned them into instruction data,
``dataset/oasst/add_commitpackft.py`` at octopack e17a8f6: ``subject + "\\n" + old_contents`` ->
``new_contents``). ``count`` or ``fraction`` chooses how many rows: a ``random.Random(seed)``
sample of the row indices, kept in file order (deterministic for a given file and config; all
rows when neither is set). Every chosen record goes through the same decontamination as the
self-generated ones, and is written after them with ``id = "<name>:<row index>"`` and
``source = <name>``; per-source counts go in the sidecar, the dataset card and the report.
"""

from __future__ import annotations

import gzip
import json
import random
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .config import check_params
from .pins import Pin

#: the name self-generated records are counted under
SELF = "self"


class MixError(ValueError):
    """A source that cannot be read as configured: the message names the file, line and field."""


@dataclass(frozen=True)
class MixSource:
    """One external source of SFT records (see the module docstring)."""

    name: str
    kind: str
    format: str = "prompt_completion"
    path: str | None = None
    pin: str | None = None
    url: str | None = None
    sha256: str | None = None
    dataset: str | None = None
    revision: str | None = None
    data_dir: str | None = None
    split: str = "train"
    count: int | None = None
    fraction: float | None = None
    seed: int = 0

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], where: str = "curation.mix") -> MixSource:
        check_params(cls, data, "curation.mix[]")
        made = cls(**dict(data))
        name = f"{where}[{made.name!r}]"  # kind, format and the name's form: the schema's
        if made.name == SELF:
            raise MixError(f"{where}: source name {made.name!r} must be a plain word other than {SELF!r}")
        if made.count is not None and made.fraction is not None:
            raise MixError(f"{name}: give count or fraction, not both")
        needs = {"jsonl": ("path",), "hub": ("dataset", "revision")}.get(made.kind, ())
        missing = [k for k in needs if not getattr(made, k)]
        if made.kind == "pinned" and not (made.pin or (made.url and made.sha256)):
            missing.append("pin (or url and sha256)")
        if missing:
            raise MixError(f"{name}: kind {made.kind} needs {', '.join(missing)}")
        return made


def parse_sources(items: Sequence[Mapping[str, Any]]) -> list[MixSource]:
    sources = [MixSource.from_dict(item) for item in items]
    names = [s.name for s in sources]
    twice = sorted({n for n in names if names.count(n) > 1})
    if twice:
        raise MixError(f"curation.mix: source names used twice: {', '.join(twice)}")
    return sources


def resolve_path(source: MixSource, pins: Mapping[str, Pin]) -> Path | None:
    """The local file a ``pinned`` or ``jsonl`` source reads (a pinned one fetched: mirrors,
    cache, then its URL); None for a ``hub`` source. ``pins``: the config's pinned files by key
    (:func:`selfalign.pins.config_pins`)."""
    if source.kind == "jsonl":
        return Path(str(source.path)).expanduser()
    if source.kind != "pinned":
        return None
    if source.pin:
        if source.pin not in pins:
            raise MixError(f"curation.mix[{source.name!r}]: pin {source.pin!r} is not one of the config's "
                           f"pinned files ({', '.join(sorted(pins)) or 'none'})")
        return pins[source.pin].fetch()
    pin = Pin(f"curation.mix.{source.name}", str(source.url), str(source.sha256).lower(),
              cache_dir=f"~/.cache/selfalign/mix/{source.name}")
    return pin.fetch()


def _file_rows(path: Path) -> Iterator[tuple[str, int, Any]]:
    opener: Any = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rt", encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    try:
                        yield f"{path}:{lineno}", lineno, json.loads(line)
                    except json.JSONDecodeError as exc:
                        raise MixError(f"{path}:{lineno}: not JSON ({exc})") from None
    except FileNotFoundError:
        raise MixError(f"{path}: no such file") from None


def _hub_rows(source: MixSource) -> Iterator[tuple[str, int, Any]]:
    import datasets

    loaded = datasets.load_dataset(str(source.dataset), data_dir=source.data_dir, revision=source.revision,
                                   split=source.split)
    for index, row in enumerate(loaded):
        yield f"{source.dataset}@{source.revision}:{source.split}[{index}]", index, row


def to_pair(row: Any, fmt: str, where: str) -> tuple[str, str]:
    """A row's (instruction, response) under ``fmt``; a missing or non-string field is an error
    naming where the row is."""
    if not isinstance(row, Mapping):
        raise MixError(f"{where}: not a JSON object")
    if fmt == "oasst_conversation":  # octopack's README: the first two messages of each tree
        messages = row.get("conversations")
        if not isinstance(messages, list) or len(messages) < 2:
            raise MixError(f"{where}: field 'conversations' missing or not a list of two or more messages")
        for k, message in enumerate(messages[:2]):
            if not isinstance(message, Mapping) or not isinstance(message.get("text"), str):
                raise MixError(f"{where}: field 'conversations[{k}].text' missing or not a string")
        return messages[0]["text"], messages[1]["text"]
    fields = {"prompt_completion": ("prompt", "completion"), "instruction_response": ("instruction", "response"),
              "commit": ("subject", "old_contents", "new_contents")}[fmt]
    for name in fields:
        if not isinstance(row.get(name), str):
            raise MixError(f"{where}: field {name!r} missing or not a string (format {fmt})")
    if fmt == "commit":  # octopack e17a8f6 dataset/oasst/add_commitpackft.py
        return row["subject"] + "\n" + row["old_contents"], row["new_contents"]
    return row[fields[0]], row[fields[1]]


def chosen_indices(n: int, source: MixSource) -> list[int]:
    """Which of ``n`` rows a source contributes: all, or a seeded sample kept in file order."""
    want = n if source.count is None and source.fraction is None else (
        source.count if source.count is not None else round(float(source.fraction or 0) * n))
    if want > n:
        raise MixError(f"curation.mix[{source.name!r}]: count {want} but the source has {n} rows")
    if want == n:
        return list(range(n))
    return sorted(random.Random(source.seed).sample(range(n), want))


@dataclass(frozen=True)
class MixRecord:
    id: str
    source: str
    instruction: str
    response: str


def load_source(source: MixSource, pins: Mapping[str, Pin] | None = None) -> tuple[list[MixRecord], int]:
    """The chosen records of ``source`` (every row checked first) and its row count."""
    path = resolve_path(source, pins or {})
    rows = _hub_rows(source) if path is None else _file_rows(path)
    pairs: list[tuple[int, str, str]] = []
    for where, _, row in rows:
        instruction, response = to_pair(row, source.format, where)
        pairs.append((len(pairs), instruction, response))
    keep = chosen_indices(len(pairs), source)
    return [MixRecord(f"{source.name}:{pairs[i][0]}", source.name, pairs[i][1], pairs[i][2]) for i in keep], len(pairs)
