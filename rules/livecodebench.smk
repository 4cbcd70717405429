# LiveCodeBench code generation (config livecodebench:; selfalign.livecodebench) on this run's
# checkpoint:
#
#   results/livecodebench/data/<revision>/test*.jsonl            a release's problem files (the Hub, pinned)
#   <run>/livecodebench/codegeneration/samples.jsonl             n samples per problem, through the serving path
#   <run>/livecodebench/codegeneration/verdicts.jsonl            one verdict per sample (public + private tests)
#   <run>/livecodebench/codegeneration/summary.json, table.md    pass@k overall and per difficulty
#
# `snakemake lcb_eval`; with livecodebench.enabled, part of the default target.

LCB = config.get("livecodebench") or {}
LCB_FILES = list(LCB.get("files") or []) or [
    f"results/livecodebench/data/{LCB.get('revision')}/{name}" for name in LCB_RELEASE_FILES.get(LCB.get("release"), ())
]
LCB_SELECT = " ".join(
    f"--{flag} {LCB[key]}" for key, flag in (("start_date", "start-date"), ("end_date", "end-date"), ("limit", "limit"))
    if LCB.get(key)
)


rule lcb_fetch:
    output:
        [f"results/livecodebench/data/{{revision}}/{name}" for name in LCB_RELEASE_FILES.get(LCB.get("release"), ())],
    params:
        release=LCB.get("release"),
        out=lambda wc: f"results/livecodebench/data/{wc.revision}",
    log:
        "results/livecodebench/logs/fetch-{revision}.log",
    resources:
        mem_mb=2000,
        runtime=60,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign lcb fetch --release {params.release} --revision {wildcards.revision} --out-dir {params.out}"
        " > {log} 2>&1"


rule lcb_generate:
    input:
        model=f"{RESULTS}/checkpoint",
        files=LCB_FILES,
    output:
        data=f"{RESULTS}/livecodebench/codegeneration/samples.jsonl",
        meta=f"{RESULTS}/livecodebench/codegeneration/samples.jsonl.meta.json",
    params:
        settings=rules.eval_generate.params.settings,
        generation=json.dumps(LCB.get("generation") or {}, sort_keys=True),
        select=LCB_SELECT,
    log:
        job=f"{RESULTS}/logs/livecodebench/codegeneration.generate.log",
        server=f"{RESULTS}/logs/livecodebench/codegeneration.server.log",
    benchmark:
        f"{RESULTS}/benchmarks/livecodebench/codegeneration.generate.tsv"
    threads: GEN_THREADS
    resources:
        gpu=GEN_GPUS,
        mem_mb=8000 if BACKEND == "cpu" else 64000,
        runtime=240,
    container:
        GEN_IMAGE
    shell:
        "selfalign lcb generate --files {input.files} {params.select} --params {params.settings:q}"
        " --gen-params {params.generation:q} --model-dir {input.model} --server-log {log.server} --no-progress"
        " --out {output.data} > {log.job} 2>&1"


rule lcb_score:
    input:
        samples=f"{RESULTS}/livecodebench/codegeneration/samples.jsonl",
        files=LCB_FILES,
    output:
        verdicts=f"{RESULTS}/livecodebench/codegeneration/verdicts.jsonl",
        meta=f"{RESULTS}/livecodebench/codegeneration/verdicts.jsonl.meta.json",
        summary=f"{RESULTS}/livecodebench/codegeneration/summary.json",
        table=report(
            f"{RESULTS}/livecodebench/codegeneration/table.md",
            category="3. Evaluation",
            caption="../report/captions/livecodebench_table.rst",
        ),
    params:
        sandbox=json.dumps(LCB.get("sandbox") or {}, sort_keys=True),
        select=LCB_SELECT,
        k=" ".join(str(k) for k in LCB.get("k") or [1, 5, 10]),
        out=lambda wc, output: os.path.dirname(output.verdicts),
    log:
        f"{RESULTS}/logs/livecodebench/codegeneration.score.log",
    benchmark:
        f"{RESULTS}/benchmarks/livecodebench/codegeneration.score.tsv"
    threads: (LCB.get("sandbox") or {}).get("workers", 2)  # sandboxes: as many as the job gets cores
    resources:
        mem_mb=16000,
        runtime=240,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign lcb score --files {input.files} {params.select} --samples {input.samples}"
        " --sandbox {params.sandbox:q} -k {params.k} --out {params.out} --no-progress > {log} 2>&1"


rule lcb_eval:
    input:
        rules.lcb_score.output.table,
