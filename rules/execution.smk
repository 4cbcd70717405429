# The execution filter: every response's Python blocks run as one module in a sandbox
# (gVisor by default); samples whose code and self-written tests run to the end are kept.
#
#   executed.jsonl   one record per passing sample, with its verdict (counts are of samples)
#   executed.dropped.jsonl   every other sample: its verdict, exception, failing line, stderr tail

EXEC_SHARDS = config["execution"]["shards"]


if built_here("executed"):

    rule execute_shard:
        input:
            f"{RESULTS}/responses.jsonl",
        output:
            data=temp(f"{RESULTS}/execute/shard-{{shard}}.jsonl"),
            meta=temp(f"{RESULTS}/execute/shard-{{shard}}.jsonl.meta.json"),
            dropped=temp(f"{RESULTS}/execute/shard-{{shard}}.dropped.jsonl"),
        params:
            # one sandbox per core the job got (execution.workers, or fewer under --cores)
            execution=lambda wc, threads: json.dumps(
                {**{k: v for k, v in config["execution"].items() if k != "shards"}, "workers": threads},
                sort_keys=True,
            ),
            num_shards=EXEC_SHARDS,
        log:
            f"{RESULTS}/logs/execute/shard-{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/execute/shard-{{shard}}.tsv"
        threads: min(config["execution"]["workers"], 16)
        resources:
            mem_mb=2000 + 1100 * config["execution"]["workers"],
            runtime=240,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign execute --params {params.execution:q} --input {input} --shard {wildcards.shard}"
            " --num-shards {params.num_shards} --out {output.data} > {log} 2>&1"


    rule execute:
        input:
            data=sharded(f"{RESULTS}/execute/shard-{{shard}}.jsonl", EXEC_SHARDS),
            meta=sharded(f"{RESULTS}/execute/shard-{{shard}}.jsonl.meta.json", EXEC_SHARDS),
            dropped=sharded(f"{RESULTS}/execute/shard-{{shard}}.dropped.jsonl", EXEC_SHARDS),
        output:
            data=f"{RESULTS}/executed.jsonl",
            meta=f"{RESULTS}/executed.jsonl.meta.json",
            dropped=f"{RESULTS}/executed.dropped.jsonl",
        log:
            f"{RESULTS}/logs/execute.log",
        benchmark:
            f"{RESULTS}/benchmarks/execute.tsv"
        resources:
            mem_mb=4000,
            runtime=60,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign concat --stage execute --out {output.data} {input.data} > {log} 2>&1"
