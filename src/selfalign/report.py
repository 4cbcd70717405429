"""The run's reproducibility report: ``results/<run>/report/``.

``index.html`` is one self-contained page (inline CSS, the funnel plot as inline SVG, no
script, nothing fetched when it is opened): the funnel from the seed functions to the SFT set
with the drops per reason, the EvalPlus table beside the paper's numbers, every artifact's
hash and provenance (and whether the hashes its inputs were read with are the hashes of the
artifacts the run kept), and the run's config and package versions. ``report.json`` holds the
same facts for a program; ``funnel.svg`` is the plot alone.

Every number comes from the run's artifacts and their ``.meta.json`` sidecars; the only
constants are the paper's published figures (the funnel's in :mod:`selfalign.chain`, the
pass@1 from :mod:`selfalign.evaluation.score`). Nothing that changes between two runs
of the same config is on it (sidecars' wall times, timestamps and hosts, how much work was
resumed), so the same run gives the same bytes.
"""

from __future__ import annotations

import html
import io
import itertools
import json
import os
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

import yaml

from .chain import ARTIFACT_STAGES, SAMPLE_DROP_PREFIX, STAGES, Stage, dropped_path
from .config import recipe_line
from .evaluation.score import PAPER_PASS_AT_1, TABLE_HEADER, markdown_table, table_rows
from .mix import SELF
from .provenance import SIDECAR_SUFFIX, artifact_digest, artifact_size, sidecar_path
from .records import atomic_writer, fingerprint, sha256_file

#: The report's own directory under the results directory (never read as a run artifact).
REPORT_DIR = "report"

#: Sidecar keys every artifact's sidecar has (see :func:`selfalign.provenance.write_sidecar`).
SIDECAR_KEYS = ("artifact", "stage", "sha256", "bytes", "counts", "drops", "inputs", "config", "code")

#: Where the published funnel figures come from.
PAPER_SOURCE = (
    "the StarCoder2-Instruct paper (Wei et al. 2024, arXiv:2410.24198) and the v0.1 release's "
    "dataset cards (bigcode/self-oss-instruct-sc2-*)"
)

#: Examples the report shows per stage: this many kept records, and one dropped record for
#: each of this many most frequent drop reasons.
KEPT_EXAMPLES = 2
DROP_REASON_EXAMPLES = 3


class ReportError(ValueError):
    """A sidecar or artifact the report needs is missing, malformed or stale."""


#: The funnel's stages (selfalign.chain.STAGES, defined once for the whole package).
FUNNEL_STAGES: tuple[Stage, ...] = STAGES

#: Why records between two stages were not passed on although no stage dropped them.
BEYOND_LIMIT = "beyond generation.limit (not judged)"


# ------------------------------------------------------------------------------ sidecars


def load_sidecar(path: str | os.PathLike[str]) -> dict[str, Any]:
    """A sidecar's JSON, checked for the keys every sidecar has; :class:`ReportError` naming
    the file when it is missing or malformed."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ReportError(f"{path}: missing sidecar") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ReportError(f"{path}: unreadable sidecar ({exc})") from None
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ReportError(f"{path}: malformed sidecar, not JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise ReportError(f"{path}: malformed sidecar, not a JSON object")
    missing = [k for k in SIDECAR_KEYS if k not in meta]
    if missing:
        raise ReportError(f"{path}: malformed sidecar, no {', '.join(repr(k) for k in missing)}")
    checks = (
        ("sha256", str),
        ("bytes", int),
        ("counts", dict),
        ("drops", dict),
        ("inputs", list),
        ("config", dict),
        ("code", dict),
    )
    for key, kind in checks:
        if not isinstance(meta[key], kind):
            raise ReportError(f"{path}: malformed sidecar, {key!r} is not {kind.__name__}")
    for name, value in [*meta["counts"].items(), *meta["drops"].items()]:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ReportError(f"{path}: malformed sidecar, count {name!r} is not an integer")
    for item in meta["inputs"]:
        if not isinstance(item, dict) or "path" not in item or "sha256" not in item:
            raise ReportError(f"{path}: malformed sidecar, an input without path and sha256")
    return meta


def _count(meta: Mapping[str, Any], key: str, where: Path) -> int:
    value = meta["counts"].get(key)
    if not isinstance(value, int):
        raise ReportError(f"{where}: malformed sidecar, no integer counts.{key}")
    return value


# -------------------------------------------------------------------------------- funnel


@dataclass
class FunnelRow:
    """One funnel stage as this run's sidecars count it."""

    stage: Stage
    sidecar_stage: str
    n_in: int
    n_out: int
    drops: dict[str, int]
    skipped: dict[str, int] = field(default_factory=dict)
    #: records from outside the chain, by source (curation.mix): in == previous out + added
    added: dict[str, int] = field(default_factory=dict)
    chained: bool | None = None  # in == previous out + skipped + added; None: first row or unit change

    @property
    def dropped(self) -> int:
        return sum(self.drops.values())

    @property
    def balanced(self) -> bool:
        """Every record in is out or dropped for a named reason."""
        return self.n_in == self.n_out + self.dropped

    @property
    def label(self) -> str:
        """The stage's name; a stage replaced by ``start_from`` says it was imported."""
        imported = self.sidecar_stage.startswith("import.")
        return f"{self.stage.label} (imported)" if imported else self.stage.label

    def to_json(self) -> dict[str, Any]:
        paper = self.stage.paper
        return {
            "key": self.stage.key,
            "label": self.label,
            "artifact": self.stage.artifact,
            "sidecar_stage": self.sidecar_stage,
            "unit": self.stage.unit,
            "in": self.n_in,
            "out": self.n_out,
            "dropped": self.dropped,
            "drops": self.drops,
            "skipped_before": self.skipped,
            **({"added_from_sources": self.added} if self.added else {}),
            "balanced": self.balanced,
            "chained": self.chained,
            "paper": {"out": paper.value, "text": paper.text} if paper else None,
        }


def _sorted_drops(drops: Mapping[str, int]) -> dict[str, int]:
    """Largest first, then by name: a stable order for the table and the plot."""
    return dict(sorted(drops.items(), key=lambda kv: (-kv[1], kv[0])))


def _funnel_row(stage: Stage, meta: Mapping[str, Any], where: Path) -> FunnelRow:
    if stage.counted_in_stats:
        stats = meta.get("stats")
        if not isinstance(stats, dict) or not all(
            isinstance(stats.get(k), int) for k in ("samples", "samples_kept")
        ):
            raise ReportError(f"{where}: malformed sidecar, no integer stats.samples and stats.samples_kept")
        sample_drops = stats.get("sample_drops", {})
        if not isinstance(sample_drops, dict) or not all(isinstance(v, int) for v in sample_drops.values()):
            raise ReportError(f"{where}: malformed sidecar, stats.sample_drops is not counts by reason")
        return FunnelRow(stage, str(meta["stage"]), stats["samples"], stats["samples_kept"],
                         _sorted_drops(sample_drops))
    row = FunnelRow(stage, str(meta["stage"]), _count(meta, "in", where), _count(meta, "out", where),
                    _sorted_drops(meta["drops"]))
    if stage.key == "judged":
        beyond = (meta.get("stats") or {}).get("records_beyond_limit", 0)
        if beyond:
            row.skipped = {BEYOND_LIMIT: int(beyond)}
    sources = (meta.get("stats") or {}).get("sources") or {}
    row.added = {name: int(e["in"]) for name, e in sources.items() if name != SELF and isinstance(e, dict)}
    return row


def build_funnel(results_dir: str | os.PathLike[str]) -> list[FunnelRow]:
    """The funnel rows from the first stage this run has (a run may start from an imported
    stage) to the SFT set; every stage after the first must have its sidecar."""
    results_dir = Path(results_dir)
    present = [
        (results_dir / s.artifact).exists() or sidecar_path(results_dir / s.artifact).exists()
        for s in FUNNEL_STAGES
    ]
    if not any(present):
        raise ReportError(
            f"{sidecar_path(results_dir / FUNNEL_STAGES[-1].artifact)}: missing sidecar"
            f" (no funnel stage of the run is in {results_dir})"
        )
    first = present.index(True)
    rows: list[FunnelRow] = []
    for stage in FUNNEL_STAGES[first:]:
        where = sidecar_path(results_dir / stage.artifact)
        row = _funnel_row(stage, load_sidecar(where), where)
        # I->R's samples are counted in another unit than the instructions before them
        if rows and not stage.counted_in_stats:
            row.chained = row.n_in + sum(row.skipped.values()) - sum(row.added.values()) == rows[-1].n_out
        rows.append(row)
    return rows


# ----------------------------------------------------------------------------- artifacts


def _display(prefix: str, rel: str) -> str:
    return str(PurePosixPath(prefix) / rel)


@dataclass
class Artifact:
    """One file or directory of the run with its hash and where the hash comes from."""

    rel: str
    path: str
    kind: str
    bytes: int
    sha256: str
    hashed_by: str  # "sidecar" or "report"
    meta: dict[str, Any] | None = None
    inputs: list[dict[str, Any]] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "path": self.path,
            "kind": self.kind,
            "bytes": self.bytes,
            "sha256": self.sha256,
            "sha256_from": self.hashed_by,
        }
        if self.meta is not None:
            config = self.meta["config"]
            out.update(
                {
                    "sidecar": self.path + SIDECAR_SUFFIX,
                    "stage": self.meta["stage"],
                    "counts": self.meta["counts"],
                    "drops": self.meta["drops"],
                    "config_sha256": fingerprint(config),
                    "config": config,
                    "code": self.meta["code"],
                    "inputs": self.inputs,
                }
            )
        return out


def _sidecar_artifact(results_dir: Path, prefix: str, meta_path: Path, verify: bool) -> Artifact:
    meta = load_sidecar(meta_path)
    target = Path(str(meta_path)[: -len(SIDECAR_SUFFIX)])
    rel = target.relative_to(results_dir).as_posix()
    if not target.exists():
        raise ReportError(f"{meta_path}: sidecar of a missing artifact {target}")
    size = artifact_size(target)
    if size != meta["bytes"]:
        raise ReportError(f"{meta_path}: stale sidecar, it says {meta['bytes']} bytes, {target} has {size}")
    if verify:
        digest = artifact_digest(target)[0]
        if digest != meta["sha256"]:
            raise ReportError(f"{meta_path}: stale sidecar, {target} hashes to {digest}, not {meta['sha256']}")
    kind = "directory" if target.is_dir() else "file"
    return Artifact(rel, _display(prefix, rel), kind, meta["bytes"], meta["sha256"], "sidecar", meta)


def _hashed_artifact(results_dir: Path, prefix: str, path: Path) -> Artifact:
    if not path.is_file():
        raise ReportError(f"{path}: missing artifact")
    rel = path.relative_to(results_dir).as_posix()
    return Artifact(rel, _display(prefix, rel), "file", path.stat().st_size, sha256_file(path), "report")


def _inner_files(artifacts: Iterable[Artifact]) -> dict[str, tuple[str, str]]:
    """Files inside directory artifacts whose hash a sidecar records: display path ->
    (sha256, the directory artifact's path)."""
    known: dict[str, tuple[str, str]] = {}
    for art in artifacts:
        if art.kind != "directory" or art.meta is None:
            continue
        for item in art.meta["inputs"]:
            if str(item["path"]).startswith(art.path + "/") and item["sha256"]:
                known[str(item["path"])] = (item["sha256"], art.path)
        files = (art.meta.get("final_checkpoint") or {}).get("files") or {}
        for name, digest in files.items():
            known[f"{art.path}/{name}"] = (digest, art.path)
    return known


def collect_artifacts(
    results_dir: str | os.PathLike[str],
    *,
    prefix: str | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    verify: bool = False,
) -> list[Artifact]:
    """Every artifact with a sidecar under ``results_dir`` (the report's own excluded), and
    ``files`` (artifacts without one, hashed here), each input linked to the artifact it was
    read from.

    ``prefix`` is how the run's paths are written (the sidecars' input paths are relative to
    the workflow directory, e.g. ``results/tiny``); default: ``results_dir`` as given.
    """
    results_dir = Path(results_dir)
    prefix = prefix if prefix is not None else str(results_dir)
    if not results_dir.is_dir():
        raise ReportError(f"{results_dir}: no such results directory")
    arts: dict[str, Artifact] = {}
    for meta_path in sorted(results_dir.rglob("*" + SIDECAR_SUFFIX)):
        rel = meta_path.relative_to(results_dir)
        if rel.parts[0] == REPORT_DIR:
            continue
        art = _sidecar_artifact(results_dir, prefix, meta_path, verify)
        arts[art.path] = art
    for path in files:
        art = _hashed_artifact(results_dir, prefix, Path(path))
        arts.setdefault(art.path, art)
    inner = _inner_files(arts.values())
    hashed: dict[str, Artifact] = {}
    for art in list(arts.values()):
        if art.meta is None:
            continue
        for item in art.meta["inputs"]:
            art.inputs.append(_link(str(item["path"]), item["sha256"], arts, inner, hashed, results_dir, prefix))
    arts.update(hashed)
    return [arts[k] for k in sorted(arts)]


def _link(
    path: str,
    digest: str | None,
    arts: Mapping[str, Artifact],
    inner: Mapping[str, tuple[str, str]],
    hashed: dict[str, Artifact],
    results_dir: Path,
    prefix: str,
) -> dict[str, Any]:
    """How an input's recorded hash relates to what the run kept."""
    entry: dict[str, Any] = {"path": path, "sha256": digest}
    if path in arts or path in inner:
        expected, source = (arts[path].sha256, path) if path in arts else inner[path]
        entry["from"] = source
    elif PurePosixPath(path).is_relative_to(PurePosixPath(prefix)):
        rel = PurePosixPath(path).relative_to(PurePosixPath(prefix))
        on_disk = results_dir / rel
        if not on_disk.is_file():
            entry["status"] = "temporary"  # a temp() shard, removed once merged
            return entry
        # an input of the run with no sidecar of its own (e.g. a prompt text): hash it here
        if path not in hashed:
            hashed[path] = _hashed_artifact(results_dir, prefix, on_disk)
        expected, entry["from"] = hashed[path].sha256, path
    else:
        entry["status"] = "external"
        return entry
    if digest is None:
        entry["status"] = "not hashed"
    else:
        entry["status"] = "match" if digest == expected else "differs"
    return entry


# ---------------------------------------------------------------------------- evaluation


def build_eval(paths: Sequence[str | os.PathLike[str]], table_md: str | os.PathLike[str] | None) -> dict[str, Any]:
    """The eval table's rows (as ``eval/table.md`` has them) and its numbers beside the paper's."""
    results = []
    for path in paths:
        try:
            result = json.loads(Path(path).read_text(encoding="utf-8"))
            for key in ("dataset", "version", "n_tasks", "base", "plus"):
                result[key]  # noqa: B018 - a KeyError is a malformed file
        except FileNotFoundError:
            raise ReportError(f"{path}: missing score file") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ReportError(f"{path}: malformed score file ({exc!r})") from None
        results.append(result)
    scores = []
    for path, res in zip(paths, results, strict=True):
        paper = PAPER_PASS_AT_1.get(res["dataset"])
        meta = load_sidecar(sidecar_path(path))
        entry: dict[str, Any] = {
            "dataset": res["dataset"],
            "version": res["version"],
            "n_tasks": res["n_tasks"],
            "limit": (meta["config"] or {}).get("limit"),
            "missing_samples": res.get("missing_samples", 0),
        }
        for part, i in (("base", 0), ("plus", 1)):
            ours = round(100 * res[part]["pass_at_1"], 1)
            entry[part] = {
                "passed": res[part]["passed"],
                "pass_at_1": ours,
                "paper": paper[i] if paper else None,
                "difference": round(ours - paper[i], 1) if paper else None,
            }
        scores.append(entry)
    table: dict[str, Any] = {"header": list(TABLE_HEADER), "rows": table_rows(results), "scores": scores}
    if table_md is not None:
        table["table_md_matches"] = Path(table_md).read_text(encoding="utf-8") == markdown_table(results)
    return table


# ----------------------------------------------------------------------------- environment


def environment(artifacts: Sequence[Artifact]) -> dict[str, Any]:
    """Versions the sidecars record: each value once, with the artifacts that ran with it when
    they disagree."""
    seen: dict[str, dict[str, list[str]]] = {}

    def add(key: str, value: Any, path: str) -> None:
        text = value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        seen.setdefault(key, {}).setdefault(text, []).append(path)

    for art in artifacts:
        if art.meta is None:
            continue
        code = art.meta["code"]
        add("code:selfalign", code.get("selfalign"), art.path)
        add("code:git_commit", code.get("git_commit"), art.path)
        add("code:git_dirty", code.get("git_dirty"), art.path)
        add("python", art.meta.get("python"), art.path)
        add("platform", art.meta.get("platform"), art.path)
        for name, version in sorted((art.meta.get("packages") or {}).items()):
            add(f"package:{name}", version, art.path)
    out: dict[str, Any] = {}
    groups = ("code:", "python", "platform", "package:")
    for key in sorted(seen, key=lambda k: (next(i for i, g in enumerate(groups) if k.startswith(g)), k)):
        values = seen[key]
        out[key] = (
            {"value": next(iter(values))}
            if len(values) == 1
            else {"values": {v: sorted(paths) for v, paths in sorted(values.items())}}
        )
    return out


# ------------------------------------------------------------------------------- the report


CONFIG_SUMMARY = (
    ("run_name",),
    ("recipe_variant",),
    ("release", "commit"),
    ("execution", "exec_mode"),
    ("curation", "clean", "shuffle"),
    ("curation", "sft", "rng"),
    ("training", "loss_normalization"),
    ("evaluation", "sandbox", "checker"),
    ("model", "name"),
    ("model", "revision"),
    ("model", "build"),
    ("serving", "backend"),
    ("seeds", "source", "kind"),
    ("start_from",),
    ("generation", "limit"),
    ("generation", "fewshot", "source"),
    ("execution", "backend"),
    ("training", "learning_rate"),
    ("training", "num_train_epochs"),
    ("evaluation", "humaneval_version"),
    ("evaluation", "mbpp_version"),
    ("evaluation", "limit"),
)


def _lookup(config: Mapping[str, Any], keys: Sequence[str]) -> Any:
    node: Any = config
    for key in keys:
        if not isinstance(node, Mapping) or key not in node:
            return None
        node = node[key]
    return node


def build_report(
    results_dir: str | os.PathLike[str],
    *,
    run_name: str,
    config: Mapping[str, Any],
    eval_results: Sequence[str | os.PathLike[str]] = (),
    eval_table: str | os.PathLike[str] | None = None,
    files: Sequence[str | os.PathLike[str]] = (),
    prefix: str | None = None,
    verify: bool = False,
    verdict: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """report.json's content: funnel, evaluation, artifacts, config, environment."""
    funnel = build_funnel(results_dir)
    all_files = [*files, *([eval_table] if eval_table is not None else [])]
    artifacts = collect_artifacts(results_dir, prefix=prefix, files=all_files, verify=verify)
    evaluation = build_eval(eval_results, eval_table) if eval_results else None
    links = [i for a in artifacts for i in a.inputs]
    return {
        "run_name": run_name,
        "recipe": recipe_line(config),
        "funnel": [row.to_json() for row in funnel],
        "funnel_paper_source": PAPER_SOURCE,
        "examples": build_examples(results_dir),
        "loss_curve": loss_curve(results_dir),
        "evaluation": evaluation,
        "artifacts": [a.to_json() for a in artifacts],
        "input_links": {
            status: sum(1 for i in links if i["status"] == status)
            for status in sorted({i["status"] for i in links})
        },
        "config_sha256": fingerprint(config),
        "config_summary": {".".join(k): _lookup(config, k) for k in CONFIG_SUMMARY},
        "config": config,
        "environment": environment(artifacts),
        "verification": _verification(verdict),
    }


def _verification(path: str | os.PathLike[str] | None) -> dict[str, Any] | None:
    """The run's bytes against its lock (selfalign verify's report), as the report shows it."""
    if path is None:
        return None
    from .verify import summary

    verdict = json.loads(Path(path).read_text(encoding="utf-8"))
    return {"ok": verdict["ok"], "identical": verdict["identical"], "artifacts": verdict["artifacts"],
            "lock_run": verdict.get("lock_run"), "first_divergence": verdict.get("first_divergence"),
            "summary": summary(verdict)}


# -------------------------------------------------------------------------------- examples


def build_examples(results_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per stage of the run: its first kept records and, for each of its most frequent drop
    reasons, the first record dropped for it (file order, so the same run shows the same
    examples), each summarised in a line, with the drop file's path."""
    from .explain import detail_summary, kept_summary

    results_dir = Path(results_dir)
    out = []
    for stage in ARTIFACT_STAGES:
        artifact = results_dir / stage.artifact
        if not artifact.is_file() or not sidecar_path(artifact).is_file():
            continue
        kept = []
        with open(artifact, "rb") as handle:
            for line in itertools.islice(handle, KEPT_EXAMPLES):
                record = json.loads(line)
                kept.append({"id": str(record.get("id")), "summary": kept_summary(stage, record)})
        meta = load_sidecar(sidecar_path(artifact))
        drops_file = dropped_path(artifact)
        counts = {**meta["drops"], **{f"{SAMPLE_DROP_PREFIX}{k}": v
                                      for k, v in ((meta.get("stats") or {}).get("sample_drops") or {}).items()}}
        reasons = [k for k, v in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0])) if v][:DROP_REASON_EXAMPLES]
        dropped: dict[str, dict[str, Any]] = {}
        if drops_file.is_file() and reasons:
            with open(drops_file, "rb") as handle:
                for line in handle:
                    record = json.loads(line)
                    reason = record.get("reason")
                    if reason in reasons and reason not in dropped:
                        dropped[reason] = {"id": str(record["id"]), "reason": reason,
                                           "summary": detail_summary(record)}
                        if len(dropped) == len(reasons):
                            break
        out.append({
            "stage": stage.key,
            "label": stage.label,
            "artifact": stage.artifact,
            "dropped_file": drops_file.relative_to(results_dir).as_posix() if drops_file.is_file() else None,
            "kept": kept,
            "dropped": [dropped[r] for r in reasons if r in dropped],
        })
    return out


def loss_curve(results_dir: str | os.PathLike[str]) -> list[dict[str, float]]:
    """The fine-tuning run's logged loss per step (the checkpoint's sidecar), or [] without one."""
    meta_path = sidecar_path(Path(results_dir) / "checkpoint")
    if not meta_path.is_file():
        return []
    curve = (load_sidecar(meta_path).get("stats") or {}).get("loss_curve") or []
    return [{"step": float(p["step"]), "loss": float(p["loss"])} for p in curve if "loss" in p and "step" in p]


def loss_svg(curve: Sequence[Mapping[str, float]]) -> str:
    """The fine-tuning loss per logged step, as an SVG document with no date and stable ids."""
    import matplotlib
    from matplotlib.figure import Figure

    with matplotlib.rc_context(
        {"svg.hashsalt": "selfalign-loss", "svg.fonttype": "path", "font.size": 10, "font.family": "DejaVu Sans"}
    ):
        fig = Figure(figsize=(7, 3.2))
        ax = fig.add_subplot()
        ax.plot([p["step"] for p in curve], [p["loss"] for p in curve], color="#2f6fad", marker="." if len(curve) < 60 else None)
        ax.set_xlabel("optimizer step")
        ax.set_ylabel("training loss")
        ax.grid(color="#dddddd")
        ax.set_title("Fine-tuning loss (checkpoint)", fontsize=11)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ plot


def _short(n: int | float) -> str:
    for div, suffix in ((1_000_000, "M"), (1_000, "k")):
        if n >= div:
            return f"{n / div:.3g}{suffix}"
    return f"{n:,}"


def _note_lines(row: Mapping[str, Any], width: int = 62) -> list[tuple[str, str]]:
    """The text beside a funnel bar: in -> out (and the paper's figure), the drops by reason in
    at most two lines, and what was not passed on to the stage."""
    first = f"{row['in']:,} → {row['out']:,}" + (f"      paper: {row['paper']['text']}" if row["paper"] else "")
    lines = [(first, "paper")]
    drops = [f"{k} {v:,}" for k, v in _sorted_drops(row["drops"]).items()]
    if drops:
        text = f"−{row['dropped']:,}: "
        wrapped: list[str] = []
        for i, item in enumerate(drops):
            sep = "" if text.endswith(": ") or not text.strip() else ", "
            if len(text) + len(sep) + len(item) > width and text.strip():
                if len(wrapped) == 1:
                    text += f", +{len(drops) - i} more"
                    break
                wrapped.append(text + ",")
                text, sep = "    ", ""
            text += sep + item
        wrapped.append(text)
        lines.extend((line, "drop") for line in wrapped)
    lines.extend((f"{count:,} not passed on: {reason}", "skip") for reason, count in row["skipped_before"].items())
    return lines


def funnel_svg(funnel: Sequence[Mapping[str, Any]]) -> str:
    """Horizontal bars of what each stage passed on (log scale) beside the paper's figures, and
    what each stage dropped by reason; an SVG document with no date and stable ids."""
    import matplotlib
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    colors = {"ours": "#2f6fad", "samples": "#d9822b", "paper": "#444444", "drop": "#a33a3a", "skip": "#666666"}
    n = len(funnel)
    with matplotlib.rc_context(
        {"svg.hashsalt": "selfalign-report", "svg.fonttype": "path", "font.size": 10, "font.family": "DejaVu Sans"}
    ):
        fig = Figure(figsize=(12, 0.62 * n + 1.2))
        grid = fig.add_gridspec(1, 2, width_ratios=[1.45, 1], wspace=0.03)
        ax = fig.add_subplot(grid[0])
        notes = fig.add_subplot(grid[1], sharey=ax)
        ys = [n - 1 - i for i in range(n)]
        floor = 0.8
        values = [max(row["out"], 1) for row in funnel] + [row["paper"]["out"] for row in funnel if row["paper"]]
        ax.set_xscale("log")
        ax.set_xlim(floor, max(values) * 8)
        for y, row in zip(ys, funnel, strict=True):
            if row["paper"]:
                ax.barh(y, row["paper"]["out"] - floor, left=floor, height=0.82, fill=False,
                        edgecolor=colors["paper"], linestyle=(0, (3, 2)), linewidth=1.0, zorder=1)
            color = colors["samples"] if row["unit"] == "samples" else colors["ours"]
            if row["out"] > 0:
                ax.barh(y, row["out"] - floor, left=floor, height=0.5, color=color, zorder=2)
            ax.text(max(row["out"], 1) * 1.12, y, f"{row['out']:,}", va="center", ha="left", fontsize=9, zorder=3)
        ax.set_yticks(ys, [f"{row['label']}\n{row['artifact']}" for row in funnel], fontsize=9)
        ax.set_ylim(-0.6, n - 0.4)
        ax.grid(axis="x", which="major", color="#dddddd", zorder=0)
        ax.set_axisbelow(True)
        ax.set_xlabel("passed on by the stage (log scale)")
        ax.legend(
            handles=[
                Patch(color=colors["ours"], label="this run: records"),
                Patch(color=colors["samples"], label="this run: response samples"),
                Patch(fill=False, edgecolor=colors["paper"], linestyle=(0, (3, 2)), label="paper / upstream"),
            ],
            loc="lower left",
            bbox_to_anchor=(0.0, 1.0),
            ncol=3,
            fontsize=8.5,
            frameon=False,
        )
        notes.set_xlim(0, 1)
        notes.axis("off")
        notes.text(0.0, n - 0.45, "in → out, and what the stage dropped (by reason)", fontsize=9,
                   fontweight="bold", va="bottom")
        for y, row in zip(ys, funnel, strict=True):
            lines = _note_lines(row)
            step = min(0.27, 0.84 / len(lines))
            top = y + step * (len(lines) - 1) / 2
            for i, (text, kind) in enumerate(lines):
                notes.text(0.0, top - i * step, text, fontsize=8.5, color=colors[kind], va="center", ha="left")
        fig.suptitle("The funnel: what each stage passed on, this run beside the paper", fontsize=12)
        buf = io.StringIO()
        fig.savefig(buf, format="svg", metadata={"Date": None}, bbox_inches="tight", pad_inches=0.15)
    return buf.getvalue()


# ------------------------------------------------------------------------------------ HTML


CSS = """
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,"DejaVu Sans",sans-serif;margin:0;color:#1d1d1f;
background:#fafafa;line-height:1.45}
main{max-width:1240px;margin:0 auto;padding:24px 28px 48px}
h1{font-size:1.6em;margin:0 0 4px}h2{font-size:1.25em;margin:36px 0 10px;border-bottom:1px solid #ddd;
padding-bottom:4px}h3{font-size:1.05em;margin:20px 0 6px}
.sub{color:#555;margin:0 0 18px}code,.mono{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.88em}
.cards{display:flex;flex-wrap:wrap;gap:12px;margin:14px 0}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:10px 14px;min-width:150px}
.card b{display:block;font-size:1.35em}.card span{color:#555;font-size:.85em}
.tw{overflow-x:auto;margin:8px 0 14px}table{border-collapse:collapse;background:#fff;font-size:.88em}
td{overflow-wrap:break-word}td code{white-space:nowrap}
th,td{border:1px solid #ddd;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f0f0}td.n{text-align:right;font-variant-numeric:tabular-nums;white-space:nowrap}
.plot{background:#fff;border:1px solid #ddd;border-radius:6px;padding:6px}.plot svg{width:100%;height:auto}
.ok{color:#1b7a32}.bad{color:#b3261e;font-weight:bold}.dim{color:#666}
.drops{font-size:.92em;overflow-wrap:anywhere}.short{white-space:nowrap}.hash{font-family:"DejaVu Sans Mono",Menlo,Consolas,monospace;font-size:.8em;
word-break:break-all}
details{margin:4px 0}summary{cursor:pointer}pre{background:#fff;border:1px solid #ddd;padding:8px;
overflow-x:auto;font-size:.82em}
footer{margin-top:40px;color:#666;font-size:.85em}
"""


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _num(n: Any) -> str:
    return f"{n:,}" if isinstance(n, int) and not isinstance(n, bool) else _e("–" if n is None else n)


def _table(header: Sequence[str], rows: Iterable[Sequence[str]], numeric: Sequence[int] = ()) -> str:
    head = "".join(f"<th>{_e(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = "".join(f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>" for i, c in enumerate(row))
        body.append(f"<tr>{cells}</tr>")
    return f'<div class="tw"><table><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table></div>'


def _check(value: bool | None, ok: str = "yes", bad: str = "NO") -> str:
    if value is None:
        return '<span class="dim">–</span>'
    return f'<span class="ok">{ok}</span>' if value else f'<span class="bad">{bad}</span>'


def _funnel_html(funnel: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for row in funnel:
        drops = ", ".join(f"{_e(k)} {v:,}" for k, v in _sorted_drops(row["drops"]).items()) or '<span class="dim">none</span>'
        skipped = "".join(
            f'<br><span class="dim">not passed on to it: {v:,} {_e(k)}</span>' for k, v in row["skipped_before"].items()
        )
        skipped += "".join(
            f'<br><span class="dim">mixed in from {_e(k)}: {v:,}</span>'
            for k, v in (row.get("added_from_sources") or {}).items()
        )
        kept = f"{100 * row['out'] / row['in']:.1f}%" if row["in"] else "–"
        chained = _check(row["chained"]) if row["chained"] is not None else '<span class="dim">unit change</span>' \
            if row is not funnel[0] else '<span class="dim">first</span>'
        rows.append(
            [
                _e(row["label"]),
                f"<code>{_e(row['artifact'])}</code>",
                _e(row["unit"]),
                _num(row["in"]),
                _num(row["out"]),
                kept,
                f'<span class="drops">{drops}</span>{skipped}',
                _e(row["paper"]["text"]) if row["paper"] else '<span class="dim">–</span>',
                f"{_check(row['balanced'])} / {chained}",
            ]
        )
    header = ["stage", "artifact", "unit", "in", "out", "kept", "dropped, by reason", "paper", "balanced / chained"]
    return _table(header, rows, numeric=(3, 4, 5))


def _eval_html(evaluation: Mapping[str, Any] | None) -> str:
    if not evaluation:
        return "<p class=dim>No evaluation in this run.</p>"
    parts = [_table(evaluation["header"], ([_e(c) for c in row] for row in evaluation["rows"]), numeric=(2, 3, 4, 5, 6))]
    notes = []
    for score in evaluation["scores"]:
        limit = score["limit"]
        scope = f"the first {limit} tasks (evaluation.limit)" if limit else f"all {score['n_tasks']} tasks"
        diffs = ", ".join(
            f"{part} {score[part]['difference']:+.1f}" for part in ("base", "plus") if score[part]["difference"] is not None
        )
        notes.append(
            f"<li><b>{_e(score['dataset'])} {_e(score['version'])}</b>: {_e(scope)}; "
            f"{_num(score['missing_samples'])} missing samples"
            + (f"; points against the paper: {_e(diffs)}" if diffs else "")
            + "</li>"
        )
    parts.append(f"<ul>{''.join(notes)}</ul>")
    if "table_md_matches" in evaluation:
        parts.append(
            "<p><code>eval/table.md</code> holds these rows: "
            + _check(evaluation["table_md_matches"], "yes", "NO, it is stale")
            + ". The paper's numbers are the published pass@1 (greedy) of StarCoder2-15B-Instruct-v0.1.</p>"
        )
    return "".join(parts)


def _short_hash(digest: str | None) -> str:
    return f'<span class="hash short" title="{_e(digest)}">{_e(digest[:12])}…</span>' if digest else "–"


def _counts_text(counts: Mapping[str, Any]) -> str:
    """A sidecar's counts: ``in → out`` first when it has them, then the rest by name."""
    head = f"{_num(counts['in'])} → {_num(counts['out'])}" if "in" in counts and "out" in counts else ""
    rest = [f"{_e(k)} {_num(v)}" for k, v in sorted(counts.items()) if k not in ("in", "out", "dropped")]
    return ", ".join([head, *rest] if head else rest) or '<span class="dim">–</span>'


def _artifacts_html(artifacts: Sequence[Mapping[str, Any]]) -> str:
    rows = []
    for art in artifacts:
        inputs = art.get("inputs", [])
        statuses = Counter(i["status"] for i in inputs)
        links = (
            _check(not statuses["differs"], "ok", "hash differs")
            + f'<br><span class="dim">{_e(", ".join(f"{n} {s}" for s, n in sorted(statuses.items())))}</span>'
            if inputs
            else '<span class="dim">–</span>'
        )
        code = art.get("code")
        version = (
            f"{_e(code.get('selfalign', '?'))} <code>{_e(str(code.get('git_commit', ''))[:8])}</code>"
            + (' <span class="bad">dirty</span>' if code.get("git_dirty") else "")
            if code
            else '<span class="dim">–</span>'
        )
        counts = art.get("counts")
        rows.append(
            [
                f"<code>{_e(art['path'])}</code>" + ("/" if art["kind"] == "directory" else ""),
                _e(art.get("stage", "(no sidecar)")),
                _counts_text(counts) if counts else '<span class="dim">–</span>',
                _num(art["bytes"]),
                _short_hash(art["sha256"]) + ("" if art["sha256_from"] == "sidecar" else ' <span class="dim">(hashed here)</span>'),
                _short_hash(art.get("config_sha256")),
                version,
                links,
            ]
        )
    header = ["artifact", "stage", "counts", "bytes", "sha256", "config digest", "code", "inputs"]
    parts = [_table(header, rows, numeric=(3,))]
    parts.append("<h3>Each artifact: full hashes, inputs, parameters</h3>")
    for art in artifacts:
        source = "its sidecar" if art["sha256_from"] == "sidecar" else "the report (no sidecar)"
        body = [f"<p>{_num(art['bytes'])} bytes; hash from {_e(source)}"
                + (f"; stage <code>{_e(art['stage'])}</code>" if "stage" in art else "") + "</p>"]
        if "inputs" in art:
            input_rows = [
                [f"<code>{_e(i['path'])}</code>", f"<span class=hash>{_e(i['sha256'] or '–')}</span>",
                 (_check(True, "match") if i["status"] == "match" else _check(False, "differs")
                  if i["status"] == "differs" else _e(i["status"]))
                 + (f' <span class="dim">{_e(i["from"])}</span>' if i.get("from") and i["from"] != i["path"] else "")]
                for i in art["inputs"]
            ]
            body.append(_table(["input", "sha256 it was read with", "link"], input_rows) if input_rows
                        else "<p class=dim>No inputs.</p>")
            body.append(f"<p>config digest <span class=hash>{_e(art['config_sha256'])}</span></p>")
            body.append(f"<pre>{_e(json.dumps(art['config'], indent=2, sort_keys=True))}</pre>")
        parts.append(
            f"<details><summary><code>{_e(art['path'])}</code> <span class=hash>{_e(art['sha256'])}</span>"
            f"</summary>{''.join(body)}</details>"
        )
    return "".join(parts)


def _env_html(report: Mapping[str, Any]) -> str:
    summary = [[f"<code>{_e(k)}</code>", f"<code>{_e(json.dumps(v))}</code>"] for k, v in report["config_summary"].items()]
    env_rows = []
    for key, entry in report["environment"].items():
        if "value" in entry:
            value = _e(entry["value"])
        else:
            value = '<span class="bad">differs:</span> ' + "; ".join(
                f"{_e(v)} ({_e(', '.join(paths))})" for v, paths in entry["values"].items()
            )
        env_rows.append([_e(key.replace("code:", "code ").removeprefix("package:")), value])
    full = yaml.safe_dump(report["config"], sort_keys=True, allow_unicode=True, width=100)
    return (
        f"<p>config digest <span class=hash>{_e(report['config_sha256'])}</span> "
        "(sha256 of the merged config as canonical JSON)</p>"
        + _table(["setting", "value"], summary)
        + f"<details><summary>the whole config</summary><pre>{_e(full)}</pre></details>"
        + "<h3>Environment, as the sidecars record it</h3>"
        + _table(["package / component", "version"], env_rows)
    )


def _cards(report: Mapping[str, Any]) -> str:
    funnel = report["funnel"]
    cards = [
        (_num(funnel[0]["out"]), f"{funnel[0]['label']} ({funnel[0]['artifact']})"),
        (_num(funnel[-1]["out"]), f"{funnel[-1]['label']} ({funnel[-1]['artifact']})"),
    ]
    for score in (report["evaluation"] or {}).get("scores", []):
        cards.append(
            (f"{score['base']['pass_at_1']:.1f} / {score['plus']['pass_at_1']:.1f}",
             f"{score['dataset']} base / plus pass@1 (paper {score['base']['paper']} / {score['plus']['paper']})")
        )
    cards.append((_num(len(report["artifacts"])), "artifacts hashed"))
    return '<div class="cards">' + "".join(
        f'<div class="card"><b>{value}</b><span>{_e(text)}</span></div>' for value, text in cards
    ) + "</div>"


def _examples_html(examples: Sequence[Mapping[str, Any]]) -> str:
    """Per stage, a few kept and dropped records (``selfalign explain ID`` tells the rest)."""
    parts = []
    for stage in examples:
        link = (f' — every drop: <a href="../{_e(stage["dropped_file"])}"><code>{_e(stage["dropped_file"])}</code></a>'
                if stage["dropped_file"] else "")
        rows = [[_e("kept"), f"<code>{_e(k['id'])}</code>", _e(k["summary"])] for k in stage["kept"]]
        rows += [[f'<span class="bad">{_e(d["reason"])}</span>', f"<code>{_e(d['id'])}</code>", _e(d["summary"])]
                 for d in stage["dropped"]]
        body = _table(["", "id", "what it is / why it was dropped"], rows) if rows else '<p class="dim">no records</p>'
        parts.append(f"<details open><summary><b>{_e(stage['label'])}</b> <code>{_e(stage['artifact'])}</code>{link}"
                     f"</summary>{body}</details>")
    return "\n".join(parts)


def _inline_svg(svg: str) -> str:
    start = svg.find("<svg")
    if start < 0:
        raise ValueError("not an SVG document")
    return svg[start:]


def render_html(report: Mapping[str, Any], svg: str) -> str:
    """The page: everything inline, no script, no timestamps."""
    commits = report["environment"].get("code:git_commit", {})
    commit = commits.get("value") if "value" in commits else ", ".join(commits.get("values", {}))
    links = ", ".join(f"{v} {k}" for k, v in report["input_links"].items())
    return "\n".join(
        [
            "<!DOCTYPE html>",
            '<html lang="en"><head><meta charset="utf-8">',
            '<meta name="viewport" content="width=device-width, initial-scale=1">',
            f"<title>selfalign run {_e(report['run_name'])}: reproducibility report</title>",
            f"<style>{CSS}</style></head><body><main>",
            f"<h1>selfalign run <code>{_e(report['run_name'])}</code></h1>",
            f'<p class="sub"><b>Recipe:</b> {_e(report["recipe"])}.</p>',
            *([f'<p class="sub"><b>Bytes against the lock:</b> {"<br>".join(_e(line) for line in verification["summary"].splitlines())}</p>']
              if (verification := report.get("verification")) else []),
            f'<p class="sub">The StarCoder2-Instruct self-alignment recipe, rebuilt. Code '
            f"<code>{_e(commit or '?')}</code>, config digest <code>{_e(report['config_sha256'][:16])}</code>. "
            "Every number below is read from the run's artifacts and their <code>.meta.json</code> sidecars; "
            "the paper's are its published figures.</p>",
            _cards(report),
            "<h2>1. The funnel</h2>",
            "<p>What each stage received, passed on and dropped (by reason). From I->R on the counts are of "
            "response samples. <i>Balanced</i>: every record in is out or dropped for a named reason; "
            "<i>chained</i>: the stage received what the one before it passed on. Paper figures: "
            f"{_e(report['funnel_paper_source'])}.</p>",
            f'<div class="plot">{_inline_svg(svg)}</div>',
            _funnel_html(report["funnel"]),
            "<h3>Records, not only counts</h3>",
            "<p>Per stage, its first kept records and the first record dropped for each of its most frequent "
            "reasons; each stage's drop file holds every dropped record with what made it drop. "
            "<code>selfalign explain ID</code> follows one record through the whole chain.</p>",
            _examples_html(report.get("examples", [])),
            "<h2>2. Evaluation (EvalPlus pass@1, %)</h2>",
            _eval_html(report["evaluation"]),
            *(["<h3>Fine-tuning loss</h3>", f'<div class="plot" style="max-width:760px">{_inline_svg(loss_svg(report["loss_curve"]))}</div>']
              if report.get("loss_curve") else []),
            "<h2>3. Artifacts: hashes and provenance</h2>",
            f"<p>Path, size and sha256 of every artifact (from its sidecar; a directory's hash is that of its "
            f"file manifest), the stage and config that made it, the code version, and each input's hash as "
            f"the stage read it, checked against the artifact the run kept. Input links: {_e(links or 'none')}.</p>",
            _artifacts_html(report["artifacts"]),
            "<h2>4. Config and environment</h2>",
            _env_html(report),
            "<footer>Written by <code>selfalign report</code>; machine-readable: <code>report.json</code> beside "
            "this page. No timestamps or host names: the same run gives the same bytes.</footer>",
            "</main></body></html>",
            "",
        ]
    )


# ---------------------------------------------------------------------------------- writing


def write_report(
    report: Mapping[str, Any],
    *,
    html_out: str | os.PathLike[str],
    json_out: str | os.PathLike[str],
    svg_out: str | os.PathLike[str] | None = None,
) -> None:
    """Write the page, the JSON and (optionally) the plot, each atomically."""
    svg = funnel_svg(report["funnel"])
    with atomic_writer(json_out) as handle:
        json.dump(report, handle, indent=2, sort_keys=True, ensure_ascii=False)
        handle.write("\n")
    if svg_out is not None:
        with atomic_writer(svg_out) as handle:
            handle.write(svg)
    with atomic_writer(html_out) as handle:
        handle.write(render_html(report, svg))
