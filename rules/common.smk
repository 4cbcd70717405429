# Helpers shared by every rules/*.smk file (stage parameters as JSON, shard names).

import json

# Which recipe runs: the release, or an overlay on it (config recipe_variant), for the card;
# the same line the run report shows.
RECIPE = recipe_line(config)


def stage_params(*keys):
    """The config section at ``keys`` as one JSON string, passed to `selfalign ... --params`."""
    node = config
    for key in keys:
        node = node[key]
    return json.dumps(node, sort_keys=True)


def shard_names(n):
    return [f"{i:04d}" for i in range(n)]


def dropped(artifact):
    """The drop file beside a stage's artifact or shard (selfalign.chain.dropped_path)."""
    return str(dropped_path(artifact))


def sharded(pattern, n):
    """The n shard paths of ``pattern`` (which holds {shard})."""
    return expand(pattern, shard=shard_names(n))


# The stages start_from can stand in for, in chain order (selfalign.chain, the one definition of
# the chain); start_from replaces those up to and including its stage by an import of that
# stage's artifact.
CHAIN_STAGES = list(IMPORT_STAGES)
START_FROM = config["start_from"]
START_STAGE = START_FROM["stage"] if START_FROM else None
SEED_SHARDS = config["seeds"]["shards"]


def built_here(stage):
    """True when `stage` is computed by its own rule (not replaced by start_from)."""
    return START_STAGE is None or CHAIN_STAGES.index(stage) > CHAIN_STAGES.index(START_STAGE)


def present(stage):
    """True when the run holds `stage`'s artifact: built here or imported."""
    return START_STAGE is None or CHAIN_STAGES.index(stage) >= CHAIN_STAGES.index(START_STAGE)


# Generation: which server answers, and what each job owns.
BACKEND = config["serving"]["backend"]
TINY_MODEL = config["model"]["build"] == "tiny"
MODEL_DIR = f"{RESULTS}/model/base" if TINY_MODEL else None
# The tiny model trains on the seed functions; a run that starts later trains on the seed text
# ("content") of the records it imported.
TINY_CORPUS = f"{RESULTS}/{IMPORT_STAGES['filtered' if present('filtered') else START_STAGE]}"
GEN_SHARDS = config["generation"]["shards"]
# A job that starts vLLM holds a GPU; the CPU server runs one process per slot.
GEN_GPUS = 1 if BACKEND == "vllm" else 0
GEN_THREADS = config["serving"]["cpu"]["slots"] if BACKEND == "cpu" else 4

# Images (config containers) the jobs run in under --sdm apptainer. None means no container for
# those jobs: Snakemake 9 reads a None container as "none", not as "use the global one".
IMAGES = config["containers"]
PIPELINE_IMAGE = IMAGES["pipeline"]
TRAIN_IMAGE = IMAGES["train"]
# A vLLM job starts `vllm serve` itself, so it runs in the vLLM image; the CPU server and an
# endpoint client need only the pipeline image.
GEN_IMAGE = IMAGES["vllm"] if BACKEND == "vllm" else IMAGES["pipeline"]


def gen_settings(stage):
    """The settings one generation stage runs with, as JSON: only what shapes that stage, so
    changing (say) responses.n reruns the responses jobs and nothing upstream of them."""
    generation = config["generation"]
    section = {"fewshot": generation["fewshot"], "limit": generation["limit"] if stage == "judge" else None}
    if stage == "judge":
        section["judge_overlong"] = generation["judge_overlong"]
    if stage in generation:
        section[stage] = generation[stage]
    settings = {
        "model": {k: config["model"][k] for k in ("name", "revision")},
        "serving": config["serving"],
        "client": config["client"],
        "generation": section,
    }
    return json.dumps(settings, sort_keys=True)


# Evaluation: where the EvalPlus releases come from, and which release each dataset uses. The
# benchmarks are the registry's (selfalign.evaluation.benchmarks), not a list kept here.
EVAL = config["evaluation"]
EVAL_DATASETS = list(EVALPLUS)
EVAL_DATASET_PATTERN = "|".join(EVAL_DATASETS)


def eval_data_params():
    return json.dumps({"mirrors": EVAL["mirrors"], "cache_dir": EVAL["cache_dir"]}, sort_keys=True)


def eval_version(dataset):
    return EVAL[BENCHMARKS[dataset].version_param]


# Re-scoring the released model: its files are pinned by URL + sha256 in config rescore.
def rescore_pin(dataset, part):
    """One pinned file of config rescore: as JSON for `selfalign pins fetch`."""
    section = config["rescore"]
    pin = dict(section[dataset][part])
    pin.update(mirrors=section.get("mirrors", []), cache_dir=section.get("cache_dir", "~/.cache/selfalign/rescore"))
    return json.dumps(pin, sort_keys=True)


def rescore_inputs(wc):
    inputs = {"samples": f"results/rescore/inputs/{wc.dataset}.samples"}
    if config["rescore"][wc.dataset].get("published"):
        inputs["published"] = f"results/rescore/inputs/{wc.dataset}.published"
    return inputs


# OctoPack (config octopack:): its pinned files and the self-check's languages.
OCTO = config.get("octopack") or {}
OCTO_LANGUAGES = list((OCTO.get("selfcheck") or {}).get("languages") or [])
# ... and HumanEvalPack on this run's checkpoint (octopack.eval): every task kind, each language.
OCTO_EVAL = OCTO.get("eval") or {}
OCTO_EVAL_LANGUAGES = list(OCTO_EVAL.get("languages") or [])
OCTO_KINDS = ["synthesize", "fixtests", "fixdocs", "explaindescribe", "explainsynthesize"]
OCTO_SCORED = [k for k in OCTO_KINDS if k != "explaindescribe"]  # explaindescribe writes text, not code
OCTO_TABLE = [f"{RESULTS}/octopack/table.md"] if OCTO_EVAL.get("enabled") else []


def octopack_descriptions(wc):
    """explainsynthesize reads the explaindescribe samples: the describe step's output is its only
    view of the task."""
    return [f"{RESULTS}/octopack/explaindescribe/samples.jsonl"] if wc.kind == "explainsynthesize" else []


def octopack_pin(name):
    """One pinned file of config octopack (humanevalpack-<language> or oasst), as JSON for
    `selfalign pins fetch` (selfalign.pins.octopack_pins: one definition of its cache and mirrors)."""
    return json.dumps(octopack_pins(config)[name].to_dict(), sort_keys=True)


def mix_pins():
    """The pinned files curation.mix sources name (pin: <key>), as JSON for `selfalign curate sft`."""
    wanted = {source.get("pin") for source in config["curation"].get("mix") or []} - {None}
    pins = {pin.key: pin.to_dict() for pin in config_pins(config) if pin.key in wanted}
    return json.dumps(pins, sort_keys=True)
