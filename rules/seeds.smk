# Seed functions: The Stack v1 (or a local corpus, or the stdlib) -> filtered seed functions.
#
#   seeds/raw.jsonl       top-level functions whose body starts with a """ docstring
#   seeds/dedup.jsonl     MinHash + LSH near-dedup (Jaccard 0.5)
#   seeds/quality.jsonl   returns a value; autoimport; no Pyright error
#   seeds/filtered.jsonl  upstream heuristics + HumanEval/MBPP decontamination
#   seeds/<stage>.dropped.jsonl  beside each: every record the stage dropped, {id, reason, detail}
#                         (raw's starts with the source files extraction skipped: file:<reason>)
#
# start_from replaces the stages up to and including the named one (any of them, up to the
# execution filter) by an import of that stage's artifact: a published dataset or a JSONL.

if START_STAGE is not None:

    rule import_start:
        output:
            data=f"{RESULTS}/{IMPORT_STAGES[START_STAGE]}",
            meta=f"{RESULTS}/{IMPORT_STAGES[START_STAGE]}.meta.json",
        params:
            spec=stage_params("start_from"),
        log:
            f"{RESULTS}/logs/import/{START_STAGE}.log",
        benchmark:
            f"{RESULTS}/benchmarks/import/{START_STAGE}.tsv"
        resources:
            mem_mb=8000,
            runtime=240,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign import --params {params.spec:q} --out {output.data} > {log} 2>&1"


if built_here("raw"):

    rule seeds_extract_shard:
        output:
            data=temp(f"{RESULTS}/seeds/raw/shard-{{shard}}.jsonl"),
            meta=temp(f"{RESULTS}/seeds/raw/shard-{{shard}}.jsonl.meta.json"),
            dropped=temp(f"{RESULTS}/seeds/raw/shard-{{shard}}.dropped.jsonl"),  # files skipped
        params:
            source=stage_params("seeds", "source"),
            num_shards=SEED_SHARDS["extract"],
        log:
            f"{RESULTS}/logs/seeds/extract/shard-{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/seeds/extract/shard-{{shard}}.tsv"
        threads: 4
        resources:
            mem_mb=8000,
            runtime=480,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign seeds extract --params {params.source:q} --shard {wildcards.shard}"
            " --num-shards {params.num_shards} --workers {threads} --out {output.data} > {log} 2>&1"

    rule seeds_raw:
        input:
            data=sharded(f"{RESULTS}/seeds/raw/shard-{{shard}}.jsonl", SEED_SHARDS["extract"]),
            meta=sharded(f"{RESULTS}/seeds/raw/shard-{{shard}}.jsonl.meta.json", SEED_SHARDS["extract"]),
            dropped=sharded(f"{RESULTS}/seeds/raw/shard-{{shard}}.dropped.jsonl", SEED_SHARDS["extract"]),
        output:
            data=f"{RESULTS}/seeds/raw.jsonl",
            meta=f"{RESULTS}/seeds/raw.jsonl.meta.json",
            dropped=f"{RESULTS}/seeds/raw.dropped.jsonl",
        log:
            f"{RESULTS}/logs/seeds/raw.log",
        benchmark:
            f"{RESULTS}/benchmarks/seeds/raw.tsv"
        resources:
            mem_mb=16000,
            runtime=240,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign seeds merge --out {output.data} {input.data} > {log} 2>&1"


if built_here("dedup"):

    rule seeds_dedup:
        input:
            f"{RESULTS}/seeds/raw.jsonl",
        output:
            data=f"{RESULTS}/seeds/dedup.jsonl",
            meta=f"{RESULTS}/seeds/dedup.jsonl.meta.json",
            dropped=f"{RESULTS}/seeds/dedup.dropped.jsonl",
            duplicates=f"{RESULTS}/seeds/dedup.duplicates.jsonl",
        params:
            dedup=stage_params("seeds", "dedup"),
        log:
            f"{RESULTS}/logs/seeds/dedup.log",
        benchmark:
            f"{RESULTS}/benchmarks/seeds/dedup.tsv"
        threads: 16
        resources:
            mem_mb=64000,
            runtime=1440,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign seeds dedup --params {params.dedup:q} --workers {threads} --input {input}"
            " --out {output.data} --duplicates {output.duplicates} > {log} 2>&1"


if built_here("quality"):

    rule seeds_quality_shard:
        input:
            f"{RESULTS}/seeds/dedup.jsonl",
        output:
            data=temp(f"{RESULTS}/seeds/quality/shard-{{shard}}.jsonl"),
            meta=temp(f"{RESULTS}/seeds/quality/shard-{{shard}}.jsonl.meta.json"),
            dropped=temp(f"{RESULTS}/seeds/quality/shard-{{shard}}.dropped.jsonl"),
        params:
            quality=stage_params("seeds", "quality"),
            num_shards=SEED_SHARDS["quality"],
        log:
            f"{RESULTS}/logs/seeds/quality/shard-{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/seeds/quality/shard-{{shard}}.tsv"
        threads: 4
        resources:
            mem_mb=8000,
            runtime=720,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign seeds quality --params {params.quality:q} --shard {wildcards.shard}"
            " --num-shards {params.num_shards} --workers {threads} --input {input}"
            " --out {output.data} > {log} 2>&1"

    rule seeds_quality:
        input:
            data=sharded(f"{RESULTS}/seeds/quality/shard-{{shard}}.jsonl", SEED_SHARDS["quality"]),
            meta=sharded(f"{RESULTS}/seeds/quality/shard-{{shard}}.jsonl.meta.json", SEED_SHARDS["quality"]),
            dropped=sharded(f"{RESULTS}/seeds/quality/shard-{{shard}}.dropped.jsonl", SEED_SHARDS["quality"]),
        output:
            data=f"{RESULTS}/seeds/quality.jsonl",
            meta=f"{RESULTS}/seeds/quality.jsonl.meta.json",
            dropped=f"{RESULTS}/seeds/quality.dropped.jsonl",
        log:
            f"{RESULTS}/logs/seeds/quality.log",
        benchmark:
            f"{RESULTS}/benchmarks/seeds/quality.tsv"
        resources:
            mem_mb=4000,
            runtime=60,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign concat --stage seeds.quality --out {output.data} {input.data} > {log} 2>&1"


if built_here("filtered"):

    rule seeds_filter_shard:
        input:
            f"{RESULTS}/seeds/quality.jsonl",
        output:
            data=temp(f"{RESULTS}/seeds/filtered/shard-{{shard}}.jsonl"),
            meta=temp(f"{RESULTS}/seeds/filtered/shard-{{shard}}.jsonl.meta.json"),
            dropped=temp(f"{RESULTS}/seeds/filtered/shard-{{shard}}.dropped.jsonl"),
        params:
            filter=stage_params("seeds", "filter"),
            num_shards=SEED_SHARDS["filter"],
        log:
            f"{RESULTS}/logs/seeds/filter/shard-{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/seeds/filter/shard-{{shard}}.tsv"
        resources:
            mem_mb=4000,
            runtime=240,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign seeds filter --params {params.filter:q} --shard {wildcards.shard}"
            " --num-shards {params.num_shards} --input {input} --out {output.data} > {log} 2>&1"

    rule seeds_filtered:
        input:
            data=sharded(f"{RESULTS}/seeds/filtered/shard-{{shard}}.jsonl", SEED_SHARDS["filter"]),
            meta=sharded(f"{RESULTS}/seeds/filtered/shard-{{shard}}.jsonl.meta.json", SEED_SHARDS["filter"]),
            dropped=sharded(f"{RESULTS}/seeds/filtered/shard-{{shard}}.dropped.jsonl", SEED_SHARDS["filter"]),
        output:
            data=f"{RESULTS}/seeds/filtered.jsonl",
            meta=f"{RESULTS}/seeds/filtered.jsonl.meta.json",
            dropped=f"{RESULTS}/seeds/filtered.dropped.jsonl",
        log:
            f"{RESULTS}/logs/seeds/filtered.log",
        benchmark:
            f"{RESULTS}/benchmarks/seeds/filtered.tsv"
        resources:
            mem_mb=4000,
            runtime=60,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign concat --stage seeds.filter --out {output.data} {input.data} > {log} 2>&1"


# The LLM judge (seeds/judged.jsonl from seeds/filtered.jsonl) arrives with the model server.
