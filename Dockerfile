# HiveSync API (and, with later issues, its Temporal workers): one image, the command decides.
#   docker build -t hivesync .
#   docker run --env-file .env -p 8000:8000 hivesync            # API
#   docker run --env-file .env hivesync hivesync migrate          # migrations
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

RUN useradd --create-home --uid 10001 hivesync
WORKDIR /app

COPY pyproject.toml README.md alembic.ini ./
COPY core ./core
COPY services ./services
COPY api ./api
COPY cli ./cli
COPY migrations ./migrations
RUN pip install .

USER hivesync
# In containers: listen on all interfaces, log to stdout only, refuse weak secrets.
ENV ENVIRONMENT=production \
    HOST=0.0.0.0 \
    PORT=8000 \
    LOG_TO_FILE=false
EXPOSE 8000
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s \
    CMD python -c "import urllib.request; urllib.request.urlopen('http://127.0.0.1:8000/health', timeout=2)"
CMD ["hivesync", "api"]
