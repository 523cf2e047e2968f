# syntax=docker/dockerfile:1
# xent as a container: a builder stage makes a venv with the pinned dependencies
# (constraints.txt) and byte-compiles the app; the final stage copies only the venv and
# the app onto the same base, runs as a fixed non-root UID and needs no writable root
# filesystem. Swap the base with --build-arg PYTHON_IMAGE=... (both stages use it).
ARG PYTHON_IMAGE=python:3.12-slim

FROM ${PYTHON_IMAGE} AS build
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_ROOT_USER_ACTION=ignore \
    PYTHONDONTWRITEBYTECODE=1
WORKDIR /src
RUN python3 -m venv /opt/venv
# Dependencies first (their layer is rebuilt only when pyproject.toml or constraints.txt
# change): the runtime requirements of pyproject.toml, at the versions pinned in
# constraints.txt. The project itself is not pip-built (no build backend to fetch); its
# source is copied below and run with `python -m service.cli`.
COPY pyproject.toml constraints.txt ./
RUN python3 -c 'import tomllib; print("\n".join(tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]))' \
        > requirements.txt \
    && /opt/venv/bin/pip install --no-compile -c constraints.txt -r requirements.txt \
    && /opt/venv/bin/pip uninstall --yes pip setuptools \
    && /opt/venv/bin/python -m compileall -q -j 0 --invalidation-mode unchecked-hash /opt/venv/lib
COPY service/ /app/service/
RUN /opt/venv/bin/python -m compileall -q --invalidation-mode unchecked-hash /app/service

FROM ${PYTHON_IMAGE}
ARG UID=10001
# No .pyc writes (everything is precompiled), logs straight to stdout; the service binds all
# interfaces here. The other XENT_* settings keep the defaults from service/settings.py
# (XENT_PORT=8000, XENT_WORKERS=1, XENT_LOG_LEVEL=info, XENT_MAX_BODY_BYTES=67108864) unless set.
# GLIBC_TUNABLES: malloc asks for transparent huge pages, and *_NUM_THREADS: one BLAS thread (what
# `xent serve` would otherwise re-exec itself for; see service/cli/serve.py): large batches fault in
# their memory much faster, and a container given less CPU than the host has cores does not wait on
# BLAS threads that have no core to run on.
ENV PATH=/opt/venv/bin:$PATH \
    GLIBC_TUNABLES=glibc.malloc.hugetlb=1 \
    OPENBLAS_NUM_THREADS=1 \
    OMP_NUM_THREADS=1 \
    MKL_NUM_THREADS=1 \
    PYTHONPATH=/app \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    XENT_HOST=0.0.0.0 \
    XENT_PORT=8000
RUN groupadd --gid ${UID} xent \
    && useradd --uid ${UID} --gid ${UID} --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin xent
COPY --from=build /opt/venv /opt/venv
COPY --from=build /app /app
WORKDIR /app
USER ${UID}:${UID}
EXPOSE 8000
# Readiness probe with the image's own Python (no curl), on whatever XENT_PORT says.
HEALTHCHECK --interval=10s --timeout=3s --start-period=10s --retries=3 \
    CMD ["python", "-c", "import os, sys, urllib.request; port = os.environ.get('XENT_PORT', '8000'); sys.exit(0 if urllib.request.urlopen(f'http://127.0.0.1:{port}/readyz', timeout=2).status == 200 else 1)"]
# Exec form: python is PID 1 and gets SIGTERM itself; uvicorn then stops accepting, lets
# in-flight requests finish and exits 0. Every setting comes from XENT_* variables.
CMD ["python", "-m", "service.cli", "serve"]
