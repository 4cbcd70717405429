# The CPU pipeline image: every non-GPU rule runs in it (config.yaml: containers.pipeline).
# Build from the repository root:  docker build -f containers/pipeline.Dockerfile -t selfalign/pipeline .
ARG BASE=python:3.11-slim-bookworm
FROM ${BASE}

ENV PIP_NO_CACHE_DIR=1 PYTHONUNBUFFERED=1 SELFALIGN_NO_PROGRESS=1
WORKDIR /opt/selfalign
COPY envs/pipeline.txt envs/pipeline.txt
RUN python -m pip install -r envs/pipeline.txt
COPY pyproject.toml README.md ./
COPY src ./src
RUN python -m pip install --no-deps . && pyright --version
