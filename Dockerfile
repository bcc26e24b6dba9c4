# The kubetune operator. Build from the repository root:
#   docker build -t kubetune:0.1.0 .
# The chart runs it as UID 10001 with a read-only root filesystem.
FROM python:3.11-slim

ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

# The operator extra only: no trainer (no torch), no pandas or matplotlib (the client's).
# searchAlgorithm.type gp needs torch: build with --build-arg EXTRAS=gp for it.
ARG EXTRAS=operator
COPY pyproject.toml README.md LICENSE /src/
COPY operator/kubetune /src/operator/kubetune
RUN pip install --no-cache-dir "/src[${EXTRAS}]" && rm -rf /src

# Numeric UID so that the pod's runAsNonRoot can verify it. HOME is /tmp, the one
# writable directory (an emptyDir) under the chart's read-only root filesystem.
RUN groupadd --gid 10001 kubetune \
    && useradd --uid 10001 --gid 10001 --no-create-home --home-dir /tmp \
       --shell /usr/sbin/nologin kubetune
USER 10001:10001
ENV HOME=/tmp
WORKDIR /tmp

# 8080: the operator's /metrics; 8081: kopf's /healthz.
EXPOSE 8080 8081
ENTRYPOINT ["python", "-m", "kubetune"]
