# Evaluation: the checkpoint through the serving path, scored by EvalPlus in the sandbox.
#
#   eval/{humaneval,mbpp}.samples.jsonl   one greedy sample per task (EvalPlus samples format)
#   eval/{humaneval,mbpp}.json            base / plus pass@1 and per-task verdicts
#   eval/table.md                         both, beside the paper's published numbers
#
# `snakemake rescore` scores the released StarCoder2-15B-Instruct-v0.1 samples (config rescore:)
# into results/rescore/, with per-task agreement against the published verdicts.

rule eval_generate:
    input:
        model=f"{RESULTS}/checkpoint",
    output:
        data=f"{RESULTS}/eval/{{dataset}}.samples.jsonl",
        meta=f"{RESULTS}/eval/{{dataset}}.samples.jsonl.meta.json",
    wildcard_constraints:
        dataset=EVAL_DATASET_PATTERN,
    params:
        settings=json.dumps(
            {
                "model": {k: config["model"][k] for k in ("name", "revision")},
                "serving": config["serving"],
                "client": config["client"],
            },
            sort_keys=True,
        ),
        evaluation=stage_params("evaluation"),
    log:
        job=f"{RESULTS}/logs/eval/{{dataset}}.generate.log",
        server=f"{RESULTS}/logs/eval/{{dataset}}.server.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval/{{dataset}}.generate.tsv"
    threads: GEN_THREADS
    resources:
        gpu=GEN_GPUS,
        mem_mb=8000 if BACKEND == "cpu" else 64000,
        runtime=120,
    container:
        GEN_IMAGE
    shell:
        "selfalign eval generate --dataset {wildcards.dataset} --params {params.settings:q}"
        " --eval-params {params.evaluation:q} --model-dir {input.model}"
        " --server-log {log.server} --out {output.data} > {log.job} 2>&1"


rule eval_score:
    input:
        f"{RESULTS}/eval/{{dataset}}.samples.jsonl",
    output:
        data=f"{RESULTS}/eval/{{dataset}}.json",
        meta=f"{RESULTS}/eval/{{dataset}}.json.meta.json",
    wildcard_constraints:
        dataset=EVAL_DATASET_PATTERN,
    params:
        version=lambda wc: eval_version(wc.dataset),
        data=eval_data_params(),
        sandbox=json.dumps(EVAL["sandbox"], sort_keys=True),
        limit=f"--limit {EVAL['limit']}" if EVAL["limit"] else "",
    log:
        f"{RESULTS}/logs/eval/{{dataset}}.score.log",
    benchmark:
        f"{RESULTS}/benchmarks/eval/{{dataset}}.score.tsv"
    threads: EVAL["sandbox"].get("workers", 2)  # sandboxes: as many as the job gets cores
    resources:
        mem_mb=16000,
        runtime=120,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign eval score --dataset {wildcards.dataset} --version {params.version}"
        " --samples {input} --data-params {params.data:q} --sandbox {params.sandbox:q}"
        " --workers {threads} {params.limit} --out {output.data} > {log} 2>&1"


rule eval_table:
    input:
        expand(f"{RESULTS}/eval/{{dataset}}.json", dataset=EVAL_DATASETS),
    output:
        report(
            f"{RESULTS}/eval/table.md",
            category="3. Evaluation",
            caption="../report/captions/eval_table.rst",
        ),
    log:
        f"{RESULTS}/logs/eval/table.log",
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign eval table --inputs {input} --out {output} > {log} 2>&1"


rule rescore_input:
    output:
        "results/rescore/inputs/{dataset}.{part}",
    wildcard_constraints:
        dataset=EVAL_DATASET_PATTERN,
        part="samples|published",
    params:
        pin=lambda wc: rescore_pin(wc.dataset, wc.part),
    log:
        "results/rescore/logs/{dataset}.{part}.fetch.log",
    resources:
        mem_mb=500,
        runtime=10,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign pins fetch --pin {params.pin:q} --out {output} > {log} 2>&1"


rule rescore_dataset:
    input:
        unpack(rescore_inputs),
    output:
        data="results/rescore/{dataset}.json",
        meta="results/rescore/{dataset}.json.meta.json",
    wildcard_constraints:
        dataset=EVAL_DATASET_PATTERN,
    params:
        version=lambda wc: eval_version(wc.dataset),
        data=eval_data_params(),
        sandbox=json.dumps({**EVAL["sandbox"], "checker": config["rescore"]["checker"]}, sort_keys=True),
        published=lambda wc, input: f"--published {input.published}" if "published" in input.keys() else "",
    log:
        "results/rescore/logs/{dataset}.log",
    benchmark:
        "results/rescore/benchmarks/{dataset}.tsv"
    threads: EVAL["sandbox"].get("workers", 2)  # sandboxes: as many as the job gets cores
    resources:
        mem_mb=16000,
        runtime=120,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign eval score --dataset {wildcards.dataset} --version {params.version}"
        " --samples {input.samples} {params.published} --data-params {params.data:q}"
        " --sandbox {params.sandbox:q} --workers {threads} --out {output.data} > {log} 2>&1"


rule rescore:
    input:
        expand("results/rescore/{dataset}.json", dataset=[d for d in EVAL_DATASETS if d in config["rescore"]]),
    output:
        "results/rescore/table.md",
    log:
        "results/rescore/logs/table.log",
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign eval table --inputs {input} --out {output} > {log} 2>&1"
