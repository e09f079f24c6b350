# One image for every instrushare service; the compose file picks the command.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md LICENSE ./
COPY instrushare ./instrushare
COPY gateway ./gateway
COPY ingest ./ingest
COPY monitor_api ./monitor_api
COPY device_sim ./device_sim
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /nonexistent --shell /usr/sbin/nologin instrushare

USER instrushare
ENTRYPOINT ["instrushare"]
CMD ["--help"]
