"""The ``selfalign`` command: one subcommand per stage, usable with or without Snakemake.

Each stage subcommand reads its inputs, writes its artifact atomically, and writes the
artifact's sidecar (``<artifact>.meta.json``). Stage parameters come as a JSON object
(``--params '{...}'`` or ``--params @file.yaml``): the same section of ``config.yaml`` the
workflow passes, so a stage run by hand is the stage the workflow runs.
"""

from __future__ import annotations

import argparse
import functools
import importlib
import json
import logging
import shutil
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from . import __version__
from .chain import COMMAND_STAGES, Stage
from .config import ConfigError, load_config, parse_params
from .provenance import sidecar_path
from .records import RecordError, atomic_writer, sha256_file, write_json
from .runtime import StageStats, default_workers, finish, finish_counts, merge_extra

log = logging.getLogger("selfalign")


# ---------------------------------------------------------------------------------------- stages


def cmd_extract(args: argparse.Namespace) -> None:
    from .seeds.extract import SourceParams, run_extract_shard

    started = time.time()
    params = parse_params(args.params)
    stats = run_extract_shard(
        SourceParams.from_dict(params),
        args.out,
        shard=args.shard,
        num_shards=args.num_shards,
        workers=args.workers,
        show_progress=not args.no_progress,
    )
    finish(
        Path(args.out),
        stats,
        stage="seeds.extract",
        inputs=[],
        params=params,
        started=started,
        extra={"shard": args.shard, "num_shards": args.num_shards},
        drop_file=True,  # the files skipped, by path
    )


def cmd_merge(args: argparse.Namespace) -> None:
    from .seeds.extract import merge_shards

    started = time.time()
    stats = merge_shards(args.inputs, args.out)
    shard_stats = [_read_meta(p) for p in args.inputs]
    stats.extra = {
        "extract": merge_extra([m.get("stats", {}) for m in shard_stats]),
        "files_seen": sum(m["counts"].get("in", 0) for m in shard_stats),
        "files_skipped": merge_extra([m.get("drops", {}) for m in shard_stats]) or {},
        "source": shard_stats[0].get("config") if shard_stats else None,
    }
    finish(Path(args.out), stats, stage="seeds.raw", inputs=args.inputs, params={}, started=started, drop_file=True)


def cmd_dedup(args: argparse.Namespace) -> None:
    from .seeds.dedup import DedupParams, run_dedup

    started = time.time()
    params = parse_params(args.params)
    stats = run_dedup(
        args.input,
        args.out,
        args.duplicates,
        DedupParams.from_dict(params),
        workers=args.workers,
        show_progress=not args.no_progress,
    )
    finish(
        Path(args.out), stats, stage="seeds.dedup", inputs=[args.input], params=params, started=started, drop_file=True
    )


#: The record stages whose commands are built from their chain row's :class:`~selfalign.chain.Command`
#: (the others need arguments of their own: extraction, the k-way merge, dedup's duplicates file,
#: the generation server, the SFT set's parquet/card/report, training, evaluation).
RECORD_STAGES: tuple[Stage, ...] = COMMAND_STAGES


def _load(target: str) -> Any:
    """``module:attribute``, imported when the command runs (so --help imports no stage)."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)


def run_record_stage(stage: Stage, args: argparse.Namespace) -> None:
    """Run one record stage as its command line asks, then write its sidecar and drop file."""
    spec = stage.command
    if spec is None:
        raise ValueError(f"stage {stage.key!r} has no command of the table's kind")
    started = time.time()
    params = parse_params(args.params) if spec.params is not None else {}
    positional: list[Any] = [args.input, args.out]
    if spec.params is not None:
        positional.append(_load(spec.params).from_dict(params))
    options: dict[str, Any] = {"show_progress": not args.no_progress}
    extra: dict[str, Any] = {}
    if spec.shards:
        options.update(shard=args.shard, num_shards=args.num_shards)
        extra.update(shard=args.shard, num_shards=args.num_shards)
    if spec.workers:
        options["workers"] = args.workers
    extra.update(spec.sidecar_extra)
    stats = _load(spec.run)(*positional, **options)
    finish(Path(args.out), stats, stage=stage.sidecar_stage, inputs=[args.input], params=params,
           started=started, extra=extra or None, drop_file=True)


def cmd_import(args: argparse.Namespace) -> None:
    from .importer import ImportSpec, import_records

    started = time.time()
    params = parse_params(args.params)
    spec = ImportSpec.from_dict(params)
    stats = import_records(spec, args.out, show_progress=not args.no_progress)
    inputs = [spec.jsonl] if spec.jsonl else []
    finish(Path(args.out), stats, stage=f"import.{spec.stage}", inputs=inputs, params=params, started=started)


def _read_meta(path: str | Path) -> dict[str, Any]:
    meta = sidecar_path(path)
    if not meta.exists():
        raise FileNotFoundError(f"{meta}: missing sidecar of shard {path}")
    data: dict[str, Any] = json.loads(meta.read_text(encoding="utf-8"))
    return data


def cmd_concat(args: argparse.Namespace) -> None:
    """Concatenate per-record shard outputs in shard order (= input order) and merge their sidecars."""
    started = time.time()
    from .chain import dropped_path
    from .records import concat_files

    metas = [_read_meta(p) for p in args.inputs]
    concat_files(args.out, args.inputs)
    # every stage that is sharded drops records: its shards' drop files, in shard order too
    concat_files(dropped_path(args.out), [dropped_path(p) for p in args.inputs])
    stats = StageStats(
        n_in=sum(m["counts"]["in"] for m in metas),
        n_out=sum(m["counts"]["out"] for m in metas),
        dropped_written=True,
    )
    for meta in metas:
        stats.drops.update(meta.get("drops", {}))
    stats.check_balance()
    stats.extra = merge_extra([m.get("stats", {}) for m in metas]) or {}
    params = metas[0].get("config", {}) if metas else {}
    shard_inputs = sorted({i["path"] for m in metas for i in m.get("inputs", [])})
    finish(
        Path(args.out),
        stats,
        stage=args.stage,
        inputs=[*shard_inputs, *args.inputs],
        params=params,
        started=started,
        extra={"shards": len(args.inputs)},
        drop_file=True,
    )


def cmd_generate(args: argparse.Namespace) -> None:
    from .generation.stages import StageSettings, run_stage

    started = time.time()
    params = parse_params(args.params)
    settings = StageSettings.from_dict(params)
    stats = run_stage(
        args.stage,
        args.input,
        args.out,
        settings,
        shard=args.shard,
        num_shards=args.num_shards,
        model_dir=args.model_dir,
        server_log=Path(args.server_log) if args.server_log else None,
        show_progress=not args.no_progress,
        base_url=args.base_url,
    )
    inputs = [args.input] + ([str(Path(args.model_dir) / "model.safetensors")] if args.model_dir else [])
    finish(
        Path(args.out),
        stats,
        stage=f"generate.{args.stage}",
        inputs=[p for p in inputs if Path(p).exists()],
        params=params,
        started=started,
        extra={"shard": args.shard, "num_shards": args.num_shards},
        drop_file=True,
    )


def cmd_curate_sft(args: argparse.Namespace) -> None:
    """sft.jsonl and what goes with it: sft.parquet, the decontamination report, the card."""
    from .config import parse_list
    from .curation import SmartParams, dataset_card, load_contamination, run_sft, write_parquet
    from .mix import parse_sources
    from .pins import Pin
    from .records import write_json

    started = time.time()
    params = parse_params(args.params)
    decontamination = parse_params(args.decontamination)
    contamination = load_contamination(decontamination)
    smart = SmartParams.from_dict(params)
    mix_items = parse_list(args.mix, "--mix") if args.mix else []
    sources = parse_sources(mix_items)
    pins = {key: Pin.from_section(key, spec, spec.get("mirrors") or (), spec.get("cache_dir", "~/.cache/selfalign/pinned"))
            for key, spec in (parse_params(args.pins) if args.pins else {}).items()}
    stats = run_sft(args.input, args.out, smart, contamination=contamination, mix=sources, pins=pins,
                    show_progress=not args.no_progress)
    out = Path(args.out)
    config = {"sft": params, "decontamination": decontamination, **({"mix": mix_items} if mix_items else {})}
    finish(out, stats, stage="sft", inputs=[args.input], params=config, started=started, drop_file=True)
    rows = write_parquet(out, args.parquet)
    finish_counts(args.parquet, stage="sft.parquet", inputs=[out], counts={"in": rows, "out": rows, "dropped": 0},
                  params=config, started=None)
    by_benchmark = Counter(hit["benchmark"] for hit in contamination.hits)
    write_json(
        args.report,
        {
            "checked": stats.extra["decontamination_checked"],
            "action": "dropped" if smart.decontaminate else "reported only",
            "hits_by_benchmark": dict(sorted(by_benchmark.items())),
            "hits": contamination.hits,
            "benchmarks": contamination.description,
        },
    )
    with atomic_writer(args.card, "w") as handle:
        handle.write(dataset_card(out.parent, args.run_name, stats.extra, recipe=args.recipe))


def cmd_model_texts(args: argparse.Namespace) -> None:
    """Write the text files the tiny model learns prompt layouts from."""
    from .generation.judge import judge_shots_text
    from .generation.prompts import tiny_fewshot_text
    from .records import atomic_writer

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    for name, text in (("fewshot.txt", tiny_fewshot_text()), ("judge-shots.txt", judge_shots_text())):
        with atomic_writer(out / name, "w") as handle:
            handle.write(text)


def cmd_tinymodel(args: argparse.Namespace) -> None:
    from .tinymodel import TinyModelParams, build_tiny_model

    started = time.time()
    params = parse_params(args.params)
    stats = build_tiny_model(
        [Path(p) for p in args.corpus],
        [Path(p) for p in args.text],
        Path(args.out),
        TinyModelParams.from_dict(params),
        show_progress=not args.no_progress,
    )
    finish(
        Path(args.out),
        stats,
        stage="tinymodel",
        inputs=[*args.corpus, *args.text, str(Path(args.out) / "model.safetensors")],
        params=params,
        started=started,
    )


def cmd_train_plan(args: argparse.Namespace) -> None:
    from .config import validate_config
    from .training.plan import (
        format_plan,
        load_model_config,
        memory_plan,
        model_shape,
        parse_memory,
    )

    config = load_config(args.configfile)
    validate_config(config)
    model = config["model"]
    if args.base_model is not None:
        model = {**model, "name": args.base_model, "revision": args.revision}
    model_config, source = load_model_config(model["name"], model.get("revision"), args.model_config)
    training = parse_params(args.params) if args.params else config["training"]
    precision = training.get("precision", "auto")
    plan = memory_plan(
        model_shape(model_config),
        training,
        gpu_memory_bytes=parse_memory(args.gpu_memory) if args.gpu_memory else None,
        gpu_name=args.gpu_name,
        bf16=precision != "fp32",
    )
    plan["config_source"] = source
    if args.json:
        write_json(args.json, plan)
    print(format_plan(plan, source))


def cmd_train(args: argparse.Namespace) -> None:
    from .training.train import TrainParams, train

    if args.plan:
        cmd_train_plan(args)
        return
    missing = [flag for flag, value in (("--sft", args.sft), ("--base-model", args.base_model), ("--out", args.out),
                                        ("--params", args.params)) if value is None]
    if missing:
        raise ValueError(f"selfalign train needs {', '.join(missing)} (or --plan)")
    started = time.time()
    params = parse_params(args.params)
    stats = train(
        args.sft,
        args.base_model,
        args.out,
        TrainParams.from_dict(params),
        revision=args.revision,
        show_progress=not args.no_progress,
    )
    base = Path(args.base_model)
    inputs = [args.sft] + ([str(base / "model.safetensors")] if (base / "model.safetensors").is_file() else [])
    files = stats.extra.pop("files", {})
    finish(
        Path(args.out),
        stats,
        stage="train",
        inputs=inputs,
        params=params,
        started=started,
        extra={
            "base_model": {"name": args.base_model, "revision": args.revision},
            "final_checkpoint": {"path": args.out, "step": stats.extra["final_step"], "files": files},
        },
    )


def cmd_eval_generate(args: argparse.Namespace) -> None:
    from .evaluation.generate import EvalParams, generate_samples
    from .serving import ServingSettings

    started = time.time()
    settings_params = parse_params(args.params)
    eval_params = parse_params(args.eval_params)
    stats = generate_samples(
        args.dataset,
        args.out,
        ServingSettings.from_dict(settings_params),
        EvalParams.from_dict(eval_params),
        model_dir=args.model_dir,
        server_log=Path(args.server_log) if args.server_log else None,
        base_url=args.base_url,
        show_progress=not args.no_progress,
    )
    inputs = [str(Path(args.model_dir) / "model.safetensors")] if args.model_dir else []
    finish(
        Path(args.out),
        stats,
        stage=f"eval.generate.{args.dataset}",
        inputs=[p for p in inputs if Path(p).exists()],
        params={"serving": settings_params, "evaluation": eval_params},
        started=started,
    )


def cmd_report(args: argparse.Namespace) -> None:
    """The run's results page, report.json and funnel plot, read from its artifacts' sidecars."""
    from .audit.report import build_report, write_report

    started = time.time()
    config = parse_params(args.config)
    report = build_report(
        args.results,
        run_name=args.run_name,
        config=config,
        eval_results=args.eval,
        eval_table=args.eval_table,
        files=args.files,
        verify=args.verify_hashes,
        verdict=args.verdict,
        humanevalpack=args.humanevalpack,
        livecodebench=args.livecodebench,
    )
    write_report(report, html_out=args.html, json_out=args.json, svg_out=args.svg)
    sidecars = [a["sidecar"] for a in report["artifacts"] if "sidecar" in a]
    counts = {"artifacts": len(report["artifacts"]), "funnel_stages": len(report["funnel"])}
    for out in (args.html, args.json, *([args.svg] if args.svg else [])):
        finish_counts(out, stage="report", inputs=sidecars, counts=counts,
                      params={"run_name": args.run_name, "config_sha256": report["config_sha256"]}, started=started)
    log.info("report of %d artifact(s), %d funnel stage(s) -> %s", counts["artifacts"], counts["funnel_stages"], args.html)


def cmd_config_validate(args: argparse.Namespace) -> None:
    config = load_config(args.configfile)
    if args.show:
        json.dump(config, sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        print(f"ok: {', '.join(args.configfile)} (run_name={config['run_name']})")


def cmd_containers_check(args: argparse.Namespace) -> None:
    from .containers import check

    root = Path(args.root)
    config = load_config([str(root / f) for f in args.configfile]) if args.configfile else None
    findings = check(root, config, lint=not args.no_lint)
    for finding in findings:
        print(finding)
    if findings:
        raise ValueError(f"{len(findings)} container pin problem(s), listed above")
    print(f"ok: containers/*.Dockerfile and envs/*.txt under {root} are pinned")


def cmd_toolchains_build(args: argparse.Namespace) -> None:
    from .octopack import toolchains

    tc = toolchains.build(args.dir, force=args.force)
    for name, tool in sorted(tc.manifest["tools"].items()):
        print(f"{name}: {tool['version']} ({tool['path']})")
    print(f"ok: HumanEvalPack toolchains in {tc.root}")


def cmd_octopack_self_check(args: argparse.Namespace) -> None:
    from .octopack import execute

    sandbox = parse_params(args.sandbox) if args.sandbox else {}
    if args.workers is not None:
        sandbox["workers"] = args.workers
    params = execute.PackSandboxParams.from_dict(sandbox)
    files = _pack_files(args)
    execute.self_check(files, args.out, params, limit=args.limit, show_progress=not args.no_progress)
    print((Path(args.out) / "table.md").read_text())


def _pack_files(args: argparse.Namespace) -> dict[str, Path]:
    """HumanEvalPack task files by language, from --files or --data, narrowed to --languages."""
    from .octopack import humanevalpack

    if args.files:
        files = humanevalpack.files_by_language(args.files)
        return {lang: path for lang, path in files.items() if not args.languages or lang in args.languages}
    return humanevalpack.find_files(args.data, args.languages or list(humanevalpack.LANGUAGES))


def cmd_octopack_table(args: argparse.Namespace) -> None:
    from .octopack import results

    results.write_table(args.inputs, args.out, args.json)
    print(Path(args.out).read_text())


def cmd_octopack_generate(args: argparse.Namespace) -> None:
    from .octopack import generate
    from .serving import ServingSettings

    started = time.time()
    settings_params = parse_params(args.params)
    gen_params = parse_params(args.gen_params) if args.gen_params else {}
    files = _pack_files(args)
    sampling = generate.PackGenParams(**gen_params)
    stats = generate.generate_pack_samples(
        files, args.kind, args.out, ServingSettings.from_dict(settings_params), sampling,
        limit=args.limit, descriptions_path=args.descriptions, model_dir=args.model_dir,
        server_log=Path(args.server_log) if args.server_log else None, base_url=args.base_url,
        show_progress=not args.no_progress,
    )
    finish(Path(args.out), stats, stage=f"octopack.generate.{args.kind}",
           inputs=[*files.values(), *([args.descriptions] if args.descriptions else []),
                   *[p for p in ([Path(args.model_dir) / "model.safetensors"] if args.model_dir else []) if p.exists()]],
           params={"serving": settings_params, "generation": sampling.to_dict(), "limit": args.limit}, started=started)


def cmd_octopack_score(args: argparse.Namespace) -> None:
    from .octopack import execute, score

    params = execute.PackSandboxParams.from_dict(parse_params(args.sandbox) if args.sandbox else {})
    files = _pack_files(args)
    score.score_samples(args.samples, files, args.kind, args.out, params, limit=args.limit, ks=args.k,
                        show_progress=not args.no_progress)
    print((Path(args.out) / "table.md").read_text())


LCB_SCENARIOS = ("codegeneration", "selfrepair", "testoutputprediction", "codeexecution")


def _lcb_files(names: Sequence[str]) -> list[Path]:
    """``--files``, a directory standing for its data files (a fetched parquet dataset's), in name order."""
    return [f for path in map(Path, names) for f in (
        sorted(p for p in path.iterdir() if p.suffix in (".parquet", ".jsonl")) if path.is_dir() else [path])]


def _lcb_problems(args: argparse.Namespace) -> tuple[list[Any], str]:
    """The scenario's items of ``args.files`` in the contest-date window: code generation's and
    self repair's problems, or the prediction scenarios' items."""
    from .livecodebench import codegen, prediction

    if args.scenario == "testoutputprediction":
        return prediction.in_window(prediction.load_test_output(args.files), args.start_date, args.end_date, args.limit)
    if args.scenario == "codeexecution":
        return prediction.in_window(prediction.load_execution(args.files), args.start_date, args.end_date, args.limit)
    return codegen.select(codegen.load_problems(args.files), args.start_date, args.end_date, args.limit)


def cmd_lcb_fetch(args: argparse.Namespace) -> None:
    from .livecodebench import codegen

    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = (codegen.hub_files(args.release, args.revision) if args.dataset == codegen.DATASET
             else codegen.hub_data_files(args.dataset, args.revision))
    for path in paths:
        target = out / path.name
        shutil.copyfile(path, target)
        print(f"{target} ({sha256_file(target)})")


def cmd_lcb_generate(args: argparse.Namespace) -> None:
    from .livecodebench import codegen, generate, prediction, selfrepair
    from .serving import ServingSettings

    started = time.time()
    settings_params = parse_params(args.params)
    sampling = generate.LcbGenParams(**(parse_params(args.gen_params) if args.gen_params else {}))
    args.files = _lcb_files(args.files)
    items, window = _lcb_problems(args)
    fingerprint: dict[str, Any] = {"items": [i.key for i in items],
                                   "files": [sha256_file(f) for f in args.files]}
    inputs: list[str | Path] = list(args.files)
    response = "```python\n"
    out = Path(args.out)
    if args.scenario == "codegeneration":
        prompts = [({"question_id": p.question_id}, codegen.build_prompt(p)) for p in items]
    elif args.scenario == "selfrepair":
        if not (args.codegen_samples and args.codegen_verdicts):
            raise SystemExit("lcb generate --scenario selfrepair needs --codegen-samples and --codegen-verdicts")
        if sampling.n != 1:
            raise SystemExit("self repair asks for one repair per failing sample: n must be 1 (LiveCodeBench's)")
        prompts = selfrepair.repair_requests(args.codegen_samples, args.codegen_verdicts, items, args.code_block)
        fingerprint["code_block"] = args.code_block
        inputs += [args.codegen_samples, args.codegen_verdicts]
        fingerprint["codegen"] = [sha256_file(args.codegen_samples), sha256_file(args.codegen_verdicts)]
        out = out.with_name("repairs.jsonl")
    elif args.scenario == "testoutputprediction":
        prompts = [({"id": i.key}, prediction.test_output_prompt(i)) for i in items]
        response = ""
    else:
        prompts = [({"id": i.key}, prediction.execution_prompt(i, args.cot)) for i in items]
        fingerprint["cot"] = args.cot
        response = ""
    stats = generate.generate_prompts(
        prompts, out, ServingSettings.from_dict(settings_params), sampling, scenario=args.scenario,
        response=response, fingerprint=fingerprint, model_dir=args.model_dir,
        server_log=Path(args.server_log) if args.server_log else None, base_url=args.base_url,
        show_progress=not args.no_progress,
    )
    model = [p for p in ([Path(args.model_dir) / "model.safetensors"] if args.model_dir else []) if p.exists()]
    params = {"serving": settings_params, "generation": sampling.to_dict(), "window": window}
    finish(out, stats, stage=f"livecodebench.generate.{args.scenario}", inputs=[*inputs, *model], params=params,
           started=started)
    if args.scenario == "selfrepair":
        counts = selfrepair.assemble(args.codegen_samples, args.codegen_verdicts, out, items, args.out)
        finish_counts(args.out, stage="livecodebench.selfrepair.assemble",
                      inputs=[args.codegen_samples, args.codegen_verdicts, out], counts=counts, params={},
                      started=started)


def cmd_lcb_score(args: argparse.Namespace) -> None:
    from .livecodebench import score

    params = score.LcbSandboxParams.from_dict(parse_params(args.sandbox) if args.sandbox else {})
    args.files = _lcb_files(args.files)
    items, window = _lcb_problems(args)
    if args.scenario in ("codegeneration", "selfrepair"):
        score.score_samples(args.samples, items, args.out, params, problem_files=args.files, window=window,
                            ks=args.k, scenario=args.scenario, code_block=args.code_block,
                            show_progress=not args.no_progress)
    else:
        score.score_predictions(args.samples, items, args.scenario, args.out, params, problem_files=args.files,
                                window=window, ks=args.k, cot=args.cot, show_progress=not args.no_progress)
    print((Path(args.out) / "table.md").read_text())


def cmd_lcb_table(args: argparse.Namespace) -> None:
    from .livecodebench import table

    result = table.card_table(args.inputs)
    write_json(args.json, result)
    with atomic_writer(args.out) as handle:
        handle.write(table.render(result))
    print(Path(args.out).read_text())


def cmd_lock(args: argparse.Namespace) -> None:
    from .audit.verify import make_lock

    lock = make_lock(args.run, args.run_name)
    write_json(args.out, lock)
    print(f"locked {len(lock['artifacts'])} artifacts of {args.run} in {args.out}")


def cmd_verify(args: argparse.Namespace) -> None:
    from .audit.verify import load_lock, summary, verify

    report = verify(args.run, load_lock(args.lock))
    if args.out:
        write_json(args.out, report)
    print(summary(report))
    if not report["ok"] and args.strict:
        raise ValueError(f"{args.run} differs from {args.lock} (first divergence above)")


def cmd_explain(args: argparse.Namespace) -> None:
    from .audit.explain import explain, reindex, render

    results = Path(args.results) if args.results else Path("results") / args.run
    if args.reindex:
        built = reindex(results)
        print(f"indexed {len(built)} artifact(s) of {results}")
        if args.id is None:
            return
    if args.id is None:
        raise ValueError("name a record or sample id (or --reindex)")
    steps = explain(results, args.id)
    if args.json:
        json.dump({"id": args.id, "results": str(results), "stages": [s.to_json() for s in steps]},
                  sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(args.id, steps))


def cmd_compare(args: argparse.Namespace) -> None:
    from .audit.compare import Source, compare, summary

    if (args.published_dataset is None) == (args.published_file is None):
        raise ValueError("name exactly one of --published-dataset or --published-file")
    source = Source(args.published_dataset, args.revision, args.split, args.published_file)
    report = compare(args.ours, source, key=args.key, fields=[f for f in args.fields.split(",") if f])
    if args.out:
        write_json(args.out, report)
    print(summary(report))


def cmd_pins_check(args: argparse.Namespace) -> None:
    from .pins import check_pins, hub_pins

    config = load_config(args.configfile)
    reports = check_pins(config, extra_mirrors=args.mirror, require_mirror=args.require_mirror)
    hubs = hub_pins(config)
    bad = 0
    for report in reports:
        where = f" = {report.resolved}" if report.resolved else ""
        print(f"{'ok ' if report.ok else 'BAD'} {report.pin.key}: {report.pin.url} sha256 {report.pin.sha256[:12]}{where}")
        for problem in report.problems:
            print(f"    {problem}")
        bad += not report.ok
    for hub in hubs:
        problems = hub.problems()
        print(f"{'BAD' if problems else 'ok '} {hub.key}: {hub.dataset}@{hub.revision}")
        for problem in problems:
            print(f"    {problem}")
        bad += bool(problems)
    if bad:
        raise ValueError(f"{bad} of {len(reports) + len(hubs)} pin(s) wrong, listed above")
    print(f"ok: {len(reports)} pinned files and {len(hubs)} Hub revisions of {', '.join(args.configfile)}")


def cmd_pins_fetch(args: argparse.Namespace) -> None:
    from .pins import Pin

    spec = parse_params(args.pin)
    pin = Pin.from_section(spec.get("key", "pin"), spec, spec.get("mirrors") or (), spec.get("cache_dir", "~/.cache/selfalign/pinned"))
    path = pin.fetch()
    with open(path, "rb") as source, atomic_writer(args.out, "wb") as out:
        shutil.copyfileobj(source, out)
    print(f"{pin.url} (sha256 {pin.sha256}) -> {args.out} (from {path})")


# ------------------------------------------------------------------------------------- argparse


def _add_common(p: argparse.ArgumentParser, *, params: bool = True, shards: bool = False, workers: bool = False) -> None:
    if params:
        p.add_argument("--params", required=True, help="stage parameters: JSON object, or @file.json/@file.yaml")
    if shards:
        p.add_argument("--shard", type=int, default=0, help="which shard to process (0-based)")
        p.add_argument("--num-shards", type=int, default=1, help="how many shards the input is cut into")
    if workers:
        p.add_argument("--workers", type=int, default=default_workers(), help="worker processes")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


#: Help lines for the options many subcommands share, where the subcommand gives none.
SHARED_OPTION_HELP = {
    "--input": "the JSONL the stage reads (the artifact of the stage before it)",
    "--out": "the artifact to write; its .meta.json sidecar (and, for a stage that drops records, "
    "its .dropped.jsonl) go beside it",
    "--out-dir": "the directory to write into",
    "--run-name": "the run's name (config run_name), as the outputs name it",
    "--dataset": "the benchmark: humaneval or mbpp",
    "--split": "the dataset's split",
    "inputs": "the shard outputs (or files) to read, in order",
    "configfile": "config files, merged in order (later ones override earlier ones)",
}

EPILOG = """\
Stage parameters: --params takes a JSON object ('{"seed": 0}') or @file.json / @file.yaml, the
same section of config.yaml the workflow passes, so a stage run by hand is the stage the
workflow runs. Every stage writes its artifact atomically and a <artifact>.meta.json sidecar
beside it (counts, drops by reason, hashes, config, versions). `selfalign explain ID` follows a
record through a run's stages; `selfalign <command> --help` describes each command.
"""


def _fill_help(parser: argparse.ArgumentParser) -> None:
    """Give every option of every subcommand a help line (SHARED_OPTION_HELP where it has none)."""
    for action in parser._actions:  # argparse has no public walk over a parser's actions
        if isinstance(action, argparse._SubParsersAction):
            action.help = action.help or "the command to run (each has its own --help)"
            for child in action.choices.values():
                _fill_help(child)
        elif action.help is None:
            names = [*action.option_strings] or [action.dest]
            for name in names:
                if name in SHARED_OPTION_HELP:
                    action.help = SHARED_OPTION_HELP[name]
                    break
            else:
                raise AssertionError(f"{parser.prog}: option {names[0]} has no help line")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="selfalign",
        description="The StarCoder2-Instruct self-alignment recipe's stages, one command each, "
        "usable with or without Snakemake.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"selfalign {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", required=True)

    cfg = sub.add_parser("config", help="configuration tools")
    cfg_sub = cfg.add_subparsers(dest="config_command", required=True)
    val = cfg_sub.add_parser("validate", help="merge config files in order and validate them against the schema")
    val.add_argument("configfile", nargs="+")
    val.add_argument("--show", action="store_true", help="print the merged config")
    val.set_defaults(func=cmd_config_validate)

    p = sub.add_parser("lock", help="write the sha256 of every artifact of a run, in chain order (a lock file)")
    p.add_argument("run", help="the run's results directory, e.g. results/tiny")
    p.add_argument("--out", required=True, help="the lock file, e.g. tests/expected/tiny.lock.json")
    p.add_argument("--run-name", default=None)
    p.set_defaults(func=cmd_lock)

    p = sub.add_parser("verify", help="compare a run with a lock file: identical artifacts, first divergence")
    p.add_argument("run", help="the run's results directory, e.g. results/tiny")
    p.add_argument("--lock", default="tests/expected/tiny.lock.json", help="the lock file")
    p.add_argument("--out", default=None, help="write the full report (JSON) here")
    p.add_argument("--strict", action="store_true",
                   help="exit non-zero when the run differs (default: report it and exit 0)")
    p.set_defaults(func=cmd_verify)

    p = sub.add_parser("explain", help="one record's path through the chain: kept or dropped at each stage, "
                       "why, and what it became (from the index each stage writes)")
    p.add_argument("id", nargs="?", help="a seed id (e.g. 'stdlib/enum.py#L000048') or a sample id ('<id>/<k>')")
    p.add_argument("--run", default="tiny", help="the run's name: results/<run> (default: tiny)")
    p.add_argument("--results", default=None, help="or the results directory itself")
    p.add_argument("--json", action="store_true", help="the path as JSON, every record in full")
    p.add_argument("--reindex", action="store_true", help="(re)build every stage's index first")
    p.set_defaults(func=cmd_explain)

    p = sub.add_parser("compare", help="hold one of our artifacts against a published dataset: "
                       "matched records, and which differ at which field")
    p.add_argument("--ours", required=True, help="our JSONL artifact, e.g. results/paper/sft.jsonl")
    p.add_argument("--published-dataset", default=None,
                   help="a Hub dataset, e.g. bigcode/self-oss-instruct-sc2-exec-filter-50k")
    p.add_argument("--revision", default=None, help="the Hub dataset's revision (pin it)")
    p.add_argument("--split", default="train")
    p.add_argument("--published-file", default=None, help="or a local .jsonl[.gz] / .parquet file")
    p.add_argument("--key", default="instruction",
                   help="match records by this field (instruction/response: whitespace-free, as the release)")
    p.add_argument("--fields", default="instruction,response", help="comma-separated fields to compare")
    p.add_argument("--out", default=None, help="write the full report (JSON) here")
    p.set_defaults(func=cmd_compare)

    pins = sub.add_parser("pins", help="files the config pins by URL + sha256")
    pins_sub = pins.add_subparsers(dest="pins_command", required=True)
    p = pins_sub.add_parser("check", help="each pin names the release commit and the file's sha256, "
                            "and resolves in the mirrors (no download)")
    p.add_argument("configfile", nargs="+", help="config files, merged in order")
    p.add_argument("--mirror", action="append", default=[], help="a mirror directory to look in (repeatable)")
    p.add_argument("--require-mirror", action="store_true", help="a pin that no mirror holds is a failure")
    p.set_defaults(func=cmd_pins_check)
    p = pins_sub.add_parser("fetch", help="copy one pinned file (mirror, cache, then its URL) to --out")
    p.add_argument("--pin", required=True, help='JSON {"url", "sha256", "mirrors", "cache_dir"}')
    p.add_argument("--out", required=True)
    p.set_defaults(func=cmd_pins_fetch)

    ctr = sub.add_parser("containers", help="container image tools")
    ctr_sub = ctr.add_subparsers(dest="containers_command", required=True)
    p = ctr_sub.add_parser("check", help="every FROM pinned by digest, every pip install pinned, "
                           "envs/*.txt consistent, hadolint clean")
    p.add_argument("--root", default=".", help="the repository checkout")
    p.add_argument("--configfile", nargs="*", default=["config.yaml"],
                   help="config files (relative to --root) whose containers: must have Dockerfiles")
    p.add_argument("--no-lint", action="store_true", help="skip hadolint")
    p.set_defaults(func=cmd_containers_check)

    tch = sub.add_parser("toolchains", help="the compilers and libraries HumanEvalPack's programs need")
    tch_sub = tch.add_subparsers(dest="toolchains_command", required=True)
    p = tch_sub.add_parser("build", help="build Go packages, Rust crates and js-md5 offline from Debian "
                           "packages (npm for js-md5) into DIR, for the sandbox")
    p.add_argument("dir", help="the toolchain directory (scripts/setup.sh: .venv/toolchains)")
    p.add_argument("--force", action="store_true", help="rebuild even if current")
    p.set_defaults(func=cmd_toolchains_build)

    octo = sub.add_parser("octopack", help="HumanEvalPack (OctoPack) in six languages")
    octo_sub = octo.add_subparsers(dest="octopack_command", required=True)
    p = octo_sub.add_parser("self-check", help="run every language's canonical (must pass) and buggy "
                            "(must not) solutions in the sandbox; write verdicts and a table")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="directory of humanevalpack-<language>.jsonl[.gz]")
    where.add_argument("--files", nargs="+", help="task files named humanevalpack-<language>.jsonl[.gz]")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--languages", nargs="*", help="default: all six")
    p.add_argument("--limit", type=int, help="first N tasks per language")
    p.add_argument("--workers", type=int, help="sandboxes in parallel")
    p.add_argument("--sandbox", help="octopack sandbox parameters (JSON or @file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_octopack_self_check)
    p = octo_sub.add_parser("generate", help="HumanEvalPack samples of one task kind from a checkpoint, "
                            "through the serving path (one request per task, n choices)")
    p.add_argument("--kind", required=True, choices=["synthesize", "fixtests", "fixdocs", "explaindescribe",
                                                      "explainsynthesize"], help="the HumanEvalPack task")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="directory of humanevalpack-<language>.jsonl[.gz]")
    where.add_argument("--files", nargs="+", help="task files named humanevalpack-<language>.jsonl[.gz]")
    p.add_argument("--out", required=True, help="samples JSONL (what `octopack score` reads)")
    p.add_argument("--languages", nargs="*", help="default: all six")
    p.add_argument("--limit", type=int, help="first N tasks per language")
    p.add_argument("--gen-params", help="format, max_tokens, temperature, top_p, n, seed (JSON or @file)")
    p.add_argument("--descriptions", help="explainsynthesize: the explaindescribe samples")
    p.add_argument("--model-dir", default=None, help="the checkpoint directory to serve")
    p.add_argument("--server-log", default=None, help="where the started server logs")
    p.add_argument("--base-url", default=None, help="use this running server instead of starting one")
    _add_common(p)
    p.set_defaults(func=cmd_octopack_generate)
    p = octo_sub.add_parser("score", help="score samples (completions or the harness's generations) "
                            "of one HumanEvalPack task kind in the sandbox: pass@k per language")
    p.add_argument("--samples", required=True, help="JSONL: language, task_id, completions | generations")
    p.add_argument("--kind", required=True, choices=["synthesize", "fixtests", "fixdocs", "explainsynthesize"],
                   help="the task the samples answer (post-processing follows it)")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument("--data", help="directory of humanevalpack-<language>.jsonl[.gz]")
    where.add_argument("--files", nargs="+", help="task files named humanevalpack-<language>.jsonl[.gz]")
    p.add_argument("--out", required=True, help="output directory")
    p.add_argument("--languages", nargs="*", help="default: all six")
    p.add_argument("--limit", type=int, help="first N tasks per language")
    p.add_argument("-k", type=int, nargs="+", default=[1, 10, 100], help="pass@k for each k the samples allow")
    p.add_argument("--sandbox", help="octopack sandbox parameters (JSON or @file)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=cmd_octopack_score)
    p = octo_sub.add_parser("table", help="the HumanEvalPack table: every scored task x language from the "
                            "score summaries, OctoCoder's published pass@1 beside")
    p.add_argument("--inputs", nargs="+", required=True, help="summary.json of each `octopack score` run")
    p.add_argument("--out", required=True, help="table.md")
    p.add_argument("--json", required=True, help="table.json")
    p.set_defaults(func=cmd_octopack_table)

    lcb = sub.add_parser("lcb", help="LiveCodeBench's four scenarios: fetch, generate, score")
    lcb_sub = lcb.add_subparsers(dest="lcb_command", required=True)
    p = lcb_sub.add_parser("fetch", help="a dataset's files from the Hub at a dataset commit")
    p.add_argument("--dataset", default="livecodebench/code_generation_lite",
                   help="code_generation_lite (a release's JSONL files), test_generation or execution-v2 (parquet)")
    p.add_argument("--release", default="release_v1", help="code_generation_lite's release_v1 ... release_v6")
    p.add_argument("--revision", required=True, help="the dataset commit (40 hex digits)")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_lcb_fetch)
    for name, helptext in (("generate", "samples from a checkpoint through the serving path, one request per item"),
                           ("score", "samples judged in the sandbox by the scenario's rules: pass@k")):
        p = lcb_sub.add_parser(name, help=helptext)
        p.add_argument("--scenario", choices=LCB_SCENARIOS, default="codegeneration", help="which of its scenarios")
        p.add_argument("--files", nargs="+", required=True,
                       help="the scenario's dataset files (code_generation_lite's JSONL for code generation and "
                            "self repair; test_generation's or execution-v2's parquet or JSONL)")
        p.add_argument("--start-date", default=None, help="first contest date (YYYY-MM-DD, inclusive)")
        p.add_argument("--end-date", default=None, help="last contest date (YYYY-MM-DD, inclusive)")
        p.add_argument("--limit", type=int, default=None, help="the first N items of the window")
        p.add_argument("--cot", action="store_true", help="code execution with its chain-of-thought prompt")
        p.add_argument("--code-block", choices=("first", "last"), default="first",
                       help="which fenced block of an answer is its code (LiveCodeBench: first until its 264e841)")
        p.add_argument("--out", required=True, help="samples JSONL" if name == "generate" else "output directory")
        if name == "generate":
            p.add_argument("--gen-params", help="format, max_tokens, temperature, top_p, n, stop, seed (JSON or @file)")
            p.add_argument("--codegen-samples", default=None, help="self repair: code generation's samples")
            p.add_argument("--codegen-verdicts", default=None, help="self repair: code generation's verdicts")
            p.add_argument("--model-dir", default=None, help="the checkpoint directory to serve")
            p.add_argument("--server-log", default=None, help="where the started server logs")
            p.add_argument("--base-url", default=None, help="use this running server instead of starting one")
            _add_common(p)
            p.set_defaults(func=cmd_lcb_generate)
        else:
            p.add_argument("--samples", required=True, help="JSONL: question_id (or id), completions")
            p.add_argument("-k", type=int, nargs="+", default=[1, 5, 10], help="pass@k for each k the samples allow")
            p.add_argument("--sandbox", help="livecodebench sandbox parameters (JSON or @file)")
            p.add_argument("--no-progress", action="store_true", help="no progress bar")
            p.set_defaults(func=cmd_lcb_score)
    p = lcb_sub.add_parser("table", help="the scored scenarios in one table beside the model card's figures")
    p.add_argument("--inputs", nargs="+", required=True, help="summary.json of each `lcb score` run")
    p.add_argument("--out", required=True, help="table.md")
    p.add_argument("--json", required=True, help="table.json")
    p.set_defaults(func=cmd_lcb_table)

    seeds = sub.add_parser("seeds", help="seed-function stages (The Stack -> filtered seeds)")
    seeds_sub = seeds.add_subparsers(dest="seeds_command", required=True)

    p = seeds_sub.add_parser("extract", help="top-level functions with a \"\"\" docstring, one shard of the source")
    p.add_argument("--out", required=True)
    _add_common(p, shards=True, workers=True)
    p.set_defaults(func=cmd_extract)

    p = seeds_sub.add_parser("merge", help="k-way merge extraction shards by id; drop exact duplicates")
    p.add_argument("--out", required=True)
    p.add_argument("inputs", nargs="+")
    _add_common(p, params=False)
    p.set_defaults(func=cmd_merge)

    p = seeds_sub.add_parser("dedup", help="MinHash + LSH near-dedup")
    p.add_argument("--input", required=True)
    p.add_argument("--out", required=True)
    p.add_argument("--duplicates", required=True, help="where to write {id, kept} for each dropped record")
    _add_common(p, workers=True)
    p.set_defaults(func=cmd_dedup)

    p = sub.add_parser("import", help="start the chain from a published dataset or a local JSONL")
    p.add_argument("--out", required=True)
    _add_common(p)
    p.set_defaults(func=cmd_import)

    gen = sub.add_parser("generate", help="model-driven stages through an OpenAI completions server")
    gen_sub = gen.add_subparsers(dest="stage", required=True)
    for stage, text in (
        ("judge", "the LLM judge: keep seeds whose docstring the base model says is enough"),
        ("concepts", "S->C: concepts of each seed function"),
        ("instructions", "C->I: a task built from each record's concepts"),
        ("responses", "I->R: responses with self-written tests (n samples each)"),
    ):
        p = gen_sub.add_parser(stage, help=text)
        p.add_argument("--input", required=True)
        p.add_argument("--out", required=True)
        p.add_argument("--model-dir", default=None, help="a local model directory to serve instead of model.name")
        p.add_argument("--server-log", default=None, help="where the started server logs")
        p.add_argument("--base-url", default=None, help="use this running server instead of starting one")
        _add_common(p, shards=True)
        p.set_defaults(func=cmd_generate)

    cur = sub.add_parser("curate", help="execution-filtered samples -> sanitized -> cleaned -> SFT data")
    cur_sub = cur.add_subparsers(dest="curate_stage", required=True)
    p = cur_sub.add_parser("sft", help="SMART rewrite and decontamination: the SFT dataset")
    p.add_argument("--input", required=True, help="cleaned.jsonl")
    p.add_argument("--out", required=True, help="sft.jsonl")
    p.add_argument("--decontamination", required=True, help="seeds.filter.decontamination (JSON or @file)")
    p.add_argument("--parquet", required=True, help="sft.parquet")
    p.add_argument("--report", required=True, help="decontamination.json")
    p.add_argument("--card", required=True, help="dataset card (README.md)")
    p.add_argument("--run-name", required=True)
    p.add_argument("--recipe", default=None, help="which recipe made it, for the card (release or an overlay)")
    p.add_argument("--mix", help="external sources to add, config curation.mix (JSON list or @file; default none)")
    p.add_argument("--pins", help="the config's pinned files by key, for sources with pin: (JSON or @file)")
    _add_common(p)
    p.set_defaults(func=cmd_curate_sft)

    groups = {(): sub, ("seeds",): seeds_sub, ("curate",): cur_sub}
    for row in RECORD_STAGES:
        command = row.command
        assert command is not None  # COMMAND_STAGES holds the stages with one
        p = groups[command.words[:-1]].add_parser(command.words[-1], help=command.help)
        p.add_argument("--input", required=True, help=command.input_help)
        p.add_argument("--out", required=True)
        _add_common(p, params=command.params is not None, shards=command.shards, workers=command.workers)
        p.set_defaults(func=functools.partial(run_record_stage, row))

    p = sub.add_parser("model-texts", help="write the prompt layouts the tiny model is trained on")
    p.add_argument("--out-dir", required=True)
    p.set_defaults(func=cmd_model_texts)

    p = sub.add_parser("tinymodel", help="train the tiny profile's base model on CPU")
    p.add_argument("--corpus", nargs="+", required=True, help="seed JSONL files (field 'content')")
    p.add_argument("--text", nargs="*", default=[], help="text files used verbatim")
    p.add_argument("--out", required=True, help="model directory")
    _add_common(p)
    p.set_defaults(func=cmd_tinymodel)

    p = sub.add_parser("train", help="fine-tune the base model on the SFT data (transformers Trainer); "
                       "--plan: the run's GPU memory budget, from the model's config alone")
    p.add_argument("--sft", help="sft.jsonl (fields instruction, response)")
    p.add_argument("--base-model", help="a Hub model name or a local model directory")
    p.add_argument("--revision", default=None, help="the Hub revision to load (pin a commit sha)")
    p.add_argument("--out", help="the checkpoint directory to write")
    p.add_argument("--plan", action="store_true",
                   help="print the memory plan of the configured training (model.name, training:) and exit")
    p.add_argument("--configfile", nargs="+", default=["config.yaml"],
                   help="with --plan: the config and overlays to read (default config.yaml)")
    p.add_argument("--gpu-memory", default=None, help="with --plan: the GPU's memory, e.g. 80GiB (A100 80GB)")
    p.add_argument("--gpu-name", default=None, help="with --plan: a name for that GPU in the output")
    p.add_argument("--model-config", default=None,
                   help="with --plan: a config.json or model directory instead of the Hub's config")
    p.add_argument("--json", default=None, help="with --plan: also write the plan here as JSON")
    p.add_argument("--params", default=None, help="the training section: JSON object, or @file.json/@file.yaml")
    _add_common(p, params=False)
    p.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="EvalPlus: generate samples with a checkpoint, score samples, tabulate")
    ev_sub = ev.add_subparsers(dest="eval_command", required=True)
    p = ev_sub.add_parser("generate", help="one greedy sample per task through the serving path")
    p.add_argument("--dataset", required=True, choices=["humaneval", "mbpp"])
    p.add_argument("--out", required=True, help="samples JSONL (EvalPlus format)")
    p.add_argument("--eval-params", required=True, help="the config's evaluation section (JSON or @file)")
    p.add_argument("--model-dir", default=None, help="the checkpoint directory to serve")
    p.add_argument("--server-log", default=None, help="where the started server logs")
    p.add_argument("--base-url", default=None, help="use this running server instead of starting one")
    _add_common(p)
    p.set_defaults(func=cmd_eval_generate)
    from .evaluation.cli import register as register_eval

    register_eval(ev_sub)

    p = sub.add_parser("report", help="the run's results page: funnel, eval table, every artifact's provenance")
    p.add_argument("--results", required=True, help="the run's results directory, as its sidecars name it (results/<run>)")
    p.add_argument("--run-name", required=True)
    p.add_argument("--config", required=True, help="the run's merged config (JSON or @file)")
    p.add_argument("--eval", nargs="*", default=[], help="score files of `eval score` (eval/*.json)")
    p.add_argument("--eval-table", default=None, help="eval/table.md, checked against the score files")
    p.add_argument("--humanevalpack", default=None, help="octopack/table.json: HumanEvalPack beside OctoCoder")
    p.add_argument("--livecodebench", default=None, help="livecodebench/table.json: LiveCodeBench beside the card")
    p.add_argument("--files", nargs="*", default=[], help="artifacts without a sidecar, hashed by the report")
    p.add_argument("--html", required=True, help="the page to write (report/index.html)")
    p.add_argument("--json", required=True, help="the machine-readable report (report/report.json)")
    p.add_argument("--svg", default=None, help="the funnel plot alone (report/funnel.svg)")
    p.add_argument("--verify-hashes", action="store_true", help="rehash every artifact against its sidecar")
    p.add_argument("--verdict", default=None, help="the run's verify.json (selfalign verify --out): shown first")
    p.set_defaults(func=cmd_report)

    p = sub.add_parser("concat", help="concatenate shard outputs in shard order and merge their sidecars")
    p.add_argument("--out", required=True)
    p.add_argument("--stage", required=True, help="stage name recorded in the sidecar")
    p.add_argument("inputs", nargs="+")
    _add_common(p, params=False)
    p.set_defaults(func=cmd_concat)
    _fill_help(parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    # One INFO line per HTTP request would bury a generation job's log; errors still show.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    func: Callable[[argparse.Namespace], None] = args.func
    try:
        func(args)
    except (ConfigError, RecordError, ValueError, FileNotFoundError, RuntimeError) as exc:
        # Bad input is the user's to fix: say what and where, without a traceback.
        print(f"selfalign: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
