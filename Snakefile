# selfalign: the StarCoder2-Instruct self-alignment recipe as a Snakemake workflow.
#
#   snakemake --profile profiles/tiny        # the tiny CPU chain (what CI runs)
#   snakemake -n                             # the paper's recipe (config.yaml), dry run
#
# Every artifact is a file under results/<run_name>/ with a <artifact>.meta.json sidecar.

import os
import sys
from pathlib import Path

from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version

min_version("9.0")

# The rules call the `selfalign` command; the Snakefile itself only needs the config validator,
# importable from the checkout even before `pip install -e .`.
sys.path.insert(0, str(Path(workflow.basedir) / "src"))
from selfalign.config import ConfigError, recipe_line, validate_config  # noqa: E402
from selfalign.determinism import cpu_kernel_env  # noqa: E402
from selfalign.pins import config_pins, octopack_pins  # noqa: E402
from selfalign.runtime import DETAIL_CAP_ENV  # noqa: E402
from selfalign.chain import ARTIFACT_STAGES, BY_KEY, IMPORT_STAGES, dropped_path  # noqa: E402
from selfalign.evaluation.benchmarks import BENCHMARKS, EVALPLUS  # noqa: E402
from selfalign.livecodebench.codegen import RELEASE_FILES as LCB_RELEASE_FILES  # noqa: E402
from selfalign.livecodebench import workflow as lcb_workflow  # noqa: E402

envvars:
    "PATH",


# Jobs call the `selfalign` installed beside the Python running snakemake (e.g. .venv/bin), even
# when that environment is not activated.
os.environ["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"


configfile: "config.yaml"


try:
    validate_config(config)
except ConfigError as exc:
    raise WorkflowError(str(exc)) from None

# Every job inherits these: CPU float kernels that do not depend on the machine's instruction set
# (determinism.cpu_kernels: portable), overriding whatever the caller's environment asks for.
# portable also preloads selfalign's fixed-order BLAS (built here once with cc; selfalign.determinism).
os.environ.update(cpu_kernel_env(config["determinism"]["cpu_kernels"], os.environ.get("LD_PRELOAD")))
# ... and the cap on drop records' detail strings (config drops.detail_chars).
os.environ[DETAIL_CAP_ENV] = str(config["drops"]["detail_chars"])

RUN = config["run_name"]
RESULTS = f"results/{RUN}"


container: config["containers"]["pipeline"]


# `snakemake --report report.html`: this text, then the outputs marked report(...) in rules/.
report: "report/workflow.rst"


wildcard_constraints:
    shard=r"\d{4}",


include: "rules/common.smk"
include: "rules/seeds.smk"
include: "rules/generation.smk"
include: "rules/execution.smk"
include: "rules/curation.smk"
include: "rules/training.smk"
include: "rules/evaluation.smk"
include: "rules/report.smk"
include: "rules/octopack.smk"
include: "rules/livecodebench.smk"


rule all:
    default_target: True
    input:
        f"{RESULTS}/sft.jsonl",
        f"{RESULTS}/sft.parquet",
        f"{RESULTS}/README.md",
        f"{RESULTS}/checkpoint",
        f"{RESULTS}/eval/table.md",
        # HumanEvalPack and LiveCodeBench on the checkpoint, when enabled in their sections
        OCTO_TABLE,
        [f"{RESULTS}/livecodebench/table.md"] if (config.get("livecodebench") or {}).get("enabled") else [],
        f"{RESULTS}/report/index.html",
        f"{RESULTS}/report/report.json",
        # a run with a lock file (the tiny profile's) ends by checking its bytes against it
        [f"{RESULTS}/verify.json"] if config["verify"]["lock"] else [],
