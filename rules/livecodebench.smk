# LiveCodeBench's four scenarios (config livecodebench:; selfalign.livecodebench) on this run's
# checkpoint, each scored as the model card's figures were (LiveCodeBench's prompts and rules):
#
#   results/livecodebench/data/<revision>/test*.jsonl              code_generation_lite's release files
#   results/livecodebench/<scenario>-data/<revision>/              test_generation's, execution-v2's parquet
#   <run>/livecodebench/codegeneration/samples.jsonl               n samples per problem
#   <run>/livecodebench/selfrepair/repairs.jsonl, samples.jsonl    one repair per failing sample; the repaired set
#   <run>/livecodebench/testoutputprediction/samples.jsonl         n answers per (problem, test)
#   <run>/livecodebench/codeexecution/samples.jsonl                n answers per (function, call)
#   <run>/livecodebench/<scenario>/verdicts.jsonl, summary.json, table.md
#   <run>/livecodebench/table.md, table.json                       every scenario beside the model card
#
# `snakemake lcb_eval`; with livecodebench.enabled, part of the default target.

LCB = config.get("livecodebench") or {}
LCB_SCENARIOS = lcb_workflow.scenarios(LCB)
LCB_FILES = lcb_workflow.codegen_files(LCB, LCB_RELEASE_FILES)
LCB_SELECT = lcb_workflow.select(LCB)


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


rule lcb_fetch_data:
    output:
        directory("results/livecodebench/{scenario}-data/{revision}"),
    wildcard_constraints:
        scenario="testoutputprediction|codeexecution",
    params:
        dataset=lambda wc: lcb_workflow.section(LCB, wc.scenario).get("dataset"),
    log:
        "results/livecodebench/logs/fetch-{scenario}-{revision}.log",
    resources:
        mem_mb=2000,
        runtime=30,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign lcb fetch --dataset {params.dataset} --revision {wildcards.revision} --out-dir {output} > {log} 2>&1"


rule lcb_generate:
    input:
        model=f"{RESULTS}/checkpoint",
        files=lambda wc: lcb_workflow.files(LCB, wc.scenario, LCB_RELEASE_FILES),
    output:
        data=f"{RESULTS}/livecodebench/{{scenario}}/samples.jsonl",
        meta=f"{RESULTS}/livecodebench/{{scenario}}/samples.jsonl.meta.json",
    wildcard_constraints:
        scenario="codegeneration|testoutputprediction|codeexecution",
    params:
        settings=rules.eval_generate.params.settings,
        generation=lambda wc: lcb_workflow.generation(LCB, wc.scenario),
        select=LCB_SELECT,
        cot=lambda wc: lcb_workflow.cot(LCB, wc.scenario),
    log:
        job=f"{RESULTS}/logs/livecodebench/{{scenario}}.generate.log",
        server=f"{RESULTS}/logs/livecodebench/{{scenario}}.server.log",
    benchmark:
        f"{RESULTS}/benchmarks/livecodebench/{{scenario}}.generate.tsv"
    threads: GEN_THREADS
    resources:
        gpu=GEN_GPUS,
        mem_mb=8000 if BACKEND == "cpu" else 64000,
        runtime=240,
    container:
        GEN_IMAGE
    shell:
        "selfalign lcb generate --scenario {wildcards.scenario} --files {input.files} {params.select} {params.cot}"
        " --params {params.settings:q} --gen-params {params.generation:q} --model-dir {input.model}"
        " --server-log {log.server} --no-progress --out {output.data} > {log.job} 2>&1"


# Self repair: one request (n = 1) per failing code-generation sample, its failure quoted; the
# passing samples kept. repairs.jsonl holds the requests' answers, samples.jsonl the repaired set.
rule lcb_repair:
    input:
        model=f"{RESULTS}/checkpoint",
        files=LCB_FILES,
        samples=f"{RESULTS}/livecodebench/codegeneration/samples.jsonl",
        verdicts=f"{RESULTS}/livecodebench/codegeneration/verdicts.jsonl",
    output:
        repairs=f"{RESULTS}/livecodebench/selfrepair/repairs.jsonl",
        repairs_meta=f"{RESULTS}/livecodebench/selfrepair/repairs.jsonl.meta.json",
        data=f"{RESULTS}/livecodebench/selfrepair/samples.jsonl",
        meta=f"{RESULTS}/livecodebench/selfrepair/samples.jsonl.meta.json",
    params:
        settings=rules.eval_generate.params.settings,
        generation=lcb_workflow.generation(LCB, "selfrepair"),
        select=LCB_SELECT,
    log:
        job=f"{RESULTS}/logs/livecodebench/selfrepair.generate.log",
        server=f"{RESULTS}/logs/livecodebench/selfrepair.server.log",
    benchmark:
        f"{RESULTS}/benchmarks/livecodebench/selfrepair.generate.tsv"
    threads: GEN_THREADS
    resources:
        gpu=GEN_GPUS,
        mem_mb=8000 if BACKEND == "cpu" else 64000,
        runtime=240,
    container:
        GEN_IMAGE
    shell:
        "selfalign lcb generate --scenario selfrepair --files {input.files} {params.select}"
        " --codegen-samples {input.samples} --codegen-verdicts {input.verdicts}"
        " --params {params.settings:q} --gen-params {params.generation:q} --model-dir {input.model}"
        " --server-log {log.server} --no-progress --out {output.data} > {log.job} 2>&1"


rule lcb_score:
    input:
        samples=f"{RESULTS}/livecodebench/{{scenario}}/samples.jsonl",
        files=lambda wc: lcb_workflow.files(LCB, wc.scenario, LCB_RELEASE_FILES),
    output:
        verdicts=f"{RESULTS}/livecodebench/{{scenario}}/verdicts.jsonl",
        meta=f"{RESULTS}/livecodebench/{{scenario}}/verdicts.jsonl.meta.json",
        summary=f"{RESULTS}/livecodebench/{{scenario}}/summary.json",
        table=f"{RESULTS}/livecodebench/{{scenario}}/table.md",
    wildcard_constraints:
        scenario="codegeneration|selfrepair|testoutputprediction|codeexecution",
    params:
        sandbox=lambda wc: lcb_workflow.sandbox(LCB, wc.scenario),
        select=LCB_SELECT,
        k=lambda wc: lcb_workflow.ks(LCB, wc.scenario),
        cot=lambda wc: lcb_workflow.cot(LCB, wc.scenario),
        out=lambda wc, output: os.path.dirname(output.verdicts),
    log:
        f"{RESULTS}/logs/livecodebench/{{scenario}}.score.log",
    benchmark:
        f"{RESULTS}/benchmarks/livecodebench/{{scenario}}.score.tsv"
    threads: (LCB.get("sandbox") or {}).get("workers", 2)  # sandboxes: as many as the job gets cores
    resources:
        mem_mb=16000,
        runtime=240,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign lcb score --scenario {wildcards.scenario} --files {input.files} {params.select} {params.cot}"
        " --samples {input.samples} --sandbox {params.sandbox:q} -k {params.k} --out {params.out} --no-progress"
        " > {log} 2>&1"


rule lcb_table:
    input:
        [f"{RESULTS}/livecodebench/{scenario}/summary.json" for scenario in LCB_SCENARIOS],
    output:
        table=report(
            f"{RESULTS}/livecodebench/table.md",
            category="3. Evaluation",
            caption="../report/captions/livecodebench_table.rst",
        ),
        json=f"{RESULTS}/livecodebench/table.json",
    log:
        f"{RESULTS}/logs/livecodebench/table.log",
    resources:
        mem_mb=1000,
        runtime=5,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign lcb table --inputs {input} --out {output.table} --json {output.json} > {log} 2>&1"


rule lcb_eval:
    input:
        rules.lcb_table.output.table,
