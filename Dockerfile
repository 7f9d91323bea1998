# syntax=docker/dockerfile:1
# Loom's image: built in a full Rust image, run in a slim Debian one as an ordinary user,
# with bubblewrap for the sandbox agents' commands run in (it needs user namespaces: see
# compose.yaml and docs/DEPLOYMENT.md), git and ssh for the projects' repositories and curl
# for the health check. No PostgreSQL inside: the image is
# meant for a database of its own (compose.yaml, or a managed one); see docs/DEPLOYMENT.md.

FROM rust:1.95-bookworm AS build
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      libssl-dev pkg-config \
 && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY . .
# The registry and the target directory are cached between builds; the binary is copied
# out of the cache mount so the next stage can take it.
RUN --mount=type=cache,target=/usr/local/cargo/registry \
    --mount=type=cache,target=/src/target \
    cargo build --release --locked --bin loom \
 && install -m 0755 target/release/loom /usr/local/bin/loom

FROM debian:bookworm-slim
RUN apt-get update -qq \
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
      ca-certificates curl git openssh-client libssl3 bubblewrap util-linux \
 && rm -rf /var/lib/apt/lists/* \
 && useradd --system --uid 10001 --home-dir /var/lib/loom --create-home --shell /usr/sbin/nologin loom
COPY --from=build /usr/local/bin/loom /usr/local/bin/loom
COPY personas /usr/share/loom/personas
ENV LOOM_BIND=0.0.0.0:8080 \
    LOOM_DATA_DIR=/var/lib/loom/data \
    LOOM_PERSONAS_DIR=/usr/share/loom/personas \
    LOOM_LOG_FORMAT=json
USER loom
WORKDIR /var/lib/loom
VOLUME ["/var/lib/loom"]
EXPOSE 8080
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=6 \
  CMD curl -fsS http://127.0.0.1:8080/readyz || exit 1
# SIGTERM is handled by Loom: it stops accepting, finishes what is in flight, then exits.
STOPSIGNAL SIGTERM
ENTRYPOINT ["loom"]
CMD ["serve"]
