# syntax=docker/dockerfile:1
#
# ichnaea in a container: one image for every role.
#
#   docker build -t ichnaea .
#   docker run --rm -p 8000:8000 -v ichnaea-data:/var/lib/ichnaea ichnaea          # embedded
#   docker run ... -e ICHNAEA_DATABASE_URL=postgres://... -e ICHNAEA_REDIS_URL=redis://... \
#       ichnaea serve --roles web                                                    # cluster
#
# compose.yaml runs the cluster shape (PostgreSQL, Redis, web, worker, scheduler);
# deploy/README.md explains both.

ARG RUST_VERSION=1.95
ARG DEBIAN_RELEASE=trixie

# ---------------------------------------------------------------------------
# Build: the official Rust image (it has the C compiler that the bundled
# SQLite, mimalloc and ring need). Cargo.lock is used as it is (--locked).
FROM rust:${RUST_VERSION}-${DEBIAN_RELEASE} AS build

# Shown by /__version__ when set: docker build --build-arg ICHNAEA_GIT_COMMIT=$(git rev-parse HEAD)
ARG ICHNAEA_GIT_COMMIT=
ARG ICHNAEA_BUILD=

WORKDIR /src
COPY . .
# The registry and the target directory are build caches, so a rebuild after a
# source change compiles only the workspace; the binary is copied out of the
# cache in the same step.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked -p ichnaea \
    && install -m 0755 target/release/ichnaea /usr/local/bin/ichnaea

# ---------------------------------------------------------------------------
# Runtime: Debian slim of the same release as the build image (same glibc).
# ca-certificates: HTTPS to S3, geosubmit export targets and fallback
# providers (rustls verifies against the system's roots).
FROM debian:${DEBIAN_RELEASE}-slim AS runtime

# Unpinned on purpose: the distribution's current security updates.
# hadolint ignore=DL3008
RUN apt-get update \
    && apt-get install -y --no-install-recommends ca-certificates \
    && rm -rf /var/lib/apt/lists/*

RUN groupadd --system --gid 10001 ichnaea \
    && useradd --system --uid 10001 --gid ichnaea --home-dir /var/lib/ichnaea \
        --no-create-home --shell /usr/sbin/nologin ichnaea \
    && install -d -o ichnaea -g ichnaea -m 0750 /var/lib/ichnaea \
    && install -d -o ichnaea -g ichnaea -m 0755 /srv/ichnaea

COPY --from=build /usr/local/bin/ichnaea /usr/local/bin/ichnaea
COPY deploy/docker/healthcheck /usr/local/bin/ichnaea-healthcheck

# In a container the service must listen on every interface; metrics stay on
# their own port (publish it only to the monitoring network). Logs are JSON
# lines on stderr.
ENV ICHNAEA_DATA_DIR=/var/lib/ichnaea \
    ICHNAEA_LISTEN=0.0.0.0:8000 \
    ICHNAEA_METRICS_LISTEN=0.0.0.0:8001 \
    ICHNAEA_LOG_FORMAT=json

USER 10001:10001
WORKDIR /var/lib/ichnaea
# Embedded mode keeps its SQLite database here; in a cluster it holds only the
# tile cache and the render working directory. /srv/ichnaea (owned by the
# service user, empty) is where compose.yaml mounts the volume that several
# containers share for the public cell export and the coverage tiles.
VOLUME ["/var/lib/ichnaea"]
EXPOSE 8000 8001

# /__lbheartbeat__ says the process is alive (it does not check the database:
# that is /__heartbeat__, for load balancers). The worker and scheduler roles
# override this with `ichnaea-healthcheck 8001 /metrics` (see compose.yaml).
HEALTHCHECK --interval=15s --timeout=5s --start-period=60s --retries=3 \
    CMD ["/usr/local/bin/ichnaea-healthcheck"]

# serve handles SIGTERM itself (in-flight requests and batches finish within
# shutdown_timeout, 30 s by default), also as PID 1.
STOPSIGNAL SIGTERM
ENTRYPOINT ["/usr/local/bin/ichnaea"]
CMD ["serve"]
