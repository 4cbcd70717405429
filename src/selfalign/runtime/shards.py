"""How a stage's input is cut into shards."""

from __future__ import annotations


def shard_bounds(n: int, shard: int, num_shards: int) -> tuple[int, int]:
    """The contiguous ``[start, stop)`` slice of ``n`` items that shard ``shard`` owns.

    Contiguous slices keep input order, so concatenating shard outputs in shard order gives the
    same bytes as an unsharded run.
    """
    if num_shards < 1 or not 0 <= shard < num_shards:
        raise ValueError(f"shard {shard} out of range for {num_shards} shards")
    return n * shard // num_shards, n * (shard + 1) // num_shards
