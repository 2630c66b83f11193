# syntax=docker/dockerfile:1
# The experiment's three images, one final stage each: build with `--target admin|producer|consumer`.
# `make images` drives it (scripts/images.sh); docs/images.md lists the options.
#
# Build arguments:
#   BINARIES    build (default): compile the static binaries in the builder stage below.
#               host: take the ones `make build` left in target/x86_64-unknown-linux-musl/release/
#               (linux/amd64 only), for machines that cannot pull the Rust image. Both build them the
#               same way, so the images are the same.
#   BASE_IMAGE  the runtime base, distroless static as non-root by default. Offline, scripts/images.sh
#               makes an equivalent, localhost/distroless-static:nonroot (images/distroless-static/).
#   RUST_IMAGE  the builder's image.
ARG RUST_IMAGE=docker.io/library/rust:1.95-slim-bookworm
ARG BASE_IMAGE=gcr.io/distroless/static-debian12:nonroot
ARG BINARIES=build

# ---- builder: static musl release binaries, dependencies in their own layer ----
FROM ${RUST_IMAGE} AS builder
# musl-gcc compiles the C in the admin's and consumer's compression codecs (lz4, zstd). DL3008
# (pin apt versions) ignored: the pinned Rust image fixes the Debian release, and a pinned package
# version vanishes from the mirror at its next security update, breaking the build.
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends musl-tools \
 && rm -rf /var/lib/apt/lists/*
# The builder runs on the platform being built (emulated, for another architecture), so its own
# machine names the musl target: x86_64-unknown-linux-musl or aarch64-unknown-linux-musl.
ENV CC_x86_64_unknown_linux_musl=musl-gcc \
    CC_aarch64_unknown_linux_musl=musl-gcc
RUN triple="$(uname -m)-unknown-linux-musl" \
 && rustup target add "$triple" \
 && echo "$triple" > /musl-target
WORKDIR /src

# Dependencies first: only the manifests and placeholder sources, so that this layer (every
# third-party crate compiled) is reused until Cargo.toml or Cargo.lock changes. Cargo needs every
# workspace member's manifest; demo and testkit, which no image compiles, keep their placeholders.
COPY Cargo.toml Cargo.lock ./
COPY admin/Cargo.toml admin/
COPY producer/Cargo.toml producer/
COPY consumer/Cargo.toml consumer/
COPY demo/Cargo.toml demo/
COPY group/Cargo.toml group/
COPY lag/Cargo.toml lag/
COPY runtime/Cargo.toml runtime/
COPY testkit/Cargo.toml testkit/
# The producer is built alone, in both steps: built together with the others, cargo would unify
# rskafka's features and give it the compression codecs it leaves out on purpose (as `make build`).
RUN for crate in admin producer consumer demo group lag runtime testkit; do \
      mkdir -p "$crate/src" && touch "$crate/src/lib.rs"; \
    done \
 && for bin in admin producer consumer demo; do echo 'fn main() {}' > "$bin/src/main.rs"; done \
 && triple="$(cat /musl-target)" \
 && cargo build --release --locked --target "$triple" -p producer \
 && cargo build --release --locked --target "$triple" -p admin -p consumer \
 && rm -rf admin producer consumer group lag runtime

COPY admin/ admin/
COPY producer/ producer/
COPY consumer/ consumer/
COPY group/ group/
COPY lag/ lag/
COPY runtime/ runtime/
# COPY keeps the files' own modification times, which can be older than the placeholders' build:
# touch them so cargo rebuilds our crates instead of shipping `fn main() {}`.
RUN find admin producer consumer group lag runtime -type f -exec touch {} + \
 && triple="$(cat /musl-target)" \
 && cargo build --release --locked --target "$triple" -p producer \
 && cargo build --release --locked --target "$triple" -p admin -p consumer \
 && mkdir /out \
 && for bin in admin producer consumer; do cp "target/$triple/release/$bin" /out/; done

# ---- where the binaries come from: BINARIES=build or BINARIES=host ----
FROM scratch AS build
COPY --from=builder /out/ /

FROM scratch AS host
COPY target/x86_64-unknown-linux-musl/release/admin \
     target/x86_64-unknown-linux-musl/release/producer \
     target/x86_64-unknown-linux-musl/release/consumer /

# `COPY --from` does not expand build arguments; FROM does, so this stage picks one of the two.
FROM ${BINARIES} AS binaries

# ---- the images: one static binary on the base, as uid 65532, the binary as PID 1 ----
FROM ${BASE_IMAGE} AS runtime
ARG BASE_IMAGE
ARG VERSION=dev
ARG REVISION=unknown
LABEL org.opencontainers.image.vendor="kafka-lag-lab" \
      org.opencontainers.image.licenses="MIT OR Apache-2.0" \
      org.opencontainers.image.version="${VERSION}" \
      org.opencontainers.image.revision="${REVISION}" \
      org.opencontainers.image.base.name="${BASE_IMAGE}"
USER 65532:65532

FROM runtime AS admin
LABEL org.opencontainers.image.title="kafka-lag-lab admin" \
      org.opencontainers.image.description="admin create-topic (the idempotent topic creator) and admin lag (the lag inspector)"
COPY --from=binaries /admin /usr/local/bin/admin
ENTRYPOINT ["/usr/local/bin/admin"]

FROM runtime AS producer
LABEL org.opencontainers.image.title="kafka-lag-lab producer" \
      org.opencontainers.image.description="One JSON message per interval, acknowledged before the next, spread over all partitions"
COPY --from=binaries /producer /usr/local/bin/producer
# METRICS_ADDR: /metrics, /healthz, /readyz
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/producer"]

FROM runtime AS consumer
LABEL org.opencontainers.image.title="kafka-lag-lab consumer" \
      org.opencontainers.image.description="A consumer-group member printing every message of the topic, like the seed's consumer"
COPY --from=binaries /consumer /usr/local/bin/consumer
# METRICS_ADDR: /metrics, /healthz, /readyz
EXPOSE 9090
ENTRYPOINT ["/usr/local/bin/consumer"]
