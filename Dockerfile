# Optio's image: the server (API, reconciler, runtime) and, as the agent image, what an agent pod runs.
#
#   docker build -t optio .                                   # server only
#   docker build -t optio-agents --build-arg VENDOR_CLIS=1 .  # plus the vendor agent CLIs (Node.js)
#
# Multi-stage: the wheel is built and installed into a virtualenv in a build stage; the runtime stage copies the
# virtualenv only, and runs as an unprivileged user (uid 10001) with its data under /var/lib/optio.
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS build
WORKDIR /src
RUN python -m venv /opt/optio
COPY pyproject.toml README.md ./
COPY src ./src
RUN /opt/optio/bin/pip install --no-cache-dir ".[postgres,kubernetes]"

FROM ${PYTHON_IMAGE} AS vendor-clis
ARG VENDOR_CLIS=""
COPY scripts/install-vendor-clis.sh /tmp/install-vendor-clis.sh
RUN mkdir -p /opt/vendor-clis \
 && if [ -n "$VENDOR_CLIS" ]; then \
      apt-get update && apt-get install -y --no-install-recommends nodejs npm ca-certificates \
      && bash /tmp/install-vendor-clis.sh /opt/vendor-clis; \
    fi

FROM ${PYTHON_IMAGE}
ARG VENDOR_CLIS=""
# git for worktrees and the pod checkout, bubblewrap for the local sandbox, Node.js only with the vendor CLIs.
RUN apt-get update \
 && apt-get install -y --no-install-recommends git bubblewrap ca-certificates tini \
 && if [ -n "$VENDOR_CLIS" ]; then apt-get install -y --no-install-recommends nodejs; fi \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --uid 10001 --user-group --home-dir /home/optio --create-home optio \
 && mkdir -p /var/lib/optio && chown 10001:10001 /var/lib/optio
COPY --from=build /opt/optio /opt/optio
COPY --from=vendor-clis /opt/vendor-clis /opt/vendor-clis
ENV PATH=/opt/optio/bin:/opt/vendor-clis/node_modules/.bin:$PATH \
    OPTIO_DATA_DIR=/var/lib/optio \
    OPTIO_HOST=0.0.0.0 \
    OPTIO_PORT=8470 \
    PYTHONUNBUFFERED=1
USER 10001:10001
WORKDIR /home/optio
EXPOSE 8470
ENTRYPOINT ["/usr/bin/tini", "--", "optio"]
CMD ["serve"]
