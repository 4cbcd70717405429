"""The execution stage in the pinned images: the same kept records on the host (gvisor backend),
on the host with every sample in the sandbox image (podman backend), and with the whole stage
inside the CPU pipeline image.

Inside the pipeline image the samples still run under gVisor: the stage's own gvisor backend
(``runsc --rootless``) inside the container. runsc needs a privileged container for that (its
sandbox cannot start otherwise: "cannot read client sync file"), so the pipeline container runs
``--privileged`` with runc and no network; the untrusted code's boundary stays gVisor, as on the
host, where the stage runs as root too.

Needs podman and the images of ``scripts/build-images.sh`` (built here if missing, as root);
fails without them unless ``SELFALIGN_NO_CONTAINERS=1``.
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
from container_images import recorded_ids, require_images

from selfalign.records import read_jsonl, write_jsonl

pytestmark = [pytest.mark.sandbox, pytest.mark.containers, pytest.mark.timeout(1800)]

REPO = Path(__file__).resolve().parents[1]
PARAMS: dict[str, Any] = {"timeout_s": 2, "memory_mb": 1024, "workers": 2, "records_per_unit": 3}
# podman's default rlimits exceed this host's hard limits, which runc may not raise.
ULIMITS = ["--ulimit=nofile=4096:4096", "--ulimit=nproc=4096:4096"]


def fenced(code: str) -> str:
    return f"```python\n{code}\n```"


def responses() -> tuple[list[dict[str, Any]], dict[str, str]]:
    """Records whose samples pass, fail, time out, have no code or misbehave; and each output
    id's sample name."""
    samples = {
        "recursion": "def fact(n):\n    return 1 if n < 2 else n * fact(n - 1)\n\nassert fact(6) == 720",
        "two_blocks": "def add(a, b):\n    return a + b\n```\n\nTests:\n```python\nassert add(2, 3) == 5",
        "stdlib": "import heapq, json\nassert heapq.nsmallest(2, [5, 1, 4]) == [1, 4]\nassert json.loads('[1]') == [1]",
        "failing_assert": "def inc(x):\n    return x + 2\n\nassert inc(1) == 2",
        "exception": "def get(d):\n    return d['missing']\n\nget({})",
        "timeout": "while True:\n    pass",
        "network": "import socket\nsocket.create_connection(('pypi.org', 443), timeout=1)",
        "write_outside_tmp": "open('/etc/selfalign-escape', 'w').write('x')",
        "tmp_is_fine": "import tempfile\nwith tempfile.NamedTemporaryFile('w') as f:\n    f.write('ok')",
        "early_exit": "import sys\nsys.exit(0)\nassert False",
        "memory": "x = bytearray(2 * 1024 ** 3)",
    }
    records = []
    names = sorted(samples)
    sample_names = {}
    for index in range(0, len(names), 2):
        chunk = names[index : index + 2]
        sample_names.update({f"rec-{index // 2:02d}/{n}": name for n, name in enumerate(chunk)})
        records.append(
            {
                "id": f"rec-{index // 2:02d}",
                "instruction": " and ".join(chunk),
                "responses": [
                    {"sample": n, "response": f"Here it is.\n\n{fenced(samples[name])}\n"}
                    for n, name in enumerate(chunk)
                ],
            }
        )
    records.append(
        {"id": "rec-nocode", "instruction": "prose", "responses": [{"sample": 0, "response": "No code."}]}
    )
    return records, sample_names


def execute_args(params: dict[str, Any], data: str, out: str) -> list[str]:
    return [
        "execute",
        "--params",
        json.dumps(params, sort_keys=True),
        "--input",
        f"{data}/responses.jsonl",
        "--shard",
        "0",
        "--num-shards",
        "1",
        "--out",
        out,
        "--no-progress",
    ]


def run(cmd: list[str], what: str) -> float:
    started = time.monotonic()
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, f"{what} failed ({done.returncode}):\n{done.stderr[-4000:]}"
    return time.monotonic() - started


def counts(out: Path) -> dict[str, Any]:
    """The sidecar's counts, drops by reason and the output's digest."""
    meta = json.loads(Path(f"{out}.meta.json").read_text())
    return {k: meta[k] for k in ("counts", "drops", "sha256")}


def packages(out: Path) -> dict[str, str]:
    return dict(json.loads(Path(f"{out}.meta.json").read_text())["packages"])


def test_release_mode_gives_the_host_verdicts_in_the_sandbox_image(tmp_path: Path) -> None:
    """exec_mode release (config.yaml): the sandbox image carries the release's sample packages
    (numpy 1.26.4, label org.selfalign.sample-site) and gives the host's bytes."""
    images = require_images("sandbox")
    records, sample_names = responses()
    numpy_sample = "import numpy as np\nassert np.arange(3).sum() == 3\nassert np.__version__ == '1.26.4'"
    records.append({"id": "rec-numpy", "instruction": "numpy",
                    "responses": [{"sample": 0, "response": fenced(numpy_sample)}]})
    sample_names["rec-numpy/0"] = "numpy"
    write_jsonl(tmp_path / "responses.jsonl", records)
    release = {**PARAMS, "exec_mode": "release", "sample_site": str(REPO / ".venv" / "sample-release")}
    host = [sys.executable, "-m", "selfalign"]
    outs = {name: tmp_path / name / "executed.jsonl" for name in ("gvisor", "podman")}
    for path in outs.values():
        path.parent.mkdir()
    run([*host, *execute_args({**release, "backend": "gvisor"}, str(tmp_path), str(outs["gvisor"]))], "host")
    run([*host, *execute_args({**release, "backend": "podman", "image": images["sandbox"]},
                              str(tmp_path), str(outs["podman"]))], "sandbox image")
    kept = sorted(sample_names[r["id"]] for r in read_jsonl(outs["gvisor"]))
    # the release's rules: no recursion, sys.exit(0) fails in its clean-up, numpy importable
    assert kept == ["numpy", "stdlib", "two_blocks"], kept
    assert outs["podman"].read_bytes() == outs["gvisor"].read_bytes()
    assert counts(outs["podman"]) == counts(outs["gvisor"])


def test_execute_stage_keeps_the_same_records_in_the_images(tmp_path: Path) -> None:
    images = require_images("sandbox", "pipeline")
    records, sample_names = responses()
    write_jsonl(tmp_path / "responses.jsonl", records)
    host = [sys.executable, "-m", "selfalign"]
    outs = {name: tmp_path / name / "executed.jsonl" for name in ("gvisor", "podman", "pipeline")}
    for path in outs.values():
        path.parent.mkdir()
    seconds = {
        "gvisor": run(
            [*host, *execute_args({**PARAMS, "backend": "gvisor"}, str(tmp_path), str(outs["gvisor"]))],
            "host, gvisor backend",
        ),
        "podman": run(
            [
                *host,
                *execute_args(
                    {**PARAMS, "backend": "podman", "image": images["sandbox"]},
                    str(tmp_path),
                    str(outs["podman"]),
                ),
            ],
            "host, podman backend in the sandbox image",
        ),
        "pipeline": run(
            [
                "podman",
                "run",
                "--rm",
                "--runtime=runc",
                "--privileged",  # for runsc inside; see the module docstring
                "--network=none",
                *ULIMITS,
                f"--volume={tmp_path}:/data",
                images["pipeline"],
                "selfalign",
                *execute_args({**PARAMS, "backend": "gvisor"}, "/data", "/data/pipeline/executed.jsonl"),
            ],
            "pipeline image, gvisor backend inside",
        ),
    }
    print("execute seconds:", {k: round(v, 1) for k, v in seconds.items()})

    reference = outs["gvisor"].read_bytes()
    kept = [sample_names[r["id"]] for r in read_jsonl(outs["gvisor"])]
    assert kept == ["recursion", "stdlib", "tmp_is_fine", "two_blocks"], kept
    for name in ("podman", "pipeline"):
        assert outs[name].read_bytes() == reference, f"{name}: executed.jsonl differs from the host's"
        assert counts(outs[name]) == counts(outs["gvisor"]), name
    got = counts(outs["gvisor"])
    assert got["counts"] == {"in": 12, "out": 4, "dropped": 8}
    assert got["drops"] == {
        "fail:assertion": 1,
        "fail:exception:KeyError": 1,
        "fail:exception:PermissionError": 1,  # the write outside /tmp
        "fail:exception:gaierror": 1,  # the network
        "fail:exit:0": 1,
        "fail:memory": 1,
        "no_code": 1,
        "timeout": 1,
    }
    # The pipeline image holds the host environment's pins (envs/pipeline.txt).
    assert packages(outs["pipeline"]) == packages(outs["gvisor"])


def test_build_script_recorded_the_images() -> None:
    images = require_images("sandbox", "pipeline")
    ids = recorded_ids()
    for name, ref in images.items():
        inspected = subprocess.run(
            ["podman", "image", "inspect", "--format", "sha256:{{.Id}}", ref],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout.strip()
        assert ids[name] == inspected, (name, ids[name], inspected)
    # The overlay it wrote pins the sandbox image by ID and passes the config checks.
    from selfalign.config import load_config, validate_config
    from selfalign.evaluation.score import ScoreParams
    from selfalign.execution import ExecutionParams

    overlay = Path(__file__).resolve().parents[1] / "results" / "images" / "sandbox-config.yaml"
    config = load_config([Path(__file__).resolve().parents[1] / "config.yaml", overlay])
    validate_config(config)
    execution = {k: v for k, v in config["execution"].items() if k != "shards"}
    assert ExecutionParams.from_dict(execution).image == ids["sandbox"]
    assert ScoreParams.from_dict(config["evaluation"]["sandbox"]).image == ids["sandbox"]


SCORE_CASES = [
    ("humaneval", "HumanEval/0"),  # pass / pass
    ("humaneval", "HumanEval/1"),  # base fail
    ("humaneval", "HumanEval/10"),  # plus-only fail
    ("mbpp", "Mbpp/6"),  # plus-only fail
    ("mbpp", "Mbpp/63"),  # tuple inputs, base fail
]


@pytest.mark.timeout(900)
def test_scorer_in_the_sandbox_image_gives_the_host_records(evalplus_dir: Path) -> None:
    """evaluation.sandbox backend podman: the image's evalplus (same pin) scores the released
    samples exactly as the host's evalplus under the gvisor backend."""
    import gzip

    from conftest import shared_data

    from selfalign.evaluation import score as score_mod
    from selfalign.evaluation.score import DataParams, ScoreParams, evalplus_site, load_tasks

    images = require_images("sandbox")
    data = DataParams(mirrors=[str(evalplus_dir)])
    site = evalplus_site()
    on_host, in_image = ScoreParams(), ScoreParams(backend="podman", image=images["sandbox"])
    for dataset in ("humaneval", "mbpp"):
        tasks = {t["task_id"]: t for t in load_tasks(dataset, None, data).tasks}
        path = shared_data() / "upstream" / f"sc2-15b-instruct-{dataset}-samples.jsonl.gz"
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            samples = {r["task_id"]: r["completion"] for r in map(json.loads, handle)}
        cases = [task_id for d, task_id in SCORE_CASES if d == dataset]
        with score_mod.scoring_sandbox(on_host, site) as host_sb, score_mod.scoring_sandbox(in_image, site) as image_sb:
            assert image_sb.backend.name == "podman"
            for task_id in cases:
                task = tasks[task_id]
                solution = task["prompt"] + samples[task_id]
                expected = score_mod.score_task(host_sb, dataset, task, solution, on_host, site).record
                got = score_mod.score_task(image_sb, dataset, task, solution, in_image, site).record
                assert got == expected, task_id
                if task_id in ("HumanEval/0", "Mbpp/6"):  # really scored, not two errors alike
                    assert got["base_status"] == "pass", got
