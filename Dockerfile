# The job's container image: `docker run --gpus all IMAGE run ...`, or a Kubernetes Job.
# TensorFlow's CUDA libraries come from pip (the `gpu` extra, tensorflow[and-cuda]), so the
# host needs only the NVIDIA driver and the container toolkit. Builds with the legacy builder
# too (no RUN --mount). `make image` builds it; `make image-test` builds the CPU variant on a
# local base and runs the container checks.
ARG BASE_IMAGE=debian:bookworm-20250520-slim

# Python (3.11), tini as PID 1 (passes SIGTERM on, reaps zombies) and CA certificates for
# the bucket; shared by both stages below.
FROM ${BASE_IMAGE} AS runtime
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 tini ca-certificates \
 && rm -rf /var/lib/apt/lists/*

# The virtualenv, built apart: certificates from docker/ca/ never reach the final image.
FROM runtime AS build
ARG TF_EXTRA=gpu
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3-venv \
 && rm -rf /var/lib/apt/lists/*
COPY docker/ca/ /usr/local/share/ca-certificates/extra/
RUN update-ca-certificates >/dev/null
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_DEFAULT_TIMEOUT=120
# Dependencies first, read from pyproject.toml alone, so a source change reuses this layer.
COPY pyproject.toml /src/
RUN python3 -m venv /opt/venv \
 && python3 -c 'import sys, tomllib; p = tomllib.load(open("/src/pyproject.toml", "rb"))["project"]; \
print("\n".join(p["dependencies"] + p["optional-dependencies"][sys.argv[1]]))' "$TF_EXTRA" \
    > /src/requirements.txt \
 && /opt/venv/bin/pip install --quiet -r /src/requirements.txt
# The job itself as a wheel, installed in the final stage: a code change rebuilds only that
# small layer, never the virtualenv's gigabytes.
COPY README.md /src/
COPY job/ /src/job/
RUN /opt/venv/bin/pip wheel --quiet --no-deps --wheel-dir /dist /src

FROM runtime
ARG TF_EXTRA=gpu
RUN groupadd --gid 10001 job \
 && useradd --uid 10001 --gid 10001 --home-dir /tmp --no-create-home --shell /usr/sbin/nologin job \
 && mkdir /artifacts && chown 10001:10001 /artifacts
COPY --from=build /opt/venv /opt/venv
# dlopen by name finds every CUDA library pip installed, also those that TensorFlow's RUNPATH
# leaves out (curand, nvrtc, nvjitlink). An empty list for the CPU variant.
RUN find /opt/venv/lib -mindepth 5 -maxdepth 5 -type d -path "*/site-packages/nvidia/*/lib" \
      > /etc/ld.so.conf.d/nvidia-pip.conf \
 && ldconfig
COPY --from=build /dist/ /tmp/dist/
RUN /opt/venv/bin/pip install --quiet --no-deps --no-index --no-cache-dir /tmp/dist/*.whl \
 && rm -rf /tmp/dist
# Everything the job writes goes to /tmp (mount a tmpfs there with a read-only root) or to
# the artifact store: Keras' and matplotlib's caches, temp files, the local work dir.
ENV PATH=/opt/venv/bin:$PATH HOME=/tmp TMPDIR=/tmp KERAS_HOME=/tmp/.keras \
    MPLCONFIGDIR=/tmp/matplotlib PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 \
    JOB_ARTIFACTS=/artifacts
WORKDIR /tmp
USER 10001:10001
ENTRYPOINT ["/usr/bin/tini", "--", "/opt/venv/bin/job"]
CMD ["--help"]

ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.title="image-recognition-job" \
      org.opencontainers.image.description="Search, retrain, evaluate and visualize the best CNN for MNIST with KerasTuner (TensorFlow ${TF_EXTRA})" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
