"""`selfalign explain` on a paper-sized run: 1M seeds, 10M response samples.

Writes a synthetic results directory with every stage of the chain (small records, the real
file layout, real sidecars and drop files), builds each stage's index as the stages do
(selfalign.audit.explain.build_index), then times queries. Baseline, measured in the same run: the
same question answered by scanning every artifact and drop file for the id (what explain would
have to do without the indexes).

    .venv/bin/python benchmarks/explain.py [--seeds 1000000] [--samples-per-record 19] [--dir DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from selfalign import chain  # noqa: E402
from selfalign.audit.explain import build_index, explain, index_path  # noqa: E402
from selfalign.provenance import write_sidecar  # noqa: E402
from selfalign.records import dumps, sha256_file  # noqa: E402


def _seed(i: int) -> str:
    return f"the-stack/repo{i % 9973}/mod{i // 9973}.py#L{i:07d}"


def _hit(x: int, salt: int, every: int) -> bool:
    """A fixed pseudo-random one in ``every`` (independent across stages by ``salt``)."""
    return ((x * 2654435761 + salt * 40503) >> 5) % every == 0


def _write_stage(results: Path, key: str, kept, dropped) -> tuple[int, int]:
    stage = chain.stage(key)
    artifact = results / stage.artifact
    artifact.parent.mkdir(parents=True, exist_ok=True)
    n_kept = n_dropped = 0
    with open(artifact, "w", encoding="utf-8") as out:
        for record in kept:
            out.write(dumps(record) + "\n")
            n_kept += 1
    drops = chain.dropped_path(artifact)
    with open(drops, "w", encoding="utf-8") as out:
        for record in dropped:
            out.write(dumps(record) + "\n")
            n_dropped += 1
    write_sidecar(
        artifact,
        stage=stage.sidecar_stage,
        counts={"in": n_kept + n_dropped, "out": n_kept, "dropped": n_dropped},
        extra={"dropped": {"file": drops.name, "sha256": sha256_file(drops), "records": n_dropped}},
    )
    return n_kept, n_dropped


def synthesize(results: Path, seeds: int, per_record: int) -> dict[str, tuple[int, int]]:
    """Every stage: ~10% of records dropped at each seed stage, most samples failing execution."""
    sizes = {}
    content = "def f(x):\n    \"\"\"Return x.\"\"\"\n    return x"

    def drop(rid: str, reason: str, **detail: object) -> dict:
        return {"id": rid, "reason": reason, "detail": detail}

    survivors = list(range(seeds))
    for salt, (key, reason, every) in enumerate((("raw", "exact_duplicate", 50), ("dedup", "near_duplicate", 12),
                                                 ("quality", "pyright_error", 3), ("filtered", "bad_import", 20),
                                                 ("judged", "judge_no", 15), ("concepts", "parse_unfinished", 40),
                                                 ("instructions", "parse_unfinished", 40))):
        kept = [i for i in survivors if not _hit(i, salt, every)]
        sizes[key] = _write_stage(
            results, key,
            ({"id": _seed(i), "content": content} for i in kept),
            (drop(_seed(i), reason, first_error="3:5: x is not defined") for i in survivors if _hit(i, salt, every)),
        )
        survivors = kept
    sizes["responses"] = _write_stage(
        results, "responses",
        ({"id": _seed(i), "instruction": "Write f.",
          "responses": [{"sample": k, "response": f"r{k}"} for k in range(per_record)]} for i in survivors),
        iter(()),
    )
    samples = [(i, k) for i in survivors for k in range(per_record)]
    passing = [(i, k) for i, k in samples if _hit(i * 64 + k, 20, 4)]  # a quarter pass
    sizes["executed"] = _write_stage(
        results, "executed",
        ({"id": f"{_seed(i)}/{k}", "response": f"r{k}", "execution": {"status": "pass"}} for i, k in passing),
        (drop(f"{_seed(i)}/{k}", "fail:assertion", exception="AssertionError", stderr_tail="assert f(1) == 2")
         for i, k in samples if not _hit(i * 64 + k, 20, 4)),
    )
    del samples
    later = passing
    for salt, (key, every) in enumerate((("sanitized", 25), ("cleaned", 2), ("sft", 100)), start=30):
        kept = [p for p in later if not _hit(p[0] * 64 + p[1], salt, every)]
        sizes[key] = _write_stage(
            results, key,
            ({"id": f"{_seed(i)}/{k}", "instruction": "Write f.", "response": f"r{k}"} for i, k in kept),
            (drop(f"{_seed(i)}/{k}", "duplicate_instruction", duplicate_of=_seed(0)) for i, k in later
             if _hit(i * 64 + k, salt, every)),
        )
        later = kept
    return sizes


def scan(results: Path, root: str) -> int:
    """The baseline: read every artifact and drop file, keep the lines of ``root`` and its samples."""
    needle, found = f'"id":"{root}', 0
    for stage in chain.ARTIFACT_STAGES:
        for path in (results / stage.artifact, chain.dropped_path(results / stage.artifact)):
            if path.is_file():
                with open(path, encoding="utf-8") as handle:
                    for line in handle:
                        if needle in line:
                            rid = json.loads(line)["id"]
                            found += rid == root or rid.startswith(root + "/")
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=1_000_000)
    parser.add_argument("--samples-per-record", type=int, default=19, help="19: ~10M samples from 1M seeds")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--dir", default=None, help="where to write the synthetic run (default: a temp dir)")
    args = parser.parse_args()
    base = Path(args.dir or tempfile.mkdtemp(prefix="selfalign-explain-bench-"))
    results = base / "results" / "synthetic"
    shutil.rmtree(results, ignore_errors=True)
    started = time.perf_counter()
    sizes = synthesize(results, args.seeds, args.samples_per_record)
    written = time.perf_counter() - started
    total_lines = sum(k + d for k, d in sizes.values())
    samples = sum(sizes["executed"])
    print(f"synthetic run: {args.seeds:,} seeds, {samples:,} samples, {total_lines:,} lines in "
          f"{len(sizes)} stages, written in {written:.0f} s")

    build_s, index_bytes, data_bytes = {}, 0, 0
    for stage in chain.ARTIFACT_STAGES:
        artifact = results / stage.artifact
        t0 = time.perf_counter()
        build_index(artifact)
        build_s[stage.key] = time.perf_counter() - t0
        index_bytes += index_path(artifact).stat().st_size
        data_bytes += artifact.stat().st_size + chain.dropped_path(artifact).stat().st_size
    print("index build per stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in build_s.items()))
    print(f"index build total: {sum(build_s.values()):.0f} s; indexes {index_bytes / 2**20:,.0f} MiB "
          f"for {data_bytes / 2**20:,.0f} MiB of artifacts and drop files")

    rng = random.Random(0)
    ids = [_seed(rng.randrange(args.seeds)) for _ in range(args.queries)]
    times = []
    for rid in ids:
        t0 = time.perf_counter()
        explain(results, rid)
        times.append(time.perf_counter() - t0)
    times.sort()
    median = statistics.median(times)
    p95 = times[int(0.95 * (len(times) - 1))]
    print(f"explain (indexed): median {median * 1000:.1f} ms, p95 {p95 * 1000:.1f} ms over {len(ids)} seed ids")

    t0 = time.perf_counter()
    scan(results, ids[0])
    baseline = time.perf_counter() - t0
    print(f"baseline, scanning every file for one id: {baseline:.1f} s")
    print(f"ratio: the indexed query is {baseline / median:,.0f}x faster than the scan")
    if not args.dir:
        shutil.rmtree(base)


if __name__ == "__main__":
    main()
