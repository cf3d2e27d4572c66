# The operator image: Python, git and ssh (for git over SSH), nothing else.
# BASE_IMAGE is a Debian bookworm image: the public debian:bookworm-slim by default; where
# image registries are unreachable, `make image` passes the one hack/build-base-image.sh
# builds from the Debian mirror. Debian's python3 is 3.11, which the package requires.
ARG BASE_IMAGE=debian:bookworm-slim

FROM ${BASE_IMAGE} AS build
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv \
 && rm -rf /var/lib/apt/lists/*
RUN python3 -m venv /opt/promotion-operator
WORKDIR /src
ENV PIP_NO_CACHE_DIR=1 PIP_DISABLE_PIP_VERSION_CHECK=1
# The dependencies in a layer of their own, from pyproject.toml and the version alone, so
# that a source change rebuilds only the last layers, without the network. The build
# backend is installed here (pyproject.toml's build-system) for the same reason.
COPY pyproject.toml ./
COPY operator/promotion_operator/__init__.py ./operator/promotion_operator/
RUN touch README.md \
 && /opt/promotion-operator/bin/pip install "setuptools>=77" "wheel>=0.40" \
 && /opt/promotion-operator/bin/pip install --no-build-isolation .
COPY README.md ./
COPY operator ./operator
# pip, setuptools and wheel only install; the running operator needs none of them
RUN /opt/promotion-operator/bin/pip install --no-build-isolation --no-deps --force-reinstall . \
 && /opt/promotion-operator/bin/pip uninstall --yes pip setuptools wheel

FROM ${BASE_IMAGE}
# Debian's stable updates are the version pin: unpinned, so a rebuild picks up security fixes.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 git openssh-client ca-certificates \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --key UID_MAX=65532 --key GID_MAX=65532 --uid 65532 --user-group --no-create-home --home-dir /tmp \
      --shell /usr/sbin/nologin nonroot
COPY --from=build /opt/promotion-operator /opt/promotion-operator
# ssh and git look the user up (getpwuid), so 65532 has an entry; HOME is the writable tmpfs.
ENV PATH=/opt/promotion-operator/bin:$PATH HOME=/tmp
USER 65532:65532
ENTRYPOINT ["promotion-operator"]
CMD ["run"]
