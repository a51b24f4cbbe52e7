# The accountgraph image: one image for the gateway, the worker and migrations.
#   docker build -t accountgraph .
#   docker run --rm accountgraph --help
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /app
COPY pyproject.toml README.md ./
COPY src ./src
COPY workers ./workers
RUN pip install . \
    && useradd --system --uid 10001 --home-dir /app --shell /usr/sbin/nologin accountgraph \
    && mkdir /app/.state && chown accountgraph /app/.state

USER accountgraph
EXPOSE 8000
ENTRYPOINT ["accountgraph"]
CMD ["serve", "--host", "0.0.0.0", "--port", "8000", "--no-worker"]
