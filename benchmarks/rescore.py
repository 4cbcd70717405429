"""Re-score the released StarCoder2-15B-Instruct-v0.1 samples and compare with the published verdicts.

Scores all 164 HumanEval+ and 399 MBPP+ tasks with ``selfalign.evaluation.score.run_score``
(evalplus 0.2.1 inside the gVisor sandbox, time limits from the ground truth measured in the same
sandbox), then prints the totals, the agreement with upstream's published ``eval_results`` and
the wall time. Two baselines: the published verdicts (the agreement ratio, per dataset) and,
for speed, ``python -m evalplus.evaluate --parallel W`` unsandboxed on the same samples and
dataset files in the same run (``--baseline evalplus``, the default): once with an empty cache
(it computes the ground truth first, as ours does on every run) and once with the cache it
wrote (ground truth loaded), each printed as ours / evalplus. ``--burn N`` scores every dataset twice in the same run, first on the idle machine (the
baseline) and then with N CPU-burning processes alongside, and prints the loaded/idle ratio of
the pass counts (1.000 = scores do not drop under load) and of the wall times. ``--train DIR``
adds a round with the tiny model's training (``selfalign train`` on ``DIR``'s sft.jsonl and
model/base, e.g. results/tiny) running over and over alongside, the load that once flipped a
verdict. Each loaded round prints the parts re-checked on CPU time and how many passed
(``--no-recheck``: evalplus's one wall-clock check, the baseline for that).

    .venv/bin/python benchmarks/rescore.py --out-dir /tmp/rescore --workers 2
    .venv/bin/python benchmarks/rescore.py --out-dir /tmp/rescore-load --workers 2 --burn 2
    .venv/bin/python benchmarks/rescore.py --baseline none --burn 2 --train results/tiny
    .venv/bin/python benchmarks/rescore.py --baseline none        # ours only
"""

from __future__ import annotations

import argparse
import gzip
import json
import multiprocessing
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from selfalign.evaluation.score import DataParams, ScoreParams, markdown_table, run_score

SHARED = Path(os.environ.get("SELFALIGN_SHARED_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
PUBLISHED_TOTALS = {"humaneval": (119, 104, 164), "mbpp": (300, 244, 399)}


RELEASES = {"humaneval": ("HumanEvalPlus-v0.1.9", "HUMANEVAL_OVERRIDE_PATH"),
            "mbpp": ("MbppPlus-v0.1.0", "MBPP_OVERRIDE_PATH")}


def _gunzip(src: Path, dst: Path) -> Path:
    with gzip.open(src, "rb") as fin, open(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout)
    return dst


def evalplus_unsandboxed(dataset: str, workers: int, work: Path, cache: Path) -> tuple[float, float, float]:
    """Wall time and base/plus pass@1 of ``python -m evalplus.evaluate`` as a user runs it, on the
    same released samples and the same pinned dataset file (given through evalplus's
    ``*_OVERRIDE_PATH``), its cache in ``cache`` (empty: it computes the ground truth first)."""
    release, env_name = RELEASES[dataset]
    work.mkdir(parents=True, exist_ok=True)
    data = work / f"{release}.jsonl"
    if not data.exists():
        _gunzip(SHARED / "evalplus" / f"{release}.jsonl.gz", data)
    samples = _gunzip(SHARED / "upstream" / f"sc2-15b-instruct-{dataset}-samples.jsonl.gz", work / f"{dataset}.jsonl")
    env = {**os.environ, env_name: str(data), "XDG_CACHE_HOME": str(cache)}
    cmd = [sys.executable, "-m", "evalplus.evaluate", "--dataset", dataset, "--samples", str(samples),
           "--parallel", str(workers), "--i-just-wanna-run"]
    results = work / f"{dataset}_eval_results.json"
    results.unlink(missing_ok=True)  # else evalplus asks on stdin whether to overwrite it
    started = time.time()
    subprocess.run(cmd, env=env, cwd=work, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.time() - started
    with open(results, encoding="utf-8") as handle:
        evals = json.load(handle)["eval"]
    n = len(evals)
    base = sum(v[0]["base_status"] == "pass" for v in evals.values())
    plus = sum(v[0]["base_status"] == "pass" and v[0]["plus_status"] == "pass" for v in evals.values())
    return wall, base / n, plus / n


def _burn() -> None:  # pragma: no cover - load generator
    while True:
        pass


def _train_forever(tiny: Path, work: Path, stop: threading.Event) -> None:
    """The tiny model's training, as the tiny chain runs it, again and again until ``stop``."""
    meta = json.loads((tiny / "checkpoint.meta.json").read_text())
    runs = 0
    while not stop.is_set():
        out = work / f"train-{runs}"
        proc = subprocess.Popen(
            [str(Path(sys.executable).with_name("selfalign")), "train", "--params", json.dumps(meta["config"]),
             "--sft", str(tiny / "sft.jsonl"), "--base-model", str(tiny / "model" / "base"), "--out", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        while proc.poll() is None:
            if stop.wait(0.5):
                proc.terminate()
                proc.wait()
        shutil.rmtree(out, ignore_errors=True)
        for leftover in out.parent.glob(out.name + ".*"):  # its sidecar, a killed run's partial
            shutil.rmtree(leftover, ignore_errors=True) if leftover.is_dir() else leftover.unlink()
        runs += 1
    print(f"   (tiny training ran {runs} times alongside)")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out-dir", default="/tmp/selfalign-rescore")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--datasets", nargs="+", default=["humaneval", "mbpp"])
    parser.add_argument("--limit", type=int, default=None, help="first N tasks only (smoke test)")
    parser.add_argument("--burn", type=int, default=0, help="CPU-burning processes to run alongside")
    parser.add_argument("--backend", default="gvisor")
    parser.add_argument("--baseline", default="evalplus", choices=["evalplus", "none"],
                        help="also time evalplus.evaluate unsandboxed on the same samples (default)")
    parser.add_argument("--checker", default="release", choices=["release", "evalplus-0.2.1"],
                        help="the release's EvalPlus comparison (default) or evalplus 0.2.1's own")
    parser.add_argument("--train", type=Path, default=None,
                        help="a tiny run's results directory: a round with its training looping alongside")
    parser.add_argument("--no-recheck", action="store_true",
                        help="evalplus's one wall-clock check (no re-check of time-limit failures)")
    args = parser.parse_args()

    out_dir = Path(args.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    results = []
    idle: dict[str, tuple[int, int, float]] = {}
    rounds: list[tuple[str, int, bool]] = [("idle", 0, False)]
    if args.burn:
        rounds.append((f"{args.burn} burners", args.burn, False))
    if args.train:
        rounds.append(("tiny training", 0, True))
    for label, burn, train in rounds:
        burners = [multiprocessing.Process(target=_burn, daemon=True) for _ in range(burn)]
        for p in burners:
            p.start()
        stop = threading.Event()
        trainer = threading.Thread(target=_train_forever, args=(args.train, out_dir, stop)) if train else None
        if trainer:
            trainer.start()
        try:
            for dataset in args.datasets:
                baseline: list[tuple[str, float, float, float]] = []
                if label == "idle" and args.baseline == "evalplus" and args.limit is None:
                    cache = out_dir / "evalplus-cache" / dataset
                    shutil.rmtree(cache, ignore_errors=True)
                    for kind in ("cold cache", "warm cache"):
                        baseline.append((kind, *evalplus_unsandboxed(dataset, args.workers, out_dir / "evalplus", cache)))
                started = time.time()
                out = out_dir / (f"{dataset}.json" if label == "idle" else f"{dataset}.{label.replace(' ', '-')}.json")
                score = run_score(
                    SHARED / "upstream" / f"sc2-15b-instruct-{dataset}-samples.jsonl.gz",
                    dataset,
                    out,
                    data=DataParams(mirrors=[str(SHARED / "evalplus")]),
                    params=ScoreParams(backend=args.backend, workers=args.workers, checker=args.checker,
                                       allow_unsandboxed=args.backend == "none",
                                       recheck_time_limits=not args.no_recheck),
                    limit=args.limit,
                    published=SHARED / "upstream" / f"sc2-15b-instruct-{dataset}-eval-results.json.gz",
                )
                wall = time.time() - started
                res, agreement = score.result, score.result["agreement"]
                base, plus = res["base"]["passed"], res["plus"]["passed"]
                pub_base, pub_plus, pub_n = PUBLISHED_TOTALS[dataset]
                print(f"== {dataset} {res['version']}: {res['n_tasks']} tasks, wall {wall:.1f} s "
                      f"({args.workers} workers, {label})")
                print(f"   ours      base {base} ({100 * res['base']['pass_at_1']:.1f}%)"
                      f"  plus {plus} ({100 * res['plus']['pass_at_1']:.1f}%)")
                print(f"   published base {agreement['base']['published_passed']}  plus "
                      f"{agreement['plus']['published_passed']}  (release notes: {pub_base}/{pub_plus} of {pub_n})")
                n = agreement["n_compared"]
                print(f"   agreement with published: base {agreement['base']['agree']}/{n}"
                      f" ({agreement['base']['agree'] / n:.3f}), plus {agreement['plus']['agree']}/{n}"
                      f" ({agreement['plus']['agree'] / n:.3f})")
                for d in agreement["disagreements"]:
                    print(f"   differs {d['task_id']:<14} {','.join(d['differs']):<10} ours {d['ours']}  "
                          f"published {d['published']}")
                print(f"   sandbox {json.dumps(score.meta['sandbox'])}  timing {json.dumps(score.meta['timing'])}")
                rechecks = score.meta["rechecks"]
                print(f"   re-checked on CPU time: {rechecks['parts']} parts, {rechecks['passed']} passed: "
                      + ", ".join(f"{r['task_id']} {r['part']} ({r['first']} at input {r['at']} -> {r['status']},"
                                  f" slowdown {r['slowdown']})" for r in rechecks["each"]))
                phases = score.meta["timing"].get("phases", {})
                if phases:
                    n_run = res["n_tasks"]
                    print("   per task (ms): " + ", ".join(
                        f"{k.removesuffix('_seconds')} {1000 * v / n_run:.0f}" if k.endswith("_seconds")
                        else f"{k} {v / n_run:.1f}" for k, v in phases.items()))
                for kind, ep_wall, ep_base, ep_plus in baseline:
                    print(f"   evalplus.evaluate unsandboxed, --parallel {args.workers}, {kind}: {ep_wall:.1f} s "
                          f"(base {100 * ep_base:.1f}%, plus {100 * ep_plus:.1f}%); "
                          f"ours / evalplus: {wall / ep_wall:.2f}x")
                if label == "idle":
                    idle[dataset] = (base, plus, wall)
                    results.append(res)
                else:
                    b0, p0, w0 = idle[dataset]
                    print(f"   loaded/idle: base {base / max(b0, 1):.3f}, plus {plus / max(p0, 1):.3f}, "
                          f"wall {wall / w0:.2f}x")
                sys.stdout.flush()
        finally:
            for p in burners:
                p.terminate()
            stop.set()
            if trainer:
                trainer.join()
    print()
    print(markdown_table(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())
