# syntax=docker/dockerfile:1
# The edge image: gateway + motion function (CPU only; opencv-python-headless, no torch).
# Build from the repository root:
#   docker build -f deploy/k3s/images/edge.Dockerfile -t tripwire-edge:0.1.0 .
# No secret is baked in: broker URL and camera config come from the pod (Secret, ConfigMap).

ARG PYTHON_IMAGE=python:3.12.8-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
RUN python -m venv /opt/tripwire
COPY pyproject.toml README.md /src/
COPY tripwire /src/tripwire
COPY functions /src/functions
COPY gateway /src/gateway
COPY console /src/console
COPY loadtest /src/loadtest
# A plain (non-editable) install of the base dependencies and the "cluster" extra (the
# kubernetes client, for the wake controller that runs from this image): no "detector" extra,
# so no torch or ultralytics ever reaches this image.
RUN /opt/tripwire/bin/pip install "/src[cluster]"

FROM ${PYTHON_IMAGE} AS runtime
# A fixed numeric uid so that the pod's runAsNonRoot can verify it without a passwd lookup.
RUN groupadd --system --gid 10001 tripwire \
 && useradd --system --uid 10001 --gid tripwire --home-dir /var/lib/tripwire --create-home tripwire
COPY --from=build /opt/tripwire /opt/tripwire
ENV PATH=/opt/tripwire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRIPWIRE_HOME=/var/lib/tripwire \
    TRIPWIRE_PROFILE=prod \
    TRIPWIRE_HOST=0.0.0.0 \
    TRIPWIRE_PORT=8080
USER 10001:10001
WORKDIR /var/lib/tripwire
EXPOSE 8080
# /healthz answers while the process serves; readiness (/readyz, broker connected) is the
# cluster's business. No curl in a slim image: Python's urllib is already here.
HEALTHCHECK --interval=15s --timeout=3s --start-period=20s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRIPWIRE_PORT', '8080'), timeout=2)"]
ENTRYPOINT ["tripwire"]
CMD ["gateway"]
