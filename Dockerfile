# Wardrobe's pipeline in a container. Build and run from the project root:
#
#   docker build -t wardrobe .
#   docker run --rm -u "$(id -u):$(id -g)" -v "$PWD:$PWD" -w "$PWD" wardrobe   # dvc repro
#   docker run --rm -u "$(id -u):$(id -g)" -v "$PWD:$PWD" -w "$PWD" wardrobe dvc metrics show
#
# The image holds the Fashion-MNIST package, the pinned dependencies and the reports' web
# assets, installed by the Makefile exactly as `make setup` installs them; the pipeline, its
# code and its outputs live in the mounted work tree (a git clone), whose src/ the entrypoint
# puts first on PYTHONPATH.
# Mount it at the same path as on the host: mlflow.db records absolute artifact paths.
FROM python:3.11-slim-bookworm

ARG DEBIAN_FRONTEND=noninteractive
# git for DVC, make for the install; the Debian archive's current versions.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends git make \
    && rm -rf /var/lib/apt/lists/*

WORKDIR /opt/wardrobe
COPY Makefile pyproject.toml requirements.lock README.md ./
COPY tools/web-assets/package.json tools/web-assets/package-lock.json ./tools/web-assets/
COPY src ./src
# `make setup`: the Debian packages (dataset-fashion-mnist, npm; apt-get as root), the pinned
# dependencies (pip install -c requirements.lock) into /opt/venv without the development
# tools, and the Data Docs' scripts and styles (npm ci).
RUN make setup VENV=/opt/venv INSTALL=. \
    && rm -rf /var/lib/apt/lists/* /root/.cache \
    && git config --system --add safe.directory '*'

RUN useradd --create-home --uid 1000 wardrobe
USER 1000:1000
# USER and LOGNAME: `-u UID:GID` may name a user the image does not know, and DVC asks for the
# user's name (getpass) where no passwd entry has one.
ENV PATH=/opt/venv/bin:$PATH \
    USER=wardrobe \
    LOGNAME=wardrobe \
    DVC_NO_ANALYTICS=1 \
    GX_ANALYTICS_ENABLED=False \
    RAY_USAGE_STATS_ENABLED=0 \
    MLFLOW_DISABLE_TELEMETRY=true \
    DO_NOT_TRACK=1 \
    MPLCONFIGDIR=/tmp/matplotlib \
    WARDROBE_WEB_ASSETS=/opt/wardrobe/tools/web-assets/node_modules \
    HOME=/tmp
WORKDIR /work
# The work tree's own code, wherever it is mounted.
ENTRYPOINT ["/bin/sh", "-c", "PYTHONPATH=\"$PWD/src\" exec \"$@\"", "wardrobe"]
CMD ["dvc", "repro"]
