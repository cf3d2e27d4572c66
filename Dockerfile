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
COPY pyproject.toml README.md ./
COPY operator ./operator
# pip and setuptools only install; the running operator needs neither
RUN /opt/promotion-operator/bin/pip install --no-cache-dir . \
 && /opt/promotion-operator/bin/pip uninstall --yes pip setuptools

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
