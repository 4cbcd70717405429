"""``selfalign eval score`` and ``selfalign eval table``: the subcommands this package adds.

``register`` adds them to an existing ``selfalign eval`` parser's subparsers::

    selfalign eval score --samples S.jsonl[.gz] --dataset {humaneval,mbpp} --out R.json
        [--version V] [--published P.json[.gz]] [--workers N] [--limit N]
        [--data-params JSON|@file] [--sandbox JSON|@file] [--no-progress]
    selfalign eval table --inputs A.json B.json ... --out table.md
"""

from __future__ import annotations

import argparse
import logging
import time
from pathlib import Path

from ..config import parse_params
from ..runtime import finish_counts
from .score import DATASETS, DataParams, ScoreParams, run_score, write_table

log = logging.getLogger(__name__)


def cmd_score(args: argparse.Namespace) -> None:
    """Score a samples file and write the result JSON and its sidecar."""
    started = time.time()
    data_params = parse_params(args.data_params) if args.data_params else {}
    sandbox_params = parse_params(args.sandbox) if args.sandbox else {}
    if args.workers is not None:
        sandbox_params["workers"] = args.workers
    params = ScoreParams.from_dict(sandbox_params)
    score = run_score(
        args.samples,
        args.dataset,
        args.out,
        version=args.version,
        data=DataParams.from_dict(data_params),
        params=params,
        limit=args.limit,
        published=args.published,
        show_progress=not getattr(args, "no_progress", False),
    )
    meta = score.meta
    counts = meta["counts"]
    finish_counts(
        Path(args.out),
        stage="eval.score",
        inputs=meta["inputs"],
        counts=counts,
        drops={k: v for k, v in meta["statuses"].items() if not k.endswith(":pass")},
        params=meta["params"],
        extra={"timing": meta["timing"], "sandbox": meta["sandbox"], "statuses": meta["statuses"]},
        started=started,
    )
    res = score.result
    log.info(
        "%s %s: base %d/%d, plus %d/%d (%d missing samples) -> %s",
        args.dataset,
        res["version"],
        res["base"]["passed"],
        res["n_tasks"],
        res["plus"]["passed"],
        res["n_tasks"],
        res["missing_samples"],
        args.out,
    )


def cmd_table(args: argparse.Namespace) -> None:
    """Write the markdown table of several score files."""
    write_table(args.inputs, args.out)
    log.info("table of %d result(s) -> %s", len(args.inputs), args.out)


def register(eval_sub: argparse._SubParsersAction) -> None:
    """Add ``score`` and ``table`` to the ``selfalign eval`` subparsers ``eval_sub``."""
    p = eval_sub.add_parser("score", help="score samples on HumanEval+/MBPP+ with evalplus, in the sandbox")
    p.add_argument("--samples", required=True, help="samples JSONL (plain or .gz): {task_id, completion|solution}")
    p.add_argument("--dataset", required=True, choices=DATASETS)
    p.add_argument("--version", default=None, help="EvalPlus release (default: humaneval v0.1.9, mbpp v0.1.0)")
    p.add_argument("--out", required=True, help="result JSON (a <out>.meta.json sidecar is written beside it)")
    p.add_argument("--published", default=None, help="published evalplus eval_results.json[.gz] to compare with")
    p.add_argument("--workers", type=int, default=None, help="sandboxes in parallel (default 2)")
    p.add_argument("--limit", type=int, default=None, help="score the first N tasks only")
    p.add_argument("--data-params", default=None, help='JSON or @file: {"mirrors": [...], "cache_dir": ...}')
    p.add_argument(
        "--sandbox",
        default=None,
        help='JSON or @file: {"backend", "memory_mb", "nproc", "timeout_s", "min_time_limit", '
        '"gt_time_limit_factor", "tasks_per_unit", "allow_unsandboxed", "gvisor_platform"}',
    )
    if "--no-progress" not in p._option_string_actions:
        p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_score)

    t = eval_sub.add_parser("table", help="markdown table of score files beside the paper's numbers")
    t.add_argument("--inputs", nargs="+", required=True, help="result JSON files of `eval score`")
    t.add_argument("--out", required=True, help="markdown file")
    t.set_defaults(func=cmd_table)
