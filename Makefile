# kafka-lag-lab. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MUSL_TARGET := x86_64-unknown-linux-musl
BINARIES    := admin producer consumer
# Where cargo writes: CARGO_TARGET_DIR, a target-dir in .cargo/config.toml, or target/. Cargo says
# (absolute, whichever it is); asked only by the targets that use it. $(1): cargo's arguments.
cargo_target_dir = $(or $(shell cargo metadata --format-version 1 --no-deps $(1) 2>/dev/null \
  | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'),$(or $(CARGO_TARGET_DIR),target))
TARGET_DIR   = $(call cargo_target_dir,)
RELEASE_DIR  = $(TARGET_DIR)/$(MUSL_TARGET)/release

# musl-gcc (Debian's musl-tools) compiles the C in the consumer's and admin's compression codecs.
export CC_x86_64_unknown_linux_musl ?= musl-gcc

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install what the tests need: Apache Kafka's jars (cached), the Python clients, the manifest checkers
	@./scripts/ensure-kafka.sh >/dev/null
	@[ "$${TEST_BROKER:-kafka}" != nisshi ] || ./scripts/ensure-broker.sh >/dev/null
	@./scripts/ensure-python-clients.sh
	@./scripts/ensure-manifest-tools.sh >/dev/null

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test
test: deps lint ## lint, then unit and integration tests on Apache Kafka (TEST_BROKER=nisshi: on nisshi), then the manifests
	cargo test --workspace --all-targets --locked
	./scripts/check-manifests.sh
	$${PYTHON:-python3} -m unittest discover -s tests/k8s -v

# The 3.x line many clusters still run: the group, interop, failover and lag tests on its newest release.
KAFKA_3 ?= 3.9.2

.PHONY: test-kafka3
test-kafka3: ## the classic-protocol real-broker tests on Apache Kafka 3.9 (KAFKA_3=3.9.2)
	@KAFKA_VERSION=$(KAFKA_3) ./scripts/ensure-kafka.sh >/dev/null
	KAFKA_VERSION=$(KAFKA_3) cargo test --locked -p consumer -p admin \
	  --test interop --test basics --test scaling --test failover --test lag

.PHONY: build
build: ## static (musl) release binaries in target/x86_64-unknown-linux-musl/release (or under CARGO_TARGET_DIR)
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	@command -v musl-gcc >/dev/null || { echo "musl-gcc not found: apt-get install musl-tools"; exit 1; }
	@# Separate invocations: built together, cargo would unify rskafka's features and give the
	@# producer the compression codecs it deliberately leaves out.
	cargo build --release --locked --target $(MUSL_TARGET) -p producer
	cargo build --release --locked --target $(MUSL_TARGET) -p admin -p consumer
	@./scripts/check-static.sh $(addprefix $(RELEASE_DIR)/,$(BINARIES))

# Images $(IMAGE_REGISTRY)/{admin,producer,consumer}:$(TAG); the defaults are the names k8s/ uses.
# scripts/images.sh documents IMAGE_ENGINE, IMAGE_BINARIES, IMAGE_BASE and IMAGE_MAX_BYTES.
IMAGE_REGISTRY ?= kafka-lag-lab
TAG            ?= dev
PLATFORMS      ?=
IMAGE_ENV       = IMAGE_REGISTRY=$(IMAGE_REGISTRY) TAG=$(TAG) PLATFORMS=$(PLATFORMS)

.PHONY: images
images: ## images kafka-lag-lab/{admin,producer,consumer}:dev (IMAGE_REGISTRY, TAG): buildx, else podman
	$(IMAGE_ENV) ./scripts/images.sh build

.PHONY: images-check
images-check: ## build the images offline (podman, host binaries, local base), run, measure and lint them; run admin against a SASL_SSL broker (root)
	$(IMAGE_ENV) IMAGE_ENGINE=podman IMAGE_BINARIES=host IMAGE_BASE=local ./scripts/images.sh build check

.PHONY: push
push: ## push the images to IMAGE_REGISTRY (PLATFORMS=linux/amd64,linux/arm64: multi-arch, buildx)
	$(IMAGE_ENV) ./scripts/images.sh push

# bench/ is its own Cargo workspace (rust-rdkafka compiles librdkafka), built only here.
.PHONY: bench-build
bench-build: deps build
	cargo build --release --locked --manifest-path bench/Cargo.toml

BENCH_BIN = $(call cargo_target_dir,--manifest-path bench/Cargo.toml)/release/bench

.PHONY: bench
bench: bench-build ## ours vs the Java client, rust-rdkafka, confluent-kafka, kafka-python on Apache Kafka; writes BENCHMARKS.md (about 18 min, 7 of them the lag phase)
	OURS_BIN_DIR=$(RELEASE_DIR) $(BENCH_BIN)

.PHONY: bench-smoke
bench-smoke: bench-build ## the benchmark harness at tiny sizes (figures meaningless), into bench/target/
	BENCH_SMOKE=1 OURS_BIN_DIR=$(RELEASE_DIR) $(BENCH_BIN)

.PHONY: demo
demo: ## the experiment on this machine: 200 producers, 1 consumer, then 9, live (QUICK=1: the short run; DEMO_BROKER=kafka-cluster|nisshi; AUTOSCALE=1: our autoscaling rule against KEDA's)
	@if [ -z "$$KAFKA_BROKERS" ]; then \
	  if [ "$$DEMO_BROKER" = nisshi ]; then ./scripts/ensure-broker.sh >/dev/null; \
	  else ./scripts/ensure-kafka.sh >/dev/null; fi; \
	fi
	cargo build --profile demo --locked -p demo -p producer -p consumer
	$(TARGET_DIR)/demo/demo

# Apache Kafka (the release pinned in localkafka/pom.xml) on loopback, in the foreground until Ctrl-C.
# KAFKA_DATA=dir keeps the data across runs; KAFKA_PORT=p fixes the first client port.
KAFKA_ARGS = $(if $(KAFKA_DATA),--data $(KAFKA_DATA)) $(if $(KAFKA_PORT),--port $(KAFKA_PORT))

.PHONY: kafka-jars
kafka-jars: ## fetch and cache the pinned Apache Kafka release's jars from Maven Central (once)
	@./scripts/ensure-kafka.sh

.PHONY: kafka
kafka: kafka-jars ## run a single-node Apache Kafka on 127.0.0.1 and print its bootstrap address (Ctrl-C stops it)
	@cargo build --quiet --locked -p localkafka
	@$(TARGET_DIR)/debug/localkafka --nodes 1 $(KAFKA_ARGS)

.PHONY: kafka-cluster
kafka-cluster: kafka-jars ## run a 3-broker Apache Kafka cluster (KRaft, combined nodes) on 127.0.0.1
	@cargo build --quiet --locked -p localkafka
	@$(TARGET_DIR)/debug/localkafka --nodes 3 $(KAFKA_ARGS)

.PHONY: broker
broker: ## build and cache nisshi, the second broker (TEST_BROKER=nisshi, DEMO_BROKER=nisshi; once, with Rust 1.96)
	@./scripts/ensure-broker.sh

.PHONY: clean
clean: ## remove build output
	cargo clean

# The audited chaos run (docs/chaos.md): the real binaries, built like the demo's, on a 3-broker
# Apache Kafka cluster. CHAOS_DURATION (seconds) and CHAOS_SEED replay a run; output in target/chaos/.
CHAOS_DURATION ?= 600
CHAOS_SHORT    ?= 120

.PHONY: chaos-build
chaos-build:
	@./scripts/ensure-kafka.sh >/dev/null
	@./scripts/ensure-python-clients.sh
	cargo build --profile demo --locked -p chaos -p producer -p consumer

.PHONY: chaos
chaos: chaos-build ## audited chaos run on a 3-broker cluster: kills, scaling, broker restarts, a network cut, poison (CHAOS_DURATION=600, CHAOS_SEED)
	CHAOS_DIR=$(TARGET_DIR)/chaos CHAOS_DURATION=$(CHAOS_DURATION) $(TARGET_DIR)/demo/chaos

.PHONY: chaos-short
chaos-short: chaos-build ## the same audit on a 120 s schedule, fewer consumer faults; takes 4-5 min, as broker restarts and the drain add to it (measured: 4 min 20 s with a rebuild) (CHAOS_SEED)
	CHAOS_DIR=$(TARGET_DIR)/chaos CHAOS_DURATION=$(CHAOS_SHORT) $(TARGET_DIR)/demo/chaos

# Fuzzing (docs/fuzzing.md): cargo-fuzz on nightly with libFuzzer and AddressSanitizer, fuzz/ being
# its own workspace. Each target starts from its committed seeds (fuzz/corpus/<target>, recorded from
# Apache Kafka) and writes what it finds to target/fuzz-corpus/<target>, never to the seeds. A crash
# leaves its input in fuzz/artifacts/<target>/.
FUZZ_TARGETS ?= consumer_protocol_subscription consumer_protocol_assignment response record_batches
FUZZ_RUNS    ?= 20000
FUZZ_SECONDS ?= 300
# One malloc over 128 MiB anywhere (C decompressors included) fails the run, whatever the targets'
# own allocation bound; an input taking over 10 s is a hang; inputs may be as long as the largest
# seed (or 4096 bytes) from the first run, not grown slowly from short ones.
FUZZ_FLAGS    = -malloc_limit_mb=128 -timeout=10 -len_control=0
FUZZ_CORPUS   = $(TARGET_DIR)/fuzz-corpus

.PHONY: fuzz-tools
fuzz-tools:
	@rustup toolchain list | grep -q '^nightly' || rustup toolchain install nightly --profile minimal
	@command -v cargo-fuzz >/dev/null || cargo install cargo-fuzz --locked

# $(1): cargo-fuzz's build options, $(2): the libFuzzer options bounding each target's run. The full
# output goes to target/fuzz-corpus/<target>.log; its summary lines are printed, its end on a failure.
define fuzz_each
	cd fuzz && cargo +nightly fuzz build $(1)
	@for t in $(FUZZ_TARGETS); do \
	  mkdir -p $(FUZZ_CORPUS)/$$t; log=$(FUZZ_CORPUS)/$$t.log; start=$$(date +%s); \
	  (cd fuzz && cargo +nightly fuzz run $(1) $$t $(FUZZ_CORPUS)/$$t corpus/$$t -- $(2) $(FUZZ_FLAGS)) >$$log 2>&1; \
	  rc=$$?; grep -E '^(#[0-9]+[[:space:]]+(INITED|DONE)|Done [0-9]+ runs)' $$log; \
	  echo "fuzz $$t: exit $$rc after $$(( $$(date +%s) - start )) s"; \
	  [ $$rc -eq 0 ] || { tail -n 60 $$log; exit $$rc; }; \
	done
endef

# The smoke run builds in dev mode (2 minutes on 2 cores against 12 for a release build with the
# sanitizer; fuzz/Cargo.toml optimizes the codec crates); the long runs build in release.
.PHONY: fuzz-smoke
fuzz-smoke: fuzz-tools ## every fuzz target for FUZZ_RUNS=20000 inputs (at most 60 s each) from the committed corpus, as CI runs it (about 3.5 min on 2 cores); nightly and cargo-fuzz installed if missing
	$(call fuzz_each,--dev,-runs=$(FUZZ_RUNS) -max_total_time=60)

.PHONY: fuzz
fuzz: fuzz-tools ## every fuzz target (FUZZ_TARGETS) for FUZZ_SECONDS=300 each, optimized, keeping what it finds in target/fuzz-corpus/
	$(call fuzz_each,,-max_total_time=$(FUZZ_SECONDS))
