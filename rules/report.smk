# The run's reproducibility report, read from every artifact's sidecar (see selfalign.audit.report):
#
#   report/index.html    one self-contained page: the funnel (plot and table, beside the paper's
#                        figures), the eval table beside the paper's pass@1, every artifact's
#                        sha256 and provenance, the config and package versions
#   report/report.json   the same, machine-readable
#   report/funnel.svg    the funnel plot alone
#
# `snakemake --report report.html` (or report.zip) adds these, the eval table and the dataset
# card to Snakemake's own report, with the captions in report/captions/.

# The chain's stages this run builds or imports (selfalign.chain.STAGES): the first is
# start_from's, if any; each built here has its drop file.
REPORT_STAGES = [s for s in ARTIFACT_STAGES if s.key not in IMPORT_STAGES or present(s.key)]
REPORT_DROPPED = [
    dropped(f"{RESULTS}/{s.artifact}")
    for s in REPORT_STAGES
    if s.drops and (s.key not in IMPORT_STAGES or built_here(s.key))
]


# A run with a lock file checks its bytes before the report is written, so the report shows the
# verdict (the report itself is not locked).
VERDICT = [f"{RESULTS}/verify.json"] if config["verify"]["lock"] else []


rule report:
    input:
        chain=[f"{RESULTS}/{s.artifact}.meta.json" for s in REPORT_STAGES] + [f"{RESULTS}/checkpoint.meta.json"],
        # written with sft.jsonl; its sidecar is found beside it
        parquet=f"{RESULTS}/sft.parquet",
        scores=expand(f"{RESULTS}/eval/{{dataset}}.json", dataset=EVAL_DATASETS),
        table=f"{RESULTS}/eval/table.md",
        files=[
            f"{RESULTS}/README.md",
            f"{RESULTS}/decontamination.json",
            *([f"{RESULTS}/seeds/dedup.duplicates.jsonl"] if built_here("dedup") else []),
            *REPORT_DROPPED,
        ],
        verdict=VERDICT,
        # HumanEvalPack's table, when octopack.eval.enabled
        humanevalpack=[f"{RESULTS}/octopack/table.json"] if OCTO_TABLE else [],
        # LiveCodeBench's table, when livecodebench.enabled
        livecodebench=[f"{RESULTS}/livecodebench/table.json"] if (config.get("livecodebench") or {}).get("enabled") else [],
    output:
        html=report(
            f"{RESULTS}/report/index.html",
            category="1. Run report",
            caption="../report/captions/index.rst",
        ),
        svg=report(
            f"{RESULTS}/report/funnel.svg",
            category="2. Funnel",
            caption="../report/captions/funnel.rst",
        ),
        json=f"{RESULTS}/report/report.json",
        meta=[f"{RESULTS}/report/{name}.meta.json" for name in ("index.html", "funnel.svg", "report.json")],
    params:
        config=json.dumps(config, sort_keys=True),
        # the results directory the outputs are in, as the sidecars' input paths name it
        results=lambda wildcards, output: os.path.dirname(os.path.dirname(output.html)),
        run=RUN,
        verdict=lambda wildcards, input: f"--verdict {input.verdict}" if input.verdict else "",
        humanevalpack=lambda wildcards, input: f"--humanevalpack {input.humanevalpack}" if input.humanevalpack else "",
        livecodebench=lambda wildcards, input: f"--livecodebench {input.livecodebench}" if input.livecodebench else "",
    log:
        f"{RESULTS}/logs/report.log",
    benchmark:
        f"{RESULTS}/benchmarks/report.tsv"
    resources:
        mem_mb=2000,
        runtime=10,
    container:
        PIPELINE_IMAGE
    shell:
        "selfalign report --results {params.results} --run-name {params.run} --config {params.config:q}"
        " --eval {input.scores} --eval-table {input.table} --files {input.files}"
        " --html {output.html} --json {output.json} --svg {output.svg} {params.verdict} {params.humanevalpack}"
        " {params.livecodebench} > {log} 2>&1"


if config["verify"]["lock"]:

    rule verify:
        input:
            # every artifact the report reads (so the whole run is there), not the report itself
            chain=rules.report.input.chain,
            parquet=rules.report.input.parquet,
            scores=rules.report.input.scores,
            table=rules.report.input.table,
            files=rules.report.input.files,
            humanevalpack=rules.report.input.humanevalpack,
            # LiveCodeBench's artifacts, when livecodebench.enabled (locked like the rest)
            livecodebench=rules.report.input.livecodebench,
            lock=config["verify"]["lock"],
        output:
            f"{RESULTS}/verify.json",
        log:
            f"{RESULTS}/logs/verify.log",
        params:
            strict="--strict" if config["verify"]["strict"] else "",
        resources:
            mem_mb=2000,
            runtime=10,
        container:
            PIPELINE_IMAGE
        shell:
            "selfalign verify {RESULTS} --lock {input.lock} --out {output} {params.strict}"
            " 2>&1 | tee {log}"
