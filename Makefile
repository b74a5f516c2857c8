# The verbs of Livecart. Each one installs what it needs on a fresh machine (Python 3.11+,
# Java 17 + Maven for the test broker, Go for buf, helm and Centrifugo). Nothing fetched or built
# is committed.

SHELL := /bin/bash
export UV_PYTHON_DOWNLOADS := never
export LIVECART_CACHE ?= $(HOME)/.cache/livecart
TOOLS_BIN := $(LIVECART_CACHE)/bin
export PATH := $(TOOLS_BIN):$(HOME)/.local/bin:$(PATH)
# gRPC's fork handlers complain when subprocesses (pg_ctl) start beside its threads; we never fork gRPC.
export GRPC_ENABLE_FORK_SUPPORT := false
BUF_VERSION := v1.75.0
HELM_VERSION := v3.22.0
CENTRIFUGO_VERSION := v6.9.1
UV = $(shell command -v uv 2>/dev/null || echo python3 -m uv)
SERVICES := control ingest relay transcode chat commerce assistant analytics
MYPY_PACKAGES := -p livecart_core -p livecart_media -p livecart_allinone $(foreach s,$(SERVICES),-p livecart_$(s))

.PHONY: dev test bench lint protos charts sync uv tools kafka centrifugo browsers netlab janus promtool clean

## dev: every service in one process on embedded defaults (Postgres, in-process bus); prints the URLs
dev: sync
	$(UV) run --frozen python -m livecart_allinone

## test: lint, then the whole suite against real Kafka, Postgres, gRPC and HTTP
test: lint kafka browsers netlab promtool
	$(UV) run --frozen pytest

## bench: every benchmark; each prints `name=value unit` lines
bench: sync kafka centrifugo netlab janus
	$(UV) run --frozen python bench/bus.py
	$(UV) run --frozen python bench/startup.py
	$(UV) run --frozen python bench/flash_sale.py
	$(UV) run --frozen python bench/chat.py
	$(UV) run --frozen python bench/rtp_ops.py
	$(UV) run --frozen python bench/relay_forward.py
	$(UV) run --frozen python bench/media.py
	$(UV) run --frozen python bench/media_loss.py
	$(UV) run --frozen python bench/chaos.py

## lint: uv.lock matches the pyprojects, ruff (style), mypy --strict (types), buf (protobuf)
lint: sync tools
	$(UV) lock --check
	$(UV) run --frozen ruff check .
	$(UV) run --frozen ruff format --check .
	$(UV) run --frozen mypy $(MYPY_PACKAGES)
	cd protos && buf lint

## protos: regenerate services/core/livecart/ from protos/
protos: sync
	$(UV) run --frozen python protos/generate.py

## charts: helm lint both charts, and render the media edge for every region's values file
charts: tools
	helm dependency build charts/livecart >/dev/null
	helm dependency build charts/livecart-edge >/dev/null
	helm lint --strict charts/livecart charts/livecart-edge
	for values in charts/livecart-edge/values-*.yaml; do \
	  helm template livecart-edge charts/livecart-edge -f $$values >/dev/null || exit 1; \
	done

uv:
	@command -v uv >/dev/null 2>&1 || python3 -m uv --version >/dev/null 2>&1 || python3 -m pip install --quiet uv

sync: uv
	$(UV) sync --all-packages --frozen --quiet

## tools: buf (protobuf lint) and helm (charts) built with `go install` into $(TOOLS_BIN)
tools:
	@test -x $(TOOLS_BIN)/buf && $(TOOLS_BIN)/buf --version | grep -q $(BUF_VERSION:v%=%) \
	  || GOBIN=$(TOOLS_BIN) go install github.com/bufbuild/buf/cmd/buf@$(BUF_VERSION)
	@# A `go install`ed helm reports only "v3.22"; the module version in the binary is exact.
	@test -x $(TOOLS_BIN)/helm && go version -m $(TOOLS_BIN)/helm | grep -q 'helm.sh/helm/v3[[:space:]]$(HELM_VERSION)[[:space:]]' \
	  || GOBIN=$(TOOLS_BIN) go install helm.sh/helm/v3/cmd/helm@$(HELM_VERSION)

## centrifugo: the Centrifugo server (bench/chat.py's peer) built with `go install` into $(TOOLS_BIN)
centrifugo:
	@# Like helm, a `go install`ed centrifugo reports version 0.0.0; the module version is exact.
	@test -x $(TOOLS_BIN)/centrifugo && go version -m $(TOOLS_BIN)/centrifugo | grep -q 'github.com/centrifugal/centrifugo/v6[[:space:]]$(CENTRIFUGO_VERSION)[[:space:]]' \
	  || GOBIN=$(TOOLS_BIN) go install github.com/centrifugal/centrifugo/v6@$(CENTRIFUGO_VERSION)

# Waits for another apt/dpkg run to finish instead of failing on its lock.
APT_INSTALL := DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends -o DPkg::Lock::Timeout=600

## browsers: Debian's chromium for tests/test_browser_media.py (Playwright drives it; never downloads one)
browsers:
	@test -x /usr/bin/chromium || $(APT_INSTALL) chromium || { apt-get update && $(APT_INSTALL) chromium; }

## netlab: nftables and iproute2 for the network-impairment tests and benches (livecart_core.netlab)
netlab:
	@command -v nft >/dev/null && command -v ip >/dev/null \
	  || $(APT_INSTALL) nftables iproute2 || { apt-get update && $(APT_INSTALL) nftables iproute2; }

## promtool: Debian's prometheus package, for promtool (tests check and unit-test the alert rules)
promtool:
	@command -v promtool >/dev/null || $(APT_INSTALL) prometheus || { apt-get update && $(APT_INSTALL) prometheus; }

## janus: Debian's Janus (bench/media.py's peer: the streaming plugin over its HTTP API)
janus:
	@test -x /usr/bin/janus || $(APT_INSTALL) janus || { apt-get update && $(APT_INSTALL) janus; }

## kafka: Apache Kafka's jars from Maven Central into $(LIVECART_CACHE)
kafka: sync
	@$(UV) run --frozen python -m livecart_core.localinfra.kafka fetch >/dev/null

clean:
	rm -rf .livecart .venv
