# HiveSync API and its Temporal workers: one image, the command decides.
#   docker build -t hivesync .
#   docker run --env-file .env -p 8000:8000 hivesync                      # API
#   docker run --env-file .env hivesync hivesync migrate                    # migrations
#   docker run --env-file .env hivesync hivesync worker --queue cpu_tasks   # preview builds

# The Metro toolchain, exactly as locked (no install scripts run).
FROM node:20-bookworm-slim AS bundler
WORKDIR /app/bundler
COPY bundler/package.json bundler/package-lock.json ./
RUN npm ci --ignore-scripts --no-audit --no-fund

FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 hivesync
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY contracts ./contracts
COPY core ./core
COPY services ./services
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
COPY workflows ./workflows
COPY activities ./activities
COPY inference ./inference
RUN pip install .

# Node for the bundler processes of `hivesync worker`.
COPY --from=bundler /usr/local/bin/node /usr/local/bin/node
COPY bundler ./bundler
COPY --from=bundler /app/bundler/node_modules ./bundler/node_modules
RUN mkdir -p /var/lib/hivesync/bundler && chown hivesync /var/lib/hivesync/bundler

USER hivesync
# In containers: listen on all interfaces, log to stdout only, refuse weak secrets.
ENV ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_TO_FILE=false \
    BUNDLER_DIR=/app/bundler \
    BUNDLER_WORK_DIR=/var/lib/hivesync/bundler
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["hivesync", "api"]
