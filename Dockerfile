# syntax=docker/dockerfile:1
# deckhand's container image: docker build -t registry.example.com/platform/deckhand:0.1.0 .
# Two stages: wheels are built with compilers in `build`; the final image installs them offline
# and carries no compiler, no pip cache and no source it does not run.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN apt-get update \
 && apt-get install -y --no-install-recommends build-essential \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /build
COPY requirements.txt .
# Every runtime dependency is pinned (==) in requirements.txt; build them all as wheels.
RUN pip wheel --wheel-dir /wheels -r requirements.txt

FROM ${PYTHON_IMAGE}
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    DECKHAND_CONFIG=/etc/deckhand/config/deckhand.yaml \
    DECKHAND_DB=/data/deckhand.db \
    HOST=0.0.0.0 \
    PORT=3000 \
    HEALTH_PORT=8081
RUN groupadd --system --gid 10001 deckhand \
 && useradd --system --uid 10001 --gid 10001 --home-dir /app --no-create-home --shell /usr/sbin/nologin deckhand \
 && mkdir -p /data /etc/deckhand/config \
 && chown 10001:10001 /data
WORKDIR /app
COPY requirements.txt .
# Install from the builder's wheels only (--no-index): the same pinned versions, nothing fetched.
RUN --mount=type=bind,from=build,source=/wheels,target=/wheels \
    pip install --no-index --find-links=/wheels -r requirements.txt
COPY app.py ./
COPY bot/ bot/
COPY blocks/ blocks/
COPY commands/ commands/
COPY console/ console/
COPY jobs/ jobs/
# Numeric, so Kubernetes' runAsNonRoot can verify it without reading /etc/passwd.
USER 10001:10001
VOLUME ["/data"]
EXPOSE 3000 8081
HEALTHCHECK --interval=30s --timeout=5s --start-period=20s \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('HEALTH_PORT', '8081'), timeout=4)"]
CMD ["python", "app.py"]
