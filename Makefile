# kafka-lag-lab. `make help` lists the targets.
SHELL := /bin/bash
.DEFAULT_GOAL := help

MUSL_TARGET := x86_64-unknown-linux-musl
RELEASE_DIR := target/$(MUSL_TARGET)/release
BINARIES    := admin producer consumer

# musl-gcc (Debian's musl-tools) compiles the C in the consumer's and admin's compression codecs.
export CC_x86_64_unknown_linux_musl ?= musl-gcc

.PHONY: help
help: ## list the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

.PHONY: deps
deps: ## install what the tests need: the nisshi broker (built once) and the Python clients
	@./scripts/ensure-broker.sh >/dev/null
	@./scripts/ensure-python-clients.sh

.PHONY: lint
lint: ## cargo fmt --check and clippy with warnings denied
	cargo fmt --all --check
	cargo clippy --workspace --all-targets --locked -- -D warnings

.PHONY: test
test: deps lint ## lint, then unit and integration tests against a real broker, then the manifests
	cargo test --workspace --all-targets --locked
	kubectl kustomize k8s >/dev/null
	$${PYTHON:-python3} -m unittest discover -s tests/k8s -v

.PHONY: build
build: ## static (musl) release binaries in target/x86_64-unknown-linux-musl/release
	@rustup target list --installed | grep -qx $(MUSL_TARGET) || rustup target add $(MUSL_TARGET)
	@command -v musl-gcc >/dev/null || { echo "musl-gcc not found: apt-get install musl-tools"; exit 1; }
	@# Separate invocations: built together, cargo would unify rskafka's features and give the
	@# producer the compression codecs it deliberately leaves out.
	cargo build --release --locked --target $(MUSL_TARGET) -p producer
	cargo build --release --locked --target $(MUSL_TARGET) -p admin -p consumer
	@./scripts/check-static.sh $(addprefix $(RELEASE_DIR)/,$(BINARIES))

.PHONY: broker
broker: ## build and cache the nisshi test broker (once, about 12 minutes)
	@./scripts/ensure-broker.sh

.PHONY: clean
clean: ## remove build output
	cargo clean
