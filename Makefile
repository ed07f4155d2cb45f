# concbench: build, test, lint, fuzz, bench. `make help` lists the targets.
GO       ?= go
BIN      := bin
CMDS     := server loadgen
FUZZTIME ?= 30s

.PHONY: all build test lint fuzz bench bench-full clean help

all: build

help:
	@echo "make build   - build $(CMDS) into $(BIN)/"
	@echo "make test    - go vet, then go test -race over every package (fuzz seeds only)"
	@echo "make lint    - gofmt check and go vet"
	@echo "make fuzz    - run each fuzz target for FUZZTIME ($(FUZZTIME))"
	@echo "make bench   - build everything and run the default comparison"

build:
	@echo ">> building $(CMDS) into $(BIN)/"
	@mkdir -p $(BIN)
	@for c in $(CMDS); do $(GO) build -o $(BIN)/$$c ./cmd/$$c || exit 1; done

test:
	@echo ">> go vet"
	$(GO) vet ./...
	@echo ">> go test -race (fuzz targets run their seed corpora)"
	$(GO) test -race -count=1 -timeout 12m ./...
	@echo ">> benchmarks, one quick pass to keep them compiling and honest"
	$(GO) test -run '^$$' -bench . -benchtime 100ms ./...

lint:
	@echo ">> gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo ">> go vet"
	$(GO) vet ./...

fuzz:
	@echo ">> fuzzing each target for $(FUZZTIME)"
	$(GO) test -run '^$$' -fuzz '^FuzzRPCFeed$$' -fuzztime $(FUZZTIME) ./internal/proto/

bench: build
	@echo ">> bench: the comparison matrix is not yet implemented (issue 6: bench, after issue 5: loadgen)."
	@echo "   The servers are built in $(BIN)/; see README.md for running one by hand."
	@exit 1

bench-full: bench

clean:
	rm -rf $(BIN)
