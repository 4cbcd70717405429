"""The chain, defined once: every stage from seed functions to the SFT set, in order.

The rules (which stages ``start_from`` can stand in for, which artifacts the report reads),
the run report's funnel, the dataset card, ``selfalign explain``, the importer (which fields a
record of a stage must have), the ``selfalign`` CLI (the commands of the record stages) and the
tests all read :data:`STAGES`. Adding a stage is one :class:`Stage` entry here, its rule, its
function and its config section (README, "Architecture: add a stage").

Each stage names its artifact (relative to the results directory), the unit its counts are in,
the stage it reads, whether it drops records (and so writes a drop file,
:func:`dropped_path`), and whether ``start_from`` can import it. Ids flow through unchanged
from the seed on (``<seed id>``) until the I->R stage's samples, which are
``<record id>/<sample>``; :func:`root_id` maps any id back to the record it came from.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Unit = Literal["functions", "seeds", "records", "samples"]


@dataclass(frozen=True)
class PaperFigure:
    """A published count at a funnel stage, and how the source words it."""

    value: int
    text: str


@dataclass(frozen=True)
class Command:
    """How ``selfalign`` runs a record stage that reads one JSONL (``--input``) and writes one
    (``--out``), with its sidecar and drop file: the CLI builds the command from this."""

    words: tuple[str, ...]  # the words after `selfalign`, e.g. ("seeds", "quality")
    help: str
    run: str  # "module:function", called as run(input, out[, params], **options) -> StageStats
    params: str | None = None  # "module:Class" (from_dict) of its --params; None: it takes none
    shards: bool = False  # --shard / --num-shards, passed on as shard= / num_shards=
    workers: bool = False  # --workers, passed on as workers=
    input_help: str = "the JSONL the stage reads (the artifact of the stage before it)"
    sidecar_extra: tuple[tuple[str, Any], ...] = ()  # constant facts for its sidecar


@dataclass(frozen=True)
class Stage:
    """One stage of the chain and the artifact it writes."""

    key: str
    artifact: str  # relative to the results directory
    label: str  # the funnel's words
    unit: Unit
    reads: str | None  # the key of the stage whose artifact it reads
    sidecar_stage: str  # the ``stage`` its sidecar names
    card: str | None = None  # the dataset card's words; None: not on the card
    drops: bool = True  # writes <artifact>.dropped.jsonl
    importable: bool = True  # start_from can stand in for it
    paper: PaperFigure | None = None
    #: the sidecar carries its counts under ``stats`` (the I->R stage counts requests and
    #: samples there; the "samples" row reads them)
    counted_in_stats: bool = False
    #: the fields (and their types) a record of this stage must have, besides ``id`` (what an
    #: import of it checks)
    fields: tuple[tuple[str, type], ...] = (("content", str),)
    #: what ``selfalign explain`` shows of a kept record: the words before it, the field, and
    #: how many of its characters
    shows: tuple[str, str, int] = ("", "content", 120)
    #: how ``selfalign`` runs it, for a stage that is one JSONL in, one out (None: a command of
    #: its own, with arguments the table does not cover)
    command: Command | None = None

    @property
    def per_sample(self) -> bool:
        """Its records are samples (``<record id>/<sample>``), not whole records."""
        return self.unit == "samples" and not self.counted_in_stats


#: The chain from seed functions to the SFT set. ``samples`` is the I->R stage counted in
#: response samples (its sidecar's stats), the unit every later stage counts in; it writes no
#: file of its own.
STAGES: tuple[Stage, ...] = (
    Stage("raw", "seeds/raw.jsonl", "seed functions extracted", "functions", None, "seeds.raw",
          paper=PaperFigure(5_000_000, "~5M functions")),
    Stage("dedup", "seeds/dedup.jsonl", "near-dedup (MinHash + LSH)", "functions", "raw", "seeds.dedup"),
    Stage("quality", "seeds/quality.jsonl", "high-quality subset", "functions", "dedup", "seeds.quality",
          command=Command(("seeds", "quality"), "return-value check, autoimport, Pyright",
                          "selfalign.seeds.quality:run_quality", "selfalign.seeds.quality:QualityParams",
                          shards=True, workers=True)),
    Stage("filtered", "seeds/filtered.jsonl", "heuristic filter", "functions", "quality", "seeds.filter",
          card="seed functions after the heuristic filter",
          command=Command(("seeds", "filter"), "heuristic filters and benchmark decontamination",
                          "selfalign.seeds.filter:run_filter", "selfalign.seeds.filter:FilterParams", shards=True)),
    Stage("judged", "seeds/judged.jsonl", "LLM judge", "seeds", "filtered", "generate.judge",
          card="seeds the base model judged useful", paper=PaperFigure(250_000, "≈250k seeds")),
    Stage("concepts", "concepts.jsonl", "S->C concepts", "records", "judged", "generate.concepts",
          card="seeds with concepts (S->C)", fields=(("content", str), ("concepts", list)),
          shows=("concepts: ", "concepts", 160)),
    Stage("instructions", "instructions.jsonl", "C->I instructions", "records", "concepts",
          "generate.instructions", card="instructions (C->I)",
          paper=PaperFigure(238_000, "≈238k instructions"),
          fields=(("concepts", list), ("instruction", str)), shows=("instruction: ", "instruction", 160)),
    Stage("responses", "responses.jsonl", "I->R: instructions answered", "records", "instructions",
          "generate.responses", card="instructions with responses (I->R)",
          fields=(("instruction", str), ("responses", list))),
    Stage("samples", "responses.jsonl", "I->R: response samples", "samples", "instructions",
          "generate.responses", drops=False, importable=False, counted_in_stats=True,
          paper=PaperFigure(2_400_000, "2.4M samples")),
    Stage("executed", "executed.jsonl", "execution filter (sandbox)", "samples", "responses", "execute",
          card="samples that passed their own tests in the sandbox",
          paper=PaperFigure(500_000, "~500k samples pass"), fields=(("instruction", str), ("response", str)),
          command=Command(("execute",), "run each response's code and tests in the sandbox; keep passing samples",
                          "selfalign.execution:run_execution", "selfalign.execution:ExecutionParams",
                          shards=True, input_help="responses.jsonl (or upstream I->R records)",
                          sidecar_extra=(("counted", "samples"),))),
    Stage("sanitized", "sanitized.jsonl", "sanitized (four sections)", "samples", "executed", "sanitize",
          card="samples in the four-section response format", importable=False, shows=("", "response", 120),
          command=Command(("curate", "sanitize"), "upstream's response-format checks (raw mode)",
                          "selfalign.curation:run_sanitize", input_help="executed.jsonl")),
    Stage("cleaned", "cleaned.jsonl", "cleaned (dedup, one per instruction)", "samples", "sanitized",
          "clean", card="one response per unique instruction, diverse function names", importable=False,
          shows=("", "response", 120),
          command=Command(("curate", "clean"), "seeded shuffle, exact dedup, function-name diversity",
                          "selfalign.curation:run_clean", "selfalign.curation:CleanParams",
                          input_help="sanitized.jsonl")),
    Stage("sft", "sft.jsonl", "SFT set (SMART rewrite, decontaminated)", "samples", "cleaned", "sft",
          card="final records (SMART rewrite, decontaminated)", importable=False,
          paper=PaperFigure(50_000, "50k examples"), shows=("SFT record; instruction: ", "instruction", 120)),
)

BY_KEY: dict[str, Stage] = {s.key: s for s in STAGES}

#: Stages with an artifact of their own (every stage but the ``samples`` counting row).
ARTIFACT_STAGES: tuple[Stage, ...] = tuple(s for s in STAGES if not s.counted_in_stats)

#: The record stages whose ``selfalign`` command the CLI builds from their :class:`Command`.
COMMAND_STAGES: tuple[Stage, ...] = tuple(s for s in STAGES if s.command is not None)

#: The stages ``start_from`` can stand in for, in chain order, with the artifact each writes.
IMPORT_STAGES: dict[str, str] = {s.key: s.artifact for s in STAGES if s.importable}

#: The seed stages (before the model is asked anything).
SEED_STAGES: tuple[str, ...] = ("raw", "dedup", "quality", "filtered")

DROPPED_SUFFIX = ".dropped.jsonl"

#: The reason prefix of a drop record for one sample of a record the stage kept (the I->R
#: stage's unparsable samples): counted in the sidecar's ``stats.sample_drops``, not ``drops``.
SAMPLE_DROP_PREFIX = "sample:"

#: The reason prefix of a drop record for a source file extraction skipped (undecodable), in
#: ``seeds/raw.dropped.jsonl`` before the functions' own: counted in the raw sidecar's
#: ``stats.files_skipped``. Such a record's id is the file's (its functions' id prefix).
FILE_DROP_PREFIX = "file:"

#: Each prefix of drop records that count something other than the stage's records, and the
#: sidecar ``stats`` key that counts them by reason.
PREFIXED_DROPS: dict[str, str] = {SAMPLE_DROP_PREFIX: "sample_drops", FILE_DROP_PREFIX: "files_skipped"}


def stage(key: str) -> Stage:
    try:
        return BY_KEY[key]
    except KeyError:
        raise KeyError(f"no stage {key!r}; the chain is {', '.join(BY_KEY)}") from None


def by_sidecar_stage(name: str) -> Stage | None:
    """The artifact stage whose sidecar says ``stage: name`` (``import.<key>`` for an import)."""
    if name.startswith("import."):
        return BY_KEY.get(name.removeprefix("import."))
    for s in ARTIFACT_STAGES:
        if s.sidecar_stage == name:
            return s
    return None


def dropped_path(artifact: str | os.PathLike[str]) -> Path:
    """``x.jsonl`` -> ``x.dropped.jsonl``: the drop file beside a stage's output (or shard)."""
    path = Path(artifact)
    stem = path.name.removesuffix(".jsonl")
    return path.with_name(stem + DROPPED_SUFFIX)


def root_id(record_id: str, *, per_sample: bool) -> str:
    """The id of the record a record or sample came from: ``<id>/<sample>`` -> ``<id>``."""
    if per_sample:
        head, sep, tail = record_id.rpartition("/")
        if sep and tail.isdigit():
            return head
    return record_id
