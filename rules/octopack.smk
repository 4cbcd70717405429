# OctoPack (config octopack:, bigcode-project/octopack at octopack.commit): HumanEvalPack in six
# languages, run through the sandbox's per-language executors.
#
#   results/octopack/data/humanevalpack-<language>.jsonl   the pinned task files (sha256 checked)
#   <run>/octopack/selfcheck/verdicts.jsonl                 every canonical and buggy solution's verdict
#   <run>/octopack/selfcheck/table.md, summary.json          per language: canonical passed, buggy failed,
#                                                            every unexpected verdict with its cause
#
# `snakemake octopack_selfcheck` proves the executors before any model is scored on them.

rule octopack_data:
    output:
        "results/octopack/data/{name}.jsonl",
    wildcard_constraints:
        name="humanevalpack-(python|js|java|go|cpp|rust)|oasst",
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
