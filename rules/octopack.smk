# OctoPack (config octopack:, bigcode-project/octopack at octopack.commit): HumanEvalPack in six
# languages, run through the sandbox's per-language executors.
#
#   results/octopack/data/humanevalpack-<language>.jsonl   the pinned task files (sha256 checked)
#   <run>/octopack/selfcheck/verdicts.jsonl                 every canonical and buggy solution's verdict
#   <run>/octopack/selfcheck/table.md, summary.json          per language: canonical passed, buggy failed,
#                                                            every unexpected verdict with its cause
#
#   <run>/octopack/<kind>/samples.jsonl                     HumanEvalPack samples of the checkpoint, one line
#                                                            per task (kind: synthesize, fixtests, fixdocs,
#                                                            explaindescribe, explainsynthesize)
#   <run>/octopack/<kind>/verdicts.jsonl, summary.json       one verdict per sample, pass@k per language
#   <run>/octopack/table.md, table.json                      every task x language, OctoCoder's pass@1 beside
#
# `snakemake octopack_selfcheck` proves the executors before any model is scored on them;
# `snakemake octopack_eval` scores this run's checkpoint (config octopack.eval; with
# octopack.eval.enabled the table is part of the default target and the run report).

rule octopack_data:
    output:
        "results/octopack/data/{name}.jsonl",
    wildcard_constraints:
        name="humanevalpack-(python|js|java|go|cpp|rust)|oasstcommitpackft",
    params:
        pin=lambda wc: octopack_pin(wc.name),
    log:
        "results/octopack/logs/{name}.fetch.log",
    resources:
        mem_mb=500,
        runtime=10,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign pins fetch --pin {params.pin:q} --out {output} > {log} 2>&1"


rule octopack_selfcheck:
    input:
        expand("results/octopack/data/humanevalpack-{language}.jsonl", language=OCTO_LANGUAGES),
    output:
        verdicts=f"{RESULTS}/octopack/selfcheck/verdicts.jsonl",
        meta=f"{RESULTS}/octopack/selfcheck/verdicts.jsonl.meta.json",
        summary=f"{RESULTS}/octopack/selfcheck/summary.json",
        table=f"{RESULTS}/octopack/selfcheck/table.md",
    params:
        sandbox=json.dumps(OCTO.get("sandbox") or {}, sort_keys=True),
        limit=f"--limit {OCTO['selfcheck']['limit']}" if (OCTO.get("selfcheck") or {}).get("limit") else "",
        out=lambda wc, output: os.path.dirname(output.verdicts),
    log:
        f"{RESULTS}/logs/octopack/selfcheck.log",
    benchmark:
        f"{RESULTS}/benchmarks/octopack/selfcheck.tsv"
    threads: (OCTO.get("sandbox") or {}).get("workers", 2)  # sandboxes: as many as the job gets cores
    resources:
        mem_mb=16000,
        runtime=120,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign octopack self-check --files {input} --sandbox {params.sandbox:q} --workers {threads}"
        " {params.limit} --out {params.out} --no-progress > {log} 2>&1"


rule octopack_generate:
    input:
        model=f"{RESULTS}/checkpoint",
        data=expand("results/octopack/data/humanevalpack-{language}.jsonl", language=OCTO_EVAL_LANGUAGES),
        descriptions=octopack_descriptions,
    output:
        data=f"{RESULTS}/octopack/{{kind}}/samples.jsonl",
        meta=f"{RESULTS}/octopack/{{kind}}/samples.jsonl.meta.json",
    wildcard_constraints:
        kind="|".join(OCTO_KINDS),
    params:
        settings=rules.eval_generate.params.settings,
        generation=json.dumps(OCTO_EVAL.get("generation") or {}, sort_keys=True),
        limit=f"--limit {OCTO_EVAL['limit']}" if OCTO_EVAL.get("limit") else "",
        descriptions=lambda wc, input: f"--descriptions {input.descriptions}" if input.descriptions else "",
    log:
        job=f"{RESULTS}/logs/octopack/{{kind}}.generate.log",
        server=f"{RESULTS}/logs/octopack/{{kind}}.server.log",
    benchmark:
        f"{RESULTS}/benchmarks/octopack/{{kind}}.generate.tsv"
    threads: GEN_THREADS
    resources:
        gpu=GEN_GPUS,
        mem_mb=8000 if BACKEND == "cpu" else 64000,
        runtime=120,
    container:
        GEN_IMAGE
    shell:
        "selfalign octopack generate --kind {wildcards.kind} --files {input.data} --params {params.settings:q}"
        " --gen-params {params.generation:q} {params.limit} {params.descriptions} --model-dir {input.model}"
        " --server-log {log.server} --no-progress --out {output.data} > {log.job} 2>&1"


rule octopack_score:
    input:
        samples=f"{RESULTS}/octopack/{{kind}}/samples.jsonl",
        data=expand("results/octopack/data/humanevalpack-{language}.jsonl", language=OCTO_EVAL_LANGUAGES),
    output:
        verdicts=f"{RESULTS}/octopack/{{kind}}/verdicts.jsonl",
        meta=f"{RESULTS}/octopack/{{kind}}/verdicts.jsonl.meta.json",
        summary=f"{RESULTS}/octopack/{{kind}}/summary.json",
        table=f"{RESULTS}/octopack/{{kind}}/table.md",
    wildcard_constraints:
        kind="|".join(OCTO_SCORED),
    params:
        sandbox=rules.octopack_selfcheck.params.sandbox,
        limit=f"--limit {OCTO_EVAL['limit']}" if OCTO_EVAL.get("limit") else "",
        k=" ".join(str(k) for k in OCTO_EVAL.get("k") or [1, 10, 100]),
        out=lambda wc, output: os.path.dirname(output.verdicts),
    log:
        f"{RESULTS}/logs/octopack/{{kind}}.score.log",
    benchmark:
        f"{RESULTS}/benchmarks/octopack/{{kind}}.score.tsv"
    threads: (OCTO.get("sandbox") or {}).get("workers", 2)  # sandboxes: as many as the job gets cores
    resources:
        mem_mb=16000,
        runtime=120,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign octopack score --kind {wildcards.kind} --samples {input.samples} --files {input.data}"
        " --sandbox {params.sandbox:q} {params.limit} -k {params.k} --out {params.out} --no-progress > {log} 2>&1"


rule octopack_table:
    input:
        expand(f"{RESULTS}/octopack/{{kind}}/summary.json", kind=OCTO_SCORED),
    output:
        md=report(
            f"{RESULTS}/octopack/table.md",
            category="3. Evaluation",
            caption="../report/captions/octopack_table.rst",
        ),
        json=f"{RESULTS}/octopack/table.json",
    log:
        f"{RESULTS}/logs/octopack/table.log",
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign octopack table --inputs {input} --out {output.md} --json {output.json} > {log} 2>&1"


rule octopack_eval:
    input:
        rules.octopack_table.output,
