"""What HumanEvalPack's self-check costs per language, in gVisor against the same programs unsandboxed.

    python benchmarks/octopack_selfcheck.py [--limit 10] [--workers 2] [--languages go rust]

Each language's canonical and buggy solutions (the first ``--limit`` tasks) are assembled into
test programs and run through :class:`selfalign.sandbox.SandboxPool` twice, in one run:

* baseline: backend ``none``: the same runner on the host, one fork + exec per step (compile,
  run) with the same limits, no sandbox (the harness itself runs them unsandboxed);
* ours: backend ``gvisor``: one long-lived ``runsc`` sandbox per worker.

Both must give the same verdict for every program (and canonical pass / buggy fail). Reports
seconds per program (wall, all workers) per language and the ratio ours / baseline.
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
    args = parser.parse_args(argv)
    files = humanevalpack.find_files(args.data, args.languages)
    runs = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, backend in (("baseline", "none"), ("ours", "gvisor")):
            params = execute.PackSandboxParams.from_dict(
                {"backend": backend, "workers": args.workers, "allow_unsandboxed": backend == "none"})
            out = Path(tmp) / name
            summary = execute.self_check(files, out, params, limit=args.limit or None, show_progress=True)
            verdicts = [json.loads(line) for line in (out / "verdicts.jsonl").read_text().splitlines()]
            runs[name] = (summary, [(v["language"], v["task_id"], v["variant"], v["status"]) for v in verdicts])
    same = runs["baseline"][1] == runs["ours"][1]
    print(f"\n{args.limit or 164} tasks per language, {args.workers} workers; verdicts identical: {same}")
    print("| language | programs | canonical pass | buggy fail | baseline (none) s/program | ours (gVisor) s/program | ratio |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for language in files:
        base, ours = runs["baseline"][0]["languages"][language], runs["ours"][0]["languages"][language]
        n = 2 * ours["tasks"]
        b, o = base["wall_s"] / n, ours["wall_s"] / n
        print(f"| {language} | {n} | {ours['canonical_pass']}/{ours['tasks']} | {ours['buggy_not_pass']}/{ours['tasks']} "
              f"| {b:.2f} | {o:.2f} | {o / b:.2f}x |")
    total_b, total_o = runs["baseline"][0]["wall_s"], runs["ours"][0]["wall_s"]
    print(f"whole self-check: baseline {total_b:.1f} s, ours {total_o:.1f} s, ratio {total_o / total_b:.2f}x")
    return 0 if same else 1


if __name__ == "__main__":
    raise SystemExit(main())
