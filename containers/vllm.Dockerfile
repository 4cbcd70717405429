# The generation image: with serving.backend vllm, every generation job (judge, concepts,
# instructions, responses) and eval_generate runs in it (config.yaml: containers.vllm). The job is
# `selfalign generate ...`, which starts `vllm serve` as a child process (selfalign.serving.launch),
# talks to it over the completions API, and stops it; so the image is vLLM's own plus this package.
#
# Build from the repository root:
#   docker build -f containers/vllm.Dockerfile -t selfalign/vllm .
#
# Base: the official vllm/vllm-openai v0.30.0 (CUDA 13 build: needs NVIDIA driver >= 580), pinned by
# digest. vLLM 0.30.0 requires torch==2.13.0 (its PyPI metadata), the pipeline's torch version. The
# digest is the one many public deployments pin for vllm/vllm-openai:v0.30.0 (found with a code
# search of public GitHub repositories); it could not be pulled from the machine this was written on.
# On a CUDA 12 driver use the v0.30.0-cu129 build instead; one public file pins it as
#   vllm/vllm-openai:v0.30.0-cu129@sha256:a67f8f186d4567612ac37a55bd82295006002b18858eb12a8af2f05f86c2ae3f
ARG BASE=vllm/vllm-openai:v0.30.0@sha256:8a69ffad015f138d7170c4ddc429e230a3bc1c1719f67e14324749df200a4b90
FROM ${BASE}

ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1 PYTHONUNBUFFERED=1 SELFALIGN_NO_PROGRESS=1

# Only this package, with --no-deps: what a generation job imports beyond the standard library is
# openai, jsonschema, pyyaml and tqdm, all of which vLLM 0.30.0 itself requires (openai>=2.25.0,
# jsonschema>=4.23.0, pyyaml, tqdm in its PyPI metadata), so the image's own versions serve and
# nothing of vLLM's environment is replaced. The import line proves it at build time.
# --no-build-isolation: built with the image's own setuptools (vLLM requires >=77.0.3,<81), not one
# downloaded unpinned. Recent vLLM images install with uv (`uv pip install --system`); pip is the
# first try, uv the fallback.
WORKDIR /opt/selfalign
COPY pyproject.toml README.md ./
COPY src ./src
RUN set -eux; \
    python3 -m pip install --no-deps --no-build-isolation . \
        || uv pip install --system --no-deps --no-build-isolation .; \
    rm -rf src build ./*.egg-info; \
    python3 -c 'import selfalign.generation.stages, selfalign.evaluation.generate, vllm; print(vllm.__version__)'; \
    selfalign --help >/dev/null

LABEL org.selfalign.role=vllm
WORKDIR /work
# The base's ENTRYPOINT is `vllm serve`; jobs run `selfalign ...` (apptainer exec ignores it).
ENTRYPOINT []
CMD ["selfalign", "--help"]
