"""Near-deduplication of seed functions: MinHash + LSH (datasketch), Jaccard threshold 0.5.

Upstream ran ChenghaoMou/text-dedup's MinHash over the extracted functions. We follow the
same recipe with datasketch: shingles are 5-grams of lower-cased alphanumeric tokens, 256
permutations, LSH bands chosen by datasketch for the threshold, candidate pairs (functions
sharing a band) joined by union-find, and one function kept per cluster: the first in id order.

Determinism: signatures depend only on the text and the seed; records are processed in input
(id) order and the cluster representative is the smallest index, so the output does not depend
on worker count or on how the signature computation was chunked.
"""

from __future__ import annotations

import hashlib
import multiprocessing
import re
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from datasketch import LeanMinHash, MinHash, MinHashLSH

from ..config import check_params
from ..records import (
    JsonObj,
    atomic_writer,
    count_lines,
    dumps,
    iter_jsonl,
    sha256_file,
)
from ..runtime import StageStats, UnitPlan, UnitRun, drive, progress, streamed_drops

NON_ALPHA = re.compile(r"[^A-Za-z_0-9]")
# datasketch's hashing scheme, named so that a datasketch upgrade cannot change signatures silently.
SCHEME = "affine32"


@dataclass(frozen=True)
class DedupParams:
    threshold: float = 0.5
    num_perm: int = 256
    ngram: int = 5
    seed: int = 42
    records_per_unit: int = 20000

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> DedupParams:
        check_params(cls, data, "seeds.dedup")  # types and bounds: the schema's
        return cls(**data)


def shingles(text: str, ngram: int) -> set[bytes]:
    """Word n-grams of the lower-cased alphanumeric tokens (text-dedup's tokenisation).

    A text with fewer than ``ngram`` tokens becomes a single shingle of all its tokens, so that
    short functions still get a meaningful signature instead of an empty one.
    """
    tokens = [t for t in NON_ALPHA.split(text.lower()) if t]
    if len(tokens) < ngram:
        return {" ".join(tokens).encode("utf-8")}
    return {" ".join(tokens[i : i + ngram]).encode("utf-8") for i in range(len(tokens) - ngram + 1)}


class _Signer:
    """Computes signatures with one shared permutation table (building it per MinHash is slow)."""

    def __init__(self, num_perm: int, seed: int):
        template = MinHash(num_perm=num_perm, seed=seed, scheme=SCHEME)
        self.num_perm = num_perm
        self.seed = seed
        self.permutations = template.permutations

    def __call__(self, text: str, ngram: int) -> np.ndarray:
        mh = MinHash(
            num_perm=self.num_perm, seed=self.seed, permutations=self.permutations, scheme=SCHEME
        )
        mh.update_batch(sorted(shingles(text, ngram)))
        return np.asarray(mh.hashvalues, dtype=np.uint64)


_SIGNER: _Signer | None = None


def _init_worker(num_perm: int, seed: int) -> None:
    global _SIGNER
    _SIGNER = _Signer(num_perm, seed)


def _sign_chunk(args: tuple[list[str], int]) -> np.ndarray:
    texts, ngram = args
    assert _SIGNER is not None
    if not texts:
        return np.zeros((0, _SIGNER.num_perm), dtype=np.uint64)
    return np.stack([_SIGNER(t, ngram) for t in texts])


def _band_hash(band: bytes) -> bytes:
    # Keep LSH buckets small in memory: 8 bytes per band instead of r * 8.
    return hashlib.blake2b(band, digest_size=8).digest()


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, x: int) -> int:
        root = x
        while self.parent[root] != root:
            root = self.parent[root]
        while self.parent[x] != root:
            self.parent[x], x = root, self.parent[x]
        return root

    def union(self, a: int, b: int) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # the smaller index is the representative: the first record in id order is kept
            if ra < rb:
                self.parent[rb] = ra
            else:
                self.parent[ra] = rb


def _iter_units(path: Path, per_unit: int) -> Iterator[tuple[int, list[str]]]:
    unit: list[str] = []
    index = 0
    for _, record in iter_jsonl(path, {"id": str, "content": str}):
        unit.append(record["content"])
        if len(unit) == per_unit:
            yield index, unit
            index += 1
            unit = []
    if unit:
        yield index, unit


@dataclass
class _Signatures:
    """The MinHash signatures as a :class:`selfalign.runtime.UnitStage` with no records of its
    own: a unit is ``records_per_unit`` records whose signatures are kept as ``<unit>.npy``
    beside the parts, so finished units survive a kill; :meth:`summarize` stacks them."""

    input_path: Path
    params: DedupParams
    workers: int
    signatures: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.uint64), init=False)

    def plan(self) -> UnitPlan:
        return UnitPlan(
            stage="seeds.dedup.minhash",
            version=1,
            key={"input": sha256_file(self.input_path), "params": asdict(self.params), "scheme": SCHEME},
            total=count_lines(self.input_path),
            per_unit=self.params.records_per_unit,
            drops=False,
            records=False,
            desc="minhash",
        )

    def process(self, run: UnitRun) -> None:
        params, workers = self.params, self.workers
        pending = [(unit, texts) for unit, texts in _iter_units(self.input_path, params.records_per_unit)
                   if unit not in run.done]

        def store(unit: int, sigs: np.ndarray) -> None:
            with atomic_writer(run.unit_file(unit, ".npy"), "wb") as handle:
                np.save(handle, sigs)
            run.write(unit, [], {"records": int(sigs.shape[0])})

        # Each unit is split into sub-chunks so that all workers stay busy on small inputs too.
        chunk = max(1, min(1000, params.records_per_unit // max(1, workers * 4)))
        if workers > 1:
            ctx = multiprocessing.get_context("fork")
            initargs = (params.num_perm, params.seed)
            with ctx.Pool(workers, initializer=_init_worker, initargs=initargs) as pool:
                for unit, texts in pending:
                    jobs = [(texts[i : i + chunk], params.ngram) for i in range(0, len(texts), chunk)]
                    parts = []
                    for sigs in pool.imap(_sign_chunk, jobs):
                        parts.append(sigs)
                        run.advance(sigs.shape[0])
                    store(unit, np.concatenate(parts))
        else:
            _init_worker(params.num_perm, params.seed)
            for unit, texts in pending:
                sigs = _sign_chunk((texts, params.ngram))
                run.advance(sigs.shape[0])
                store(unit, sigs)

    def summarize(self, units: list[JsonObj], run: UnitRun) -> StageStats:
        n_units = run.plan.n_units
        if n_units == 0:
            self.signatures = np.zeros((0, self.params.num_perm), dtype=np.uint64)
        else:
            self.signatures = np.concatenate([np.load(run.unit_file(u, ".npy")) for u in range(n_units)])
        n = int(self.signatures.shape[0])
        return StageStats(n_in=n, n_out=n)


def compute_signatures(input_path: Path, params: DedupParams, output_path: Path, workers: int,
                       show_progress: bool) -> np.ndarray:
    """Signatures for every record, in input order; finished units survive a kill (their parts
    live beside ``output_path`` until the signatures are all there)."""
    stage = _Signatures(input_path, params, workers)
    drive(stage, output_path, show_progress=show_progress)
    return stage.signatures


def cluster(signatures: np.ndarray, params: DedupParams, show_progress: bool = True) -> list[int]:
    """The cluster representative (smallest index) of every record."""
    n = signatures.shape[0]
    lsh = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm, hashfunc=_band_hash)
    sketches = [LeanMinHash(seed=params.seed, hashvalues=signatures[i], scheme=SCHEME) for i in range(n)]
    with lsh.insertion_session() as session:
        for i in progress(range(n), desc="lsh insert", total=n, enabled=show_progress):
            session.insert(i, sketches[i], check_duplication=False)
    uf = _UnionFind(n)
    for i in progress(range(n), desc="lsh query", total=n, enabled=show_progress):
        for j in lsh.query(sketches[i]):
            uf.union(i, int(j))
    return [uf.find(i) for i in range(n)]


def run_dedup(
    input_path: str | Path,
    output_path: str | Path,
    duplicates_path: str | Path,
    params: DedupParams,
    workers: int = 1,
    show_progress: bool = True,
) -> StageStats:
    """Write the kept records to ``output_path`` and a ``{id, kept}`` line per dropped record."""
    input_path, output_path = Path(input_path), Path(output_path)
    signatures = compute_signatures(input_path, params, output_path, workers, show_progress)
    roots = cluster(signatures, params, show_progress)

    stats = StageStats()
    ids: list[str] = []
    clusters: dict[int, int] = {}
    with (
        atomic_writer(output_path) as out,
        atomic_writer(duplicates_path) as dup,
        streamed_drops(output_path, stats) as drops,
    ):
        for index, (_, record) in enumerate(iter_jsonl(input_path, {"id": str, "content": str})):
            stats.n_in += 1
            ids.append(record["id"])
            root = roots[index]
            if root == index:
                out.write(dumps(record) + "\n")
                stats.n_out += 1
            else:
                clusters[root] = clusters.get(root, 1) + 1
                entry: JsonObj = {"id": record["id"], "kept": ids[root]}
                dup.write(dumps(entry) + "\n")
                drops.drop(record["id"], "near_duplicate", {"duplicate_of": ids[root]})
    stats.check_balance()
    sizes = sorted(clusters.values(), reverse=True)
    bands = MinHashLSH(threshold=params.threshold, num_perm=params.num_perm)
    stats.extra = {
        "clusters_with_duplicates": len(clusters),
        "largest_cluster": sizes[0] if sizes else 1,
        "lsh_bands": int(bands.b),
        "lsh_rows": int(bands.r),
    }
    return stats
