"""What the report says, collected from the run's artifacts and their sidecars."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from ...chain import ARTIFACT_STAGES, SAMPLE_DROP_PREFIX, STAGES, Stage, dropped_path
from ...config import recipe_line
from ...evaluation.score import PAPER_PASS_AT_1, TABLE_HEADER, markdown_table, table_rows
from ...mix import SELF
from ...provenance import SIDECAR_SUFFIX, artifact_digest, artifact_size, sidecar_path
from ...records import fingerprint, sha256_file

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


def sorted_drops(drops: Mapping[str, int]) -> dict[str, int]:
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
                         sorted_drops(sample_drops))
    row = FunnelRow(stage, str(meta["stage"]), _count(meta, "in", where), _count(meta, "out", where),
                    sorted_drops(meta["drops"]))
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
    humanevalpack: str | os.PathLike[str] | None = None,
    livecodebench: str | os.PathLike[str] | None = None,
) -> dict[str, Any]:
    """report.json's content: funnel, evaluation (EvalPlus, and HumanEvalPack's and LiveCodeBench's
    table.json when given), artifacts, config, environment."""
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
        "humanevalpack": json.loads(Path(humanevalpack).read_text(encoding="utf-8")) if humanevalpack else None,
        "livecodebench": json.loads(Path(livecodebench).read_text(encoding="utf-8")) if livecodebench else None,
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
    from ..verify import summary

    verdict = json.loads(Path(path).read_text(encoding="utf-8"))
    return {"ok": verdict["ok"], "identical": verdict["identical"], "artifacts": verdict["artifacts"],
            "lock_run": verdict.get("lock_run"), "first_divergence": verdict.get("first_divergence"),
            "summary": summary(verdict)}


# -------------------------------------------------------------------------------- examples


def build_examples(results_dir: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Per stage of the run: its first kept records and, for each of its most frequent drop
    reasons, the first record dropped for it (file order, so the same run shows the same
    examples), each summarised in a line, with the drop file's path."""
    from ..explain import detail_summary, kept_summary

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
