# cxbridge — make targets. `make run` and `make test` are all a fresh machine needs.
GO          ?= go
VERSION     ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS     := -s -w -X github.com/cxbridge/cxbridge/internal/version.Version=$(VERSION)
STATICCHECK := honnef.co/go/tools/cmd/staticcheck@v0.8.2
BENCHTIME   ?= 2s
COUNT       ?= 5

.PHONY: build run test bench lint fmt

build: ## build bin/cxbridge
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o bin/cxbridge ./cmd/cxbridge

run: build ## run the worker on the embedded stack (broker + CXone simulator + producer)
	./bin/cxbridge dev

test: ## vet and run every test with the race detector
	$(GO) vet ./...
	$(GO) test -race -count=1 ./...

bench: ## run the benchmarks (figures go to docs/BENCHMARKS.md)
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) -count $(COUNT) ./...

lint: ## gofmt check, vet, staticcheck (pinned)
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run $(STATICCHECK) ./...

fmt:
	gofmt -w $$(git ls-files '*.go')
