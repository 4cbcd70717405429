# Curation, as upstream v0.1's "data sanitization and selection" (see selfalign.curation):
#
#   sanitized.jsonl   responses in the four-section format with one assert-bearing test block
#   cleaned.jsonl     seeded shuffle, exact dedup, diverse function names: one per instruction
#   sft.jsonl         the SMART rewrite, decontaminated: the SFT dataset (+ sft.parquet,
#                     README.md dataset card with the funnel, decontamination.json)


rule sanitize:
    input:
        f"{RESULTS}/executed.jsonl",
    output:
        data=f"{RESULTS}/sanitized.jsonl",
        meta=f"{RESULTS}/sanitized.jsonl.meta.json",
        dropped=f"{RESULTS}/sanitized.dropped.jsonl",
    log:
        f"{RESULTS}/logs/sanitize.log",
    benchmark:
        f"{RESULTS}/benchmarks/sanitize.tsv"
    resources:
        mem_mb=4000,
        runtime=60,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign curate sanitize --input {input} --out {output.data} > {log} 2>&1"


rule clean:
    input:
        f"{RESULTS}/sanitized.jsonl",
    output:
        data=f"{RESULTS}/cleaned.jsonl",
        meta=f"{RESULTS}/cleaned.jsonl.meta.json",
        dropped=f"{RESULTS}/cleaned.dropped.jsonl",
    params:
        clean=stage_params("curation", "clean"),
    log:
        f"{RESULTS}/logs/clean.log",
    benchmark:
        f"{RESULTS}/benchmarks/clean.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign curate clean --params {params.clean:q} --input {input} --out {output.data} > {log} 2>&1"


rule sft:
    input:
        data=f"{RESULTS}/cleaned.jsonl",
        # the dataset card's funnel reads every earlier stage's sidecar
        funnel=f"{RESULTS}/executed.jsonl.meta.json",
    output:
        data=f"{RESULTS}/sft.jsonl",
        meta=f"{RESULTS}/sft.jsonl.meta.json",
        dropped=f"{RESULTS}/sft.dropped.jsonl",
        parquet=f"{RESULTS}/sft.parquet",
        report=f"{RESULTS}/decontamination.json",
        card=report(
            f"{RESULTS}/README.md",
            category="4. SFT data",
            caption="../report/captions/sft_card.rst",
        ),
    params:
        sft=stage_params("curation", "sft"),
        decontamination=stage_params("seeds", "filter", "decontamination"),
        run=RUN,
        recipe=RECIPE,
        mix=json.dumps(config["curation"].get("mix") or [], sort_keys=True),
        pins=mix_pins(),
    log:
        f"{RESULTS}/logs/sft.log",
    benchmark:
        f"{RESULTS}/benchmarks/sft.tsv"
    resources:
        mem_mb=8000,
        runtime=60,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign curate sft --params {params.sft:q} --decontamination {params.decontamination:q}"
        " --run-name {params.run} --recipe {params.recipe:q} --input {input.data} --out {output.data} --parquet {output.parquet}"
        " --report {output.report} --card {output.card} --mix {params.mix:q} --pins {params.pins:q} > {log} 2>&1"
