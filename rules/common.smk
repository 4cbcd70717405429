# Helpers shared by every rules/*.smk file (stage parameters as JSON, shard names).

import json


def stage_params(*keys):
    """The config section at ``keys`` as one JSON string, passed to `selfalign ... --params`."""
    node = config
    for key in keys:
        node = node[key]
    return json.dumps(node, sort_keys=True)


def shard_names(n):
    return [f"{i:04d}" for i in range(n)]


def sharded(pattern, n):
    """The n shard paths of ``pattern`` (which holds {shard})."""
    return expand(pattern, shard=shard_names(n))


# Seed stages in chain order; seeds.start_from replaces those up to and including its stage.
SEED_STAGES = ["raw", "dedup", "quality", "filtered"]
START_FROM = config["seeds"]["start_from"]
START_STAGE = START_FROM["stage"] if START_FROM else None
SEED_SHARDS = config["seeds"]["shards"]


def built_here(stage):
    """True when `stage` is computed by its own rule (not replaced by seeds.start_from)."""
    return START_STAGE is None or SEED_STAGES.index(stage) > SEED_STAGES.index(START_STAGE)
