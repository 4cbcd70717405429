"""Every file a config pins by URL + sha256, and the check that each pin is the file it claims.

A user's clone has no ``../shared``: everything the workflow reads from outside is named in the
config by URL and sha256 and fetched (mirror, cache, download; :func:`selfalign.fetch.fetch_pinned`).
A pin can be wrong in two ways that a download would only reveal on a real machine: the sha256
is not that of the file at the URL (the URL names another commit, say), or the mirror holds
another file. :func:`check_pins` catches both offline:

- a raw GitHub URL into the release's repository must name ``release.commit`` (the paper
  config reproduces one upstream commit, not a mix);
- where ``data/upstream_blobs.json`` knows the file at that commit and path (sha256 values
  taken from the upstream git history), the pinned sha256 must be that one;
- every pin must resolve, in the given mirrors, to a file with its sha256 (by name, or by
  content, plain or gzipped); with ``require_mirror`` a pin no mirror holds is a failure.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from .evaluation.benchmarks import EVALPLUS_RELEASES
from .fetch import FetchError, fetch_pinned, find_in_mirrors

_RAW_GITHUB = re.compile(r"^https://raw\.githubusercontent\.com/([^/]+/[^/]+)/([0-9a-f]{7,40})/(.+)$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_COMMIT = re.compile(r"^[0-9a-f]{40}$")
#: What a value still to be filled in looks like: ``<40-hex commit>``, ``...``, TODO.
_PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|\bTODO\b|\bFIXME\b|\bXXX\b")


@dataclass(frozen=True)
class Pin:
    """One pinned file: where the config names it, its URL and sha256, where to look first."""

    key: str
    url: str
    sha256: str
    mirrors: tuple[str, ...] = ()
    cache_dir: str = "~/.cache/selfalign/pinned"

    @classmethod
    def from_section(cls, key: str, section: Mapping[str, Any], mirrors: Sequence[str], cache_dir: str) -> Pin:
        missing = [k for k in ("url", "sha256") if not section.get(k)]
        if missing:
            raise ValueError(f"{key}: a pinned file needs {' and '.join(missing)}")
        return cls(key, str(section["url"]), str(section["sha256"]).lower(), tuple(mirrors), cache_dir)

    def to_dict(self) -> dict[str, Any]:
        """What ``selfalign pins fetch --pin`` takes."""
        return {"key": self.key, "url": self.url, "sha256": self.sha256, "mirrors": list(self.mirrors),
                "cache_dir": self.cache_dir}

    def fetch(self, extra_mirrors: Sequence[str] = ()) -> Path:
        """A local copy with the pinned sha256 (mirrors, then the cache, then the URL)."""
        return fetch_pinned(self.url, self.sha256, mirrors=[*self.mirrors, *extra_mirrors], cache_dir=self.cache_dir)


def _evalplus_spec(spec: str) -> str | None:
    return spec.split(":", 1)[1] if isinstance(spec, str) and spec.startswith("evalplus:") else None


def _evalplus_pin(key: str, dataset: str, version: str, section: Mapping[str, Any]) -> Pin:
    """A pinned EvalPlus release, looked up in the mirrors and cache of the config ``section``."""
    url, sha = EVALPLUS_RELEASES[(dataset, version)]
    mirrors = tuple(section.get("mirrors") or ())
    return Pin(key, url, sha, mirrors, section.get("cache_dir", "~/.cache/selfalign/benchmarks"))


def config_pins(config: Mapping[str, Any]) -> list[Pin]:
    """Every file ``config`` pins, in config order."""
    pins: list[Pin] = []
    fewshot = config.get("generation", {}).get("fewshot") or {}
    if fewshot.get("source", "upstream") == "upstream":
        pins.append(
            Pin.from_section(
                "generation.fewshot",
                fewshot,
                fewshot.get("mirrors") or (),
                fewshot.get("cache_dir", "~/.cache/selfalign/prompts"),
            )
        )
    decontam = config.get("seeds", {}).get("filter", {}).get("decontamination") or {}
    evaluation = config.get("evaluation") or {}
    for dataset in ("humaneval", "mbpp"):
        version = _evalplus_spec(decontam.get(dataset, ""))
        if version is not None:
            pins.append(_evalplus_pin(f"seeds.filter.decontamination.{dataset}", dataset, version, decontam))
    for dataset in ("humaneval", "mbpp"):
        version = evaluation.get(f"{dataset}_version")
        if version:
            pins.append(_evalplus_pin(f"evaluation.{dataset}_version", dataset, version, evaluation))
    pins.extend(rescore_pins(config).values())
    pins.extend(octopack_pins(config).values())
    return pins


def octopack_pins(config: Mapping[str, Any]) -> dict[str, Pin]:
    """``"humanevalpack-<language>" | "oasstcommitpackft" -> Pin`` of the ``octopack`` section. Each file
    has a cache directory of its own: the six HumanEvalPack files share one base name."""
    octopack = config.get("octopack") or {}
    mirrors = tuple(octopack.get("mirrors") or ())
    cache_dir = str(octopack.get("cache_dir", "~/.cache/selfalign/octopack")).rstrip("/")
    out: dict[str, Pin] = {}
    for language, section in (octopack.get("humanevalpack") or {}).items():
        name = f"humanevalpack-{language}"
        out[name] = Pin.from_section(f"octopack.{name}", section, mirrors, f"{cache_dir}/{name}")
    if octopack.get("oasstcommitpackft"):
        out["oasstcommitpackft"] = Pin.from_section("octopack.oasstcommitpackft", octopack["oasstcommitpackft"],
                                                    mirrors, f"{cache_dir}/oasstcommitpackft")
    return out


def rescore_pins(config: Mapping[str, Any]) -> dict[str, Pin]:
    """``"<dataset>.<samples|published>" -> Pin`` of the ``rescore`` section."""
    rescore = config.get("rescore") or {}
    mirrors = tuple(rescore.get("mirrors") or ())
    cache_dir = rescore.get("cache_dir", "~/.cache/selfalign/rescore")
    out: dict[str, Pin] = {}
    for dataset in ("humaneval", "mbpp"):
        for part in ("samples", "published"):
            section = (rescore.get(dataset) or {}).get(part)
            if section:
                key = f"rescore.{dataset}.{part}"
                out[f"{dataset}.{part}"] = Pin.from_section(key, section, mirrors, cache_dir)
    return out


@cache
def known_blobs() -> dict[str, Any]:
    """``repo -> commit -> path -> sha256`` from ``data/upstream_blobs.json``."""
    text = resources.files("selfalign").joinpath("data/upstream_blobs.json").read_text(encoding="utf-8")
    data: dict[str, Any] = json.loads(text)
    data.pop("_about", None)
    return data


def _full_commit(repo: str, commit: str) -> str | None:
    matches = [c for c in known_blobs().get(repo, {}) if c.startswith(commit)]
    return matches[0] if len(matches) == 1 else None


@dataclass(frozen=True)
class PinReport:
    pin: Pin
    problems: tuple[str, ...]
    resolved: Path | None

    @property
    def ok(self) -> bool:
        return not self.problems


def check_pin(
    pin: Pin,
    release: Mapping[str, Any] | None,
    *,
    extra_mirrors: Sequence[str] = (),
    require_mirror: bool = False,
) -> PinReport:
    problems: list[str] = []
    if not _SHA256.match(pin.sha256):
        problems.append(f"sha256 {pin.sha256!r} is not 64 hex digits (a placeholder?)")
    if _PLACEHOLDER.search(pin.url):
        problems.append(f"the URL {pin.url!r} holds a placeholder")
    match = _RAW_GITHUB.match(pin.url)
    if match:
        repo, commit, path = match.groups()
        if release and repo == release.get("repo") and not str(release.get("commit", "")).startswith(commit):
            problems.append(
                f"{pin.url} names commit {commit} of {repo}, but the config's {release.get('key', 'release')} "
                f"commit is {release.get('commit')} ({release.get('key', 'release')}.commit)"
            )
        full = _full_commit(repo, commit)
        known = known_blobs().get(repo, {}).get(full or "", {}).get(path)
        if known is not None and known != pin.sha256:
            problems.append(
                f"the file at {repo}@{commit}:{path} has sha256 {known} (upstream git history), "
                f"but the config pins {pin.sha256}"
            )
    resolved: Path | None = None
    mirrors = [*pin.mirrors, *extra_mirrors]
    try:
        resolved = find_in_mirrors(pin.url, pin.sha256, mirrors)  # a check never downloads
    except FetchError as exc:
        problems.append(str(exc))
    else:
        if resolved is None and require_mirror:
            where = ", ".join(mirrors) or "no mirror given"
            problems.append(f"no mirror holds {pin.url} with sha256 {pin.sha256} ({where})")
    return PinReport(pin, tuple(problems), resolved)


def check_pins(
    config: Mapping[str, Any], *, extra_mirrors: Sequence[str] = (), require_mirror: bool = False
) -> list[PinReport]:
    """Each pin of ``config``; a raw GitHub URL into the release's repository must name
    ``release.commit``, one into OctoPack's ``octopack.commit``."""
    release = config.get("release")
    octopack = config.get("octopack") or {}
    pinned_commits = {"release": release, "octopack": {"key": "octopack", "repo": octopack.get("repo"),
                                                       "commit": octopack.get("commit")}}
    return [
        check_pin(pin, pinned_commits.get(pin.key.split(".", 1)[0], release), extra_mirrors=extra_mirrors,
                  require_mirror=require_mirror)
        for pin in config_pins(config)
    ]


@dataclass(frozen=True)
class HubPin:
    """A Hub dataset the config names by repository and revision (a mix source of kind hub)."""

    key: str
    dataset: str
    revision: str

    def problems(self) -> tuple[str, ...]:
        """A revision must be a commit: a branch moves, a placeholder names nothing."""
        if _COMMIT.match(self.revision):
            return ()
        what = "a placeholder" if _PLACEHOLDER.search(self.revision) else "not a 40-hex commit (a branch moves)"
        return (f"{self.dataset} revision {self.revision!r} is {what}",)


def hub_pins(config: Mapping[str, Any]) -> list[HubPin]:
    """The Hub datasets the config names: ``curation.mix``'s, in config order, then LiveCodeBench's
    problems (unless local ``files`` replace them)."""
    mix = (config.get("curation") or {}).get("mix") or []
    pins = [HubPin(f"curation.mix[{source.get('name')!r}]", str(source.get("dataset")), str(source.get("revision")))
            for source in mix if isinstance(source, Mapping) and source.get("kind") == "hub"]
    lcb = config.get("livecodebench") or {}
    if lcb.get("dataset") and not lcb.get("files"):
        pins.append(HubPin("livecodebench", str(lcb["dataset"]), str(lcb.get("revision"))))
    for section in ("test_output_prediction", "code_execution"):
        part = lcb.get(section) or {}
        if part.get("dataset") and not part.get("files"):
            pins.append(HubPin(f"livecodebench.{section}", str(part["dataset"]), str(part.get("revision"))))
    return pins
