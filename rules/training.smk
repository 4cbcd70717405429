# Fine-tuning: the SFT data and the base model -> a transformers model directory.
#
#   checkpoint/   model, tokenizer with upstream's chat template, training_summary.json
#                 (final step, loss curve, examples/tokens truncated, every file's sha256)
#
# Intermediate checkpoints go to checkpoint.partial/ (not a declared output, so Snakemake leaves
# it alone): a killed job resumes from the last one. training.accelerate_config runs the job under
# `accelerate launch` (several GPUs, FSDP); otherwise one process, as upstream's 1 x A100.

import yaml

_ACCELERATE = config["training"]["accelerate_config"]
# The GPUs the train job asks for (resources gpu: --gpus on SLURM): accelerate launch starts one
# process per GPU (num_processes in its config); a plain run uses one. (A config file that is
# missing plans as one GPU; accelerate launch then fails on it with its own message.)
TRAIN_GPUS = (
    0
    if TINY_MODEL
    else (
        int(yaml.safe_load(Path(_ACCELERATE).read_text()).get("num_processes", 1))
        if _ACCELERATE and Path(_ACCELERATE).is_file()
        else 1
    )
)


rule train:
    input:
        sft=f"{RESULTS}/sft.jsonl",
        model=[MODEL_DIR] if TINY_MODEL else [],
    output:
        model=directory(f"{RESULTS}/checkpoint"),
        meta=f"{RESULTS}/checkpoint.meta.json",
    params:
        training=stage_params("training"),
        base=MODEL_DIR if TINY_MODEL else config["model"]["name"],
        revision=(
            f"--revision {config['model']['revision']}"
            if not TINY_MODEL and config["model"]["revision"]
            else ""
        ),
        launcher=(
            f"accelerate launch --config_file {_ACCELERATE} -m selfalign"
            if _ACCELERATE
            else "selfalign"
        ),
    log:
        f"{RESULTS}/logs/train.log",
    benchmark:
        f"{RESULTS}/benchmarks/train.tsv"
    threads: 2 if TINY_MODEL else 8
    resources:
        gpu=TRAIN_GPUS,
        mem_mb=8000 if TINY_MODEL else 200000,
        runtime=60 if TINY_MODEL else 2880,
    container:
        TRAIN_IMAGE
    shell:
        "{params.launcher} train --params {params.training:q} --sft {input.sft}"
        " --base-model {params.base} {params.revision} --out {output.model} > {log} 2>&1"
