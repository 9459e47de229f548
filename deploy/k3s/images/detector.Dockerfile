# syntax=docker/dockerfile:1
# The detector image: YOLO (ultralytics) on CUDA PyTorch.
# Build from the repository root:
#   docker build -f deploy/k3s/images/detector.Dockerfile -t tripwire-detector:0.1.0 .
# No weights and no secret are baked in: the pod's init container copies the weights from
# MinIO into a volume (deploy/k3s/base/detector), credentials come from Secrets.

ARG TORCH_IMAGE=pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime

FROM ${TORCH_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The venv sees the base image's torch (system site packages), so ultralytics does not pull a
# second multi-GB torch wheel.
RUN python -m venv --system-site-packages /opt/tripwire
COPY pyproject.toml README.md /src/
COPY tripwire /src/tripwire
COPY functions /src/functions
COPY gateway /src/gateway
COPY loadtest /src/loadtest
# ultralytics depends on opencv-python, which needs libGL; swap it for the headless build
# (same cv2 module, so it is reinstalled after the removal).
RUN /opt/tripwire/bin/pip install "/src[detector]" \
 && /opt/tripwire/bin/pip uninstall -y opencv-python \
 && /opt/tripwire/bin/pip install --force-reinstall --no-deps opencv-python-headless

FROM ${TORCH_IMAGE} AS runtime
RUN groupadd --system --gid 10001 tripwire \
 && useradd --system --uid 10001 --gid tripwire --home-dir /var/lib/tripwire --create-home tripwire
COPY --from=build /opt/tripwire /opt/tripwire
ENV PATH=/opt/tripwire/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    TRIPWIRE_HOME=/var/lib/tripwire \
    TRIPWIRE_PROFILE=prod \
    TRIPWIRE_METRICS_HOST=0.0.0.0 \
    TRIPWIRE_METRICS_PORT=9108 \
    TRIPWIRE_WEIGHTS=/models/yolo11n.pt \
    YOLO_CONFIG_DIR=/tmp/ultralytics
USER 10001:10001
WORKDIR /var/lib/tripwire
EXPOSE 9108
HEALTHCHECK --interval=15s --timeout=3s --start-period=60s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('TRIPWIRE_METRICS_PORT', '9108'), timeout=2)"]
ENTRYPOINT ["tripwire"]
CMD ["detector"]
