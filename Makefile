# cxbridge — make targets. `make run` and `make test` are all a fresh machine needs.
GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/cxbridge/cxbridge/internal/version.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHTIME   ?= 2s
COUNT       ?= 5
FUZZTIME    ?= 30s
# KAFKA=1: run chaos and bench-e2e against a real Apache Kafka broker that
# scripts/with-kafka.sh starts and stops (Java and Maven needed).
KAFKA       ?=
WITH_KAFKA   = $(if $(KAFKA),GO=$(GO) bash scripts/with-kafka.sh,)

.PHONY: build run test test-short bench bench-e2e bench-quota lint fmt

build: ## build bin/cxbridge
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cxbridge ./cmd/cxbridge

run: build ## run the worker on the embedded stack (broker + CXone simulator + producer)
	./bin/cxbridge dev

test: ## vet and run every test with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 -timeout 20m ./...

test-short: ## the fast inner loop (about a minute on 2 cores): go test -short ./... (the integration, process, chaos and deploy-build tests skip; make test runs them)
	$(GO) test -short -count=1 ./...

bench: ## run the benchmarks (figures go to docs/BENCHMARKS.md), the end-to-end ones too
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(COUNT) $$($(GO) list ./... | grep -v /internal/bench)
	$(MAKE) bench-e2e

bench-e2e: ## the end-to-end benchmarks: worker process + embedded broker (KAFKA=1: Apache Kafka) + simulator (several minutes)
	$(WITH_KAFKA) $(GO) test -run '^$$' -bench EndToEnd -benchtime 1x -count 3 -timeout 60m ./internal/bench/

bench-quota: ## 3 worker processes against a CXone quota of 500/s, no --cxone-rate-limit: share of the quota used, share of 429s (~10 min; docs/RELIABILITY.md)
	$(GO) test -run '^$$' -bench Quota -benchtime 1x -count 5 -timeout 60m ./internal/bench/

.PHONY: test-kafka
test-kafka: ## the integration, process and chaos tests against a real Apache Kafka 4.4 broker (scripts/kafka.sh; installs Java and Maven when absent)
	GO=$(GO) bash scripts/test-kafka.sh

.PHONY: test-alerts
test-alerts: ## promtool: check the alert rules (compose and Kubernetes) and run their unit tests, deploy/prometheus/*.test.yml (installs Debian's prometheus package when absent)
	GO=$(GO) bash scripts/test-alerts.sh

.PHONY: fuzz
fuzz: ## run every Go fuzz target for FUZZTIME each (default 30s); crashers stay in testdata/fuzz/
	FUZZTIME=$(FUZZTIME) GO=$(GO) bash scripts/fuzz.sh

.PHONY: chaos
CHAOS_REPORT ?= $(CURDIR)/chaos-report.md
CHAOS_RUNS   ?= 1
chaos: ## the fault-injection suite at full size (100,000 records a scenario, ~17 min; KAFKA=1: on Apache Kafka); table in $(CHAOS_REPORT) for docs/RELIABILITY.md
	$(WITH_KAFKA) $(GO) test -count=1 -v -run '^TestChaos$$' -timeout 120m ./internal/chaos/ -args -chaos.size=full -chaos.runs=$(CHAOS_RUNS) -chaos.report=$(abspath $(CHAOS_REPORT))

lint: ## gofmt check, vet, staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')

.PHONY: test-browser
test-browser: ## render the status page in headless Chromium against cxbridge dev
	bash scripts/test-browser.sh

# ---- the compose stack (docker-compose.yml, deploy/) ---------------------------
# Redpanda, the CXone simulator, 3 workers, a producer, Prometheus and Grafana.
# `docker compose` (v2) when the Docker CLI has it, else docker-compose (v1,
# with --compatibility so deploy.replicas is honoured).
COMPOSE_PROJECT ?= cxbridge
COMPOSE         ?= $(shell if docker compose version >/dev/null 2>&1; then echo 'docker compose'; else echo 'docker-compose --compatibility'; fi)
COMPOSE_FLAGS    = -p $(COMPOSE_PROJECT) -f docker-compose.yml

.PHONY: compose-up compose-down compose-config

compose-config: ## check docker-compose.yml (installs Debian's docker-compose if absent; needs no Docker engine)
	@command -v docker-compose >/dev/null || (apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y docker-compose)
	CXBRIDGE_VERSION=$(VERSION) docker-compose $(COMPOSE_FLAGS) config -q

compose-up: ## build the image and start the compose stack: Grafana :3000, Prometheus :9090, Console :8080, simulator :8081
	CXBRIDGE_VERSION=$(VERSION) $(COMPOSE) $(COMPOSE_FLAGS) up -d --build

compose-down: ## stop the compose stack and remove its containers and data
	CXBRIDGE_VERSION=$(VERSION) $(COMPOSE) $(COMPOSE_FLAGS) down -v --remove-orphans
