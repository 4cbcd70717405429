"""What HumanEvalPack's self-check costs per language, in gVisor against the same programs unsandboxed.

    python benchmarks/octopack_selfcheck.py [--limit 10] [--workers 2] [--languages go rust]

Each language's canonical and buggy solutions (the first ``--limit`` tasks) are assembled into
test programs and run through :class:`selfalign.sandbox.SandboxPool` twice, in one run:

* baseline: backend ``none``: the same runner on the host, one fork + exec per step (compile,
  run) with the same limits, no sandbox (the harness itself runs them unsandboxed);
* ours: backend ``gvisor``: one long-lived ``runsc`` sandbox per worker.

Both must give the same verdict for every program, every canonical solution must pass and every
buggy one fail: otherwise each exception is listed and the exit status is 1. Reports seconds per
program (wall, all workers) per language and the ratio ours / baseline (``--no-baseline``: ours
only, for the full 164-task table).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from selfalign.octopack import execute, humanevalpack  # noqa: E402

SHARED = REPO.parent / "shared" / "data" / "octopack"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED, help="directory of humanevalpack-<language>.jsonl[.gz]")
    parser.add_argument("--limit", type=int, default=10, help="first N tasks per language (0: all 164)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--languages", nargs="*", default=list(humanevalpack.LANGUAGES))
    parser.add_argument("--no-baseline", action="store_true", help="gVisor only (no unsandboxed run)")
    args = parser.parse_args(argv)
    files = humanevalpack.find_files(args.data, args.languages)
    runs = {}
    backends = [("ours", "gvisor")] if args.no_baseline else [("baseline", "none"), ("ours", "gvisor")]
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend in backends:
            params = execute.PackSandboxParams.from_dict(
                {"backend": backend, "workers": args.workers, "allow_unsandboxed": backend == "none"})
            out = Path(tmp) / name
            summary = execute.self_check(files, out, params, limit=args.limit or None, show_progress=True)
            verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
            runs[name] = (summary, verdicts)
    ours_summary, ours_verdicts = runs["ours"]
    key = [(v["language"], v["task_id"], v["variant"], v["status"]) for v in ours_verdicts]
    same = "baseline" not in runs or key == [(v["language"], v["task_id"], v["variant"], v["status"])
                                             for v in runs["baseline"][1]]
    # what the self-check is for: canonical solutions pass, buggy ones do not
    unexpected = [v for v in ours_verdicts if (v["status"] == "pass") != (v["variant"] == "canonical")]
    print(f"\n{args.limit or 164} tasks per language, {args.workers} workers; verdicts identical: {same}; "
          f"unexpected verdicts: {len(unexpected)}")
    print("| language | programs | canonical pass | buggy fail | baseline (none) s/program | ours (gVisor) s/program | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for language in files:
        ours = ours_summary["languages"][language]
        n = 2 * ours["tasks"]
        o = ours["wall_s"] / n
        if "baseline" in runs:
            b = runs["baseline"][0]["languages"][language]["wall_s"] / n
            timing = f"{b:.2f} | {o:.2f} | {o / b:.2f}x"
        else:
            timing = f"- | {o:.2f} | -"
        print(f"| {language} | {n} | {ours['canonical_pass']}/{ours['tasks']} | {ours['buggy_not_pass']}/{ours['tasks']} "
              f"| {timing} |")
    total_o = ours_summary["wall_s"]
    if "baseline" in runs:
        total_b = runs["baseline"][0]["wall_s"]
        print(f"whole self-check: baseline {total_b:.1f} s, ours {total_o:.1f} s, ratio {total_o / total_b:.2f}x")
    else:
        print(f"whole self-check: ours {total_o:.1f} s")
    for v in unexpected:
        print(f"UNEXPECTED {v['language']} {v['task_id']} {v['variant']}: {v['status']} "
              f"({v.get('reason', '')}) {str(v.get('stderr_tail') or v.get('detail') or '')[-300:]!r}")
    return 0 if same and not unexpected else 1


if __name__ == "__main__":
    raise SystemExit(main())
