"""The report's page: one self-contained HTML document (inline CSS and SVG, no script)."""

from __future__ import annotations

import html
import json
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import yaml

from .collect import sorted_drops
from .plot import loss_svg

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
        drops = ", ".join(f"{_e(k)} {v:,}" for k, v in sorted_drops(row["drops"]).items()) or '<span class="dim">none</span>'
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


def _humanevalpack_html(table: Mapping[str, Any] | None) -> str:
    """HumanEvalPack's table (octopack table.json): our pass@1 beside OctoCoder's."""
    if not table:
        return ""
    from ...octopack.humanevalpack import LANGUAGE_NAME
    from ...octopack.results import TASK_NAME

    def cell(value: Any) -> str:
        return "-" if value is None else _e(value)

    rows = ([_e(TASK_NAME[r["task"]]), _e("average" if r["language"] == "avg" else LANGUAGE_NAME[r["language"]]),
             cell(r["tasks"]), cell(r["pass@1"]), cell(r["pass@10"]), cell(r["octocoder_pass@1"])]
            for r in table["rows"])
    limits = [v for v in table["limits"] if v is not None]
    scope = f"the first {', '.join(map(str, limits))} tasks per language" if limits else "all 164 tasks per language"
    return "\n".join([
        "<h3>HumanEvalPack (OctoPack)</h3>",
        f"<p>pass@1 and pass@10 (%) on {_e(scope)}, scored in the sandbox; OctoCoder's published pass@1 "
        f"beside (n = 20 at temperature 0.2). Its figures: {_e('; '.join(table['sources']))}.</p>",
        _table(["task", "language", "tasks", "pass@1", "pass@10", "OctoCoder pass@1"], rows, numeric=(2, 3, 4, 5)),
    ])


def _livecodebench_html(table: Mapping[str, Any] | None) -> str:
    """LiveCodeBench's table (livecodebench table.json): our pass@1 per scenario beside the card's."""
    if not table:
        return ""

    def cell(value: Any) -> str:
        return "-" if value is None else _e(value)

    rows = ([_e(r["label"]), cell(r["items"]), cell(r["samples_per_item"]), cell(r["pass@1"]), cell(r["card"]),
             cell(r["missing"])] for r in table["rows"])
    return "\n".join([
        "<h3>LiveCodeBench</h3>",
        f"<p>pass@1 (%) per scenario, scored in the sandbox by LiveCodeBench's rules; beside it, "
        f"{_e(table['model_card'])}'s model card. Items: "
        f"{_e('; '.join(r['label'] + ': ' + r['window'] for r in table['rows']))}.</p>",
        _table(["scenario", "items", "samples per item", "pass@1", "model card", "missing"], rows,
               numeric=(1, 2, 3, 4, 5)),
    ])


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
            _humanevalpack_html(report.get("humanevalpack")),
            _livecodebench_html(report.get("livecodebench")),
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
