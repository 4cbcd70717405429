"""Start the chain from a published dataset or a local JSONL instead of regenerating earlier stages.

``start_from: {stage: S, ...}`` replaces every stage up to and including ``S`` by an import
that writes ``S``'s artifact; the rules after it run as usual. ``S`` is any artifact of the
chain up to the execution filter (:data:`IMPORT_STAGES`).

Two record shapes are read (``shape``):

* ``selfalign``: our own records (a JSONL of a previous run, or a dataset with our fields);
  for the seed stages a dataset's ``content_field`` becomes ``content`` and its id (or the row
  number) the ``id``.
* ``release``: what the release's scripts (tag ``starcoder2-instruct`` = 0b19dbc) wrote and
  BigCode published: ``self_ossinstruct.py`` rows (``seed``, ``concepts``, ``instruction``,
  ``parsing_result: [{response}]``, plus ``id``, ``sha1``, ``prompt``, ``fingerprint``) and
  ``execution_filter.py`` rows (one passing ``response`` per row), i.e. the datasets
  ``bigcode/python-stack-v1-functions-filtered-sc2`` (judged seeds),
  ``bigcode/self-oss-instruct-sc2-concepts``, ``-instructions``, ``-responses`` and
  ``-exec-filter-500k-raw``. They are mapped to our fields, keeping their ids: ``id`` is the
  published ``id`` (row number where there is none); a stage with several rows per published
  id (the execution filter keeps every passing sample of an instruction) numbers them in file
  order (``<id>/<k>``, our own ``<source_id>/<sample>`` convention). ``prompt`` and
  ``fingerprint`` are left out, as the release itself drops them before each next stage; every
  other published field is kept under ``origin.fields``.

Every record gets an ``origin`` naming the dataset (or file), revision, split and row, so each
downstream record traces back to its published row. Ids must be unique (checked: an error
names the row and how to number rows instead).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from . import chain
from .config import check_params, reject_unknown
from .records import JsonObj, RecordError, atomic_writer, dumps, iter_jsonl
from .runtime import StageStats, progress

Shape = Literal["selfalign", "release"]

#: The stages an import can replace, in chain order, with the artifact (under the results
#: directory) each writes (from :mod:`selfalign.chain`). The rules read this to know what an
#: import stands in for.
IMPORT_STAGES: dict[str, str] = chain.IMPORT_STAGES

#: The fields (beyond ``id``) a record of each stage must carry for the next stage to run.
STAGE_FIELDS: dict[str, dict[str, type]] = {s.key: dict(s.fields) for s in chain.STAGES if s.importable}

#: Release fields the release drops itself before each next stage (``original_mapping`` in
#: self_ossinstruct.py), and the ones mapped to our own fields.
RELEASE_DROPPED = ("prompt", "fingerprint")
RELEASE_MAPPED = ("id", "seed", "concepts", "instruction", "parsing_result", "response")


@dataclass(frozen=True)
class ImportSpec:
    stage: str
    jsonl: str | None = None
    dataset: str | None = None
    data_files: list[str] | None = None
    revision: str | None = None
    split: str = "train"
    shape: Shape = "selfalign"
    #: the seed text's field: ``content`` for our shape, ``seed`` for the release's
    content_field: str | None = None
    #: the id's field; None: the row number. Default: ``id`` for the release's shape and for
    #: our JSONL, the row number for a dataset in our shape (as before ``shape`` existed).
    id_field: str | None = ""

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportSpec:
        reject_unknown(cls, data, "start_from")
        spec = cls(**data)
        if (spec.jsonl is None) == (spec.dataset is None):
            raise ValueError("start_from needs exactly one of 'jsonl' or 'dataset'")
        if spec.stage not in IMPORT_STAGES:
            raise ValueError(f"start_from.stage must be one of {', '.join(IMPORT_STAGES)}, got {spec.stage!r}")
        if spec.shape not in ("selfalign", "release"):
            raise ValueError(f"start_from.shape must be 'selfalign' or 'release', got {spec.shape!r}")
        check_params(cls, data, "start_from")  # the rest of the schema, after the words above
        return spec

    @property
    def label(self) -> str:
        if self.jsonl is not None:
            return self.jsonl
        assert self.dataset is not None
        return self.dataset if not self.data_files else f"{self.dataset}:{','.join(self.data_files)}"

    @property
    def resolved_content_field(self) -> str:
        if self.content_field is not None:
            return self.content_field
        return "seed" if self.shape == "release" else "content"

    @property
    def resolved_id_field(self) -> str | None:
        if self.id_field != "":
            return self.id_field
        return "id" if self.shape == "release" or self.jsonl is not None else None

    def origin(self, line: int) -> JsonObj:
        """Where a record came from: the file's line (from 1), or the dataset's row (from 0,
        as the Hub's viewer and ``dataset[i]`` count)."""
        if self.jsonl is not None:
            return {"file": self.jsonl, "line": line}
        return {"dataset": self.dataset, "revision": self.revision, "split": self.split, "row": line - 1}


def _rows(spec: ImportSpec) -> Iterator[tuple[int, JsonObj]]:
    """``(line, row)`` of the source: a JSONL's line number, or a dataset's row index + 1."""
    if spec.jsonl is not None:
        yield from iter_jsonl(spec.jsonl)
        return
    import datasets

    kwargs: dict[str, Any] = {"split": spec.split}
    if spec.revision:
        kwargs["revision"] = spec.revision
    if spec.data_files:
        kwargs["data_files"] = spec.data_files
    for index, row in enumerate(datasets.load_dataset(spec.dataset, **kwargs)):
        yield index + 1, dict(row)


class _Mapper:
    """One source row -> one record of ``spec.stage`` in our shape."""

    def __init__(self, spec: ImportSpec):
        self.spec = spec
        self.where = spec.label
        self.per_id: Counter[str] = Counter()

    def _field(self, row: JsonObj, line: int, name: str, kind: type) -> Any:
        if name not in row:
            raise RecordError(self.where, line, "missing", field=name)
        value = row[name]
        if not isinstance(value, kind) or isinstance(value, bool):
            raise RecordError(self.where, line, f"expected {kind.__name__}, got {type(value).__name__}", field=name)
        return value

    def _key(self, row: JsonObj, line: int) -> str:
        """The record's id: the source's (published ids kept as they are; a dataset in our
        shape prefixes its name, as ids of our own runs do), or the row number."""
        spec = self.spec
        id_field = spec.resolved_id_field
        numbered = f"{spec.dataset}/{line - 1:09d}" if spec.dataset else f"line{line:09d}"
        if id_field is None:
            return numbered
        if id_field not in row:
            if spec.shape == "release" and spec.id_field == "":
                return numbered  # the release's local I->R and execution-filter outputs carry no id
            raise RecordError(self.where, line, "missing (set start_from.id_field: null to number rows)", field=id_field)
        value = row[id_field]
        if isinstance(value, bool) or not isinstance(value, (str, int)):
            raise RecordError(self.where, line, f"must be a string or an integer, got {type(value).__name__}", field=id_field)
        prefix = f"{spec.dataset}/" if spec.dataset and spec.shape == "selfalign" else ""
        return f"{prefix}{value}"

    def __call__(self, line: int, row: JsonObj) -> JsonObj:
        return self._release(line, row) if self.spec.shape == "release" else self._selfalign(line, row)

    def _selfalign(self, line: int, row: JsonObj) -> JsonObj:
        record = dict(row)
        content_field = self.spec.resolved_content_field
        if "content" in STAGE_FIELDS[self.spec.stage]:
            self._field(row, line, content_field, str)
        if content_field != "content" and content_field in record:
            record["content"] = record.pop(content_field)
        key = self._key(row, line)
        replaced = {"id": record["id"]} if "id" in record and record["id"] != key else {}
        record.pop("id", None)
        for name, kind in STAGE_FIELDS[self.spec.stage].items():
            self._field(record, line, name, kind)
        if self.spec.dataset is not None:  # a JSONL of our own records is copied as it is
            record["origin"] = {**self.spec.origin(line), **({"fields": replaced} if replaced else {})}
        return {"id": key, **record}

    def _release(self, line: int, row: JsonObj) -> JsonObj:
        stage = self.spec.stage
        key = self._key(row, line)
        record: JsonObj = {"id": key}
        seed_field = self.spec.resolved_content_field
        if seed_field in row:
            record["content"] = self._field(row, line, seed_field, str)
        if stage in ("concepts", "instructions", "responses", "executed") and "concepts" in row:
            record["concepts"] = self._field(row, line, "concepts", list)
        if stage in ("instructions", "responses", "executed"):
            record["instruction"] = self._field(row, line, "instruction", str)
        if stage == "responses":
            if "parsing_result" in row:
                results = self._field(row, line, "parsing_result", list)
                responses = []
                for sample, item in enumerate(results):
                    if not isinstance(item, dict) or not isinstance(item.get("response"), str):
                        raise RecordError(self.where, line, f"item {sample} has no string 'response'", field="parsing_result")
                    responses.append({"sample": sample, "response": item["response"]})
            else:  # --num_sample_per_request 1 writes the one response at the top level
                responses = [{"sample": 0, "response": self._field(row, line, "response", str)}]
            record["responses"] = responses
        if stage == "executed":
            sample = self.per_id[key]
            self.per_id[key] += 1
            record.update(
                id=f"{key}/{sample}",
                source_id=key,
                sample=sample,
                response=self._field(row, line, "response", str),
                execution={"status": "pass", "reason": f"imported ({self.spec.label})"},
            )
        for name, kind in STAGE_FIELDS[stage].items():
            if name not in record:  # e.g. a seed stage whose rows lack the seed text
                self._field(row, line, name, kind)
        kept = {k: v for k, v in row.items() if k not in RELEASE_DROPPED + RELEASE_MAPPED and k != seed_field}
        if "id" in row:
            kept["id"] = row["id"]
        record["origin"] = {**self.spec.origin(line), "shape": "release", "fields": kept}
        return record


def import_records(spec: ImportSpec, output: str | Path, show_progress: bool = True) -> StageStats:
    """Write the imported records to ``output``; ids must be unique (checked, not assumed)."""
    stats = StageStats()
    seen: set[str] = set()
    mapper = _Mapper(spec)
    with atomic_writer(output) as out:
        rows = progress(_rows(spec), desc=f"import {spec.stage}", enabled=show_progress)
        for line, row in rows:
            record = mapper(line, row)
            if record["id"] in seen:
                raise RecordError(
                    spec.label, line,
                    f"duplicate id {record['id']!r} (set start_from.id_field: null to number rows instead)",
                    field=spec.resolved_id_field or "id",
                )
            seen.add(record["id"])
            out.write(dumps(record) + "\n")
            stats.n_in += 1
            stats.n_out += 1
    stats.extra = {
        "source": {k: v for k, v in spec.__dict__.items() if v not in (None, "")},
        "artifact": IMPORT_STAGES[spec.stage],
    }
    return stats
