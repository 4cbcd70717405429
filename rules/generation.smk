# The model-driven middle of the chain, each stage sharded, each job owning its server:
#
#   seeds/judged.jsonl   the LLM judge keeps seeds whose docstring suffices to re-implement them
#   concepts.jsonl       S->C: programming concepts of each seed function
#   instructions.jsonl   C->I: a coding task built from the concepts
#   responses.jsonl      I->R: n responses with self-written tests per instruction
#
# serving.backend vllm/cpu: every shard job starts its server, waits until it answers, and
# stops it when done (vLLM jobs ask for a GPU); endpoint: jobs use the named running server.
# The tiny profile first trains its own base model (model.build: tiny).

if TINY_MODEL:

    rule model_texts:
        output:
            fewshot=f"{RESULTS}/model/texts/fewshot.txt",
            judge=f"{RESULTS}/model/texts/judge-shots.txt",
        log:
            f"{RESULTS}/logs/model/texts.log",
        resources:
            mem_mb=1000,
            runtime=5,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign model-texts --out-dir $(dirname {output.fewshot}) > {log} 2>&1"

    rule tiny_model:
        input:
            corpus=TINY_CORPUS,
            fewshot=rules.model_texts.output.fewshot,
            judge=rules.model_texts.output.judge,
        output:
            model=directory(MODEL_DIR),
            meta=f"{MODEL_DIR}.meta.json",
        params:
            tinymodel=stage_params("tinymodel"),
        log:
            f"{RESULTS}/logs/model/tiny.log",
        benchmark:
            f"{RESULTS}/benchmarks/model/tiny.tsv"
        threads: 2
        resources:
            mem_mb=4000,
            runtime=60,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign tinymodel --params {params.tinymodel:q} --corpus {input.corpus}"
            " --text {input.fewshot} {input.judge} --out {output.model} > {log} 2>&1"


# (stage, input, output, chain key) of each generation stage, from selfalign.chain: the stages
# whose sidecar says generate.<stage> (judge writes "judged").
GENERATION = [
    (s.sidecar_stage.removeprefix("generate."), f"{RESULTS}/{BY_KEY[s.reads].artifact}", f"{RESULTS}/{s.artifact}", s.key)
    for s in ARTIFACT_STAGES
    if s.sidecar_stage.startswith("generate.")
]

for _stage, _input, _output, _key in GENERATION:
    if not built_here(_key):
        continue

    rule:
        name:
            f"generate_{_stage}_shard"
        input:
            data=_input,
            model=[MODEL_DIR] if TINY_MODEL else [],
        output:
            data=temp(f"{RESULTS}/generate/{_stage}/shard-{{shard}}.jsonl"),
            meta=temp(f"{RESULTS}/generate/{_stage}/shard-{{shard}}.jsonl.meta.json"),
            dropped=temp(f"{RESULTS}/generate/{_stage}/shard-{{shard}}.dropped.jsonl"),
        params:
            stage=_stage,
            settings=gen_settings(_stage),
            num_shards=GEN_SHARDS[_stage],
            model_dir=f"--model-dir {MODEL_DIR}" if TINY_MODEL else "",
        log:
            job=f"{RESULTS}/logs/generate/{_stage}/shard-{{shard}}.log",
            server=f"{RESULTS}/logs/generate/{_stage}/server-{{shard}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate/{_stage}/shard-{{shard}}.tsv"
        threads: GEN_THREADS
        resources:
            gpu=GEN_GPUS,
            mem_mb=64000 if GEN_GPUS else 8000,
            runtime=1440 if GEN_GPUS else 120,
        container:
            GEN_IMAGE
        shell:
            "selfalign generate {params.stage} --params {params.settings:q} --input {input.data}"
            " --shard {wildcards.shard} --num-shards {params.num_shards} {params.model_dir}"
            " --server-log {log.server} --out {output.data} > {log.job} 2>&1"

    rule:
        name:
            f"generate_{_stage}"
        input:
            data=sharded(f"{RESULTS}/generate/{_stage}/shard-{{shard}}.jsonl", GEN_SHARDS[_stage]),
            meta=sharded(f"{RESULTS}/generate/{_stage}/shard-{{shard}}.jsonl.meta.json", GEN_SHARDS[_stage]),
            dropped=sharded(f"{RESULTS}/generate/{_stage}/shard-{{shard}}.dropped.jsonl", GEN_SHARDS[_stage]),
        output:
            data=_output,
            meta=f"{_output}.meta.json",
            dropped=dropped(_output),
        params:
            stage=f"generate.{_stage}",
        log:
            f"{RESULTS}/logs/generate/{_stage}.log",
        benchmark:
            f"{RESULTS}/benchmarks/generate/{_stage}.tsv"
        resources:
            mem_mb=4000,
            runtime=60,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign concat --stage {params.stage} --out {output.data} {input.data} > {log} 2>&1"
