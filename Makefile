# concbench: build, test, lint, fuzz, bench. `make help` lists the targets.
GO       ?= go
BIN      := bin
CMDS     := server loadgen bench
FUZZTIME ?= 30s
CC       ?= cc

.PHONY: all build peers test test-short lint fuzz bench bench-full clean help netns-up netns-down pgo

all: build

help:
	@echo "make build   - build $(CMDS) into $(BIN)/"
	@echo "make test    - go vet, then go test -race over every package (fuzz seeds only)"
	@echo "make test-short - go vet, then go test -race -short: the inner loop's tier, long cases skipped (under 90 s)"
	@echo "make lint    - gofmt check and go vet"
	@echo "make fuzz    - run each fuzz target (server: rpc, file, http requests; loadgen: file, http replies) for FUZZTIME ($(FUZZTIME))"
	@echo "make bench   - build everything, run the quick comparison into results/quick, plots/quick"
	@echo "make bench-full - the full matrix into results/full, plots/full (hours)"
	@echo "make pgo     - regenerate cmd/loadgen/default.pgo, the profile go build optimizes loadgen with (scripts/pgo.sh: loadgen -cpuprofile against cepoll)"
	@echo "make netns-up - (root) agent hosts for loadgen -agents on this machine: network namespaces with sshd (scripts/netns.sh up \$$NETNS_FLAGS, e.g. NETNS_FLAGS='-n 3')"
	@echo "make netns-down - (root) remove them (scripts/netns.sh down \$$NETNS_FLAGS)"
	@echo "make deps    - optional packages with apt-get (sudo unless root): liburing-dev and libevent-dev for the peers peer:uring and peer:libevent, nginx-light for peer:nginx, wrk, apache2-utils (ab)"

build: peers
	@echo ">> building $(CMDS) into $(BIN)/"
	@mkdir -p $(BIN)
	@# -buildvcs=auto: results record the git revision even where GOFLAGS turns it off
	@for c in $(CMDS); do $(GO) build -buildvcs=auto -o $(BIN)/$$c ./cmd/$$c || exit 1; done

peers:
	@echo ">> building the C reference peers into $(BIN)/ (cepoll; curing and clibevent where liburing-dev and libevent-dev are installed) and the C client bench calibrates loadgen against ($(BIN)/cclient)"
	@mkdir -p $(BIN)
	$(CC) -O2 -Wall -Wextra -o $(BIN)/cepoll peers/cepoll/cepoll.c
	$(CC) -O2 -Wall -Wextra -o $(BIN)/cclient peers/cclient/cclient.c
	@# A peer whose library is missing is not built; bench then records its cells
	@# as skipped, saying so. make deps installs both.
	@if echo '#include <liburing.h>' | $(CC) -E -x c -o /dev/null - 2>/dev/null; then \
		echo "$(CC) -O2 -Wall -Wextra -o $(BIN)/curing peers/curing/curing.c -luring"; \
		$(CC) -O2 -Wall -Wextra -o $(BIN)/curing peers/curing/curing.c -luring || exit 1; \
	else echo ">> liburing-dev not installed: peer:uring not built (make deps installs it)"; rm -f $(BIN)/curing; fi
	@if echo '#include <event2/event.h>' | $(CC) -E -x c -o /dev/null - 2>/dev/null; then \
		echo "$(CC) -O2 -Wall -Wextra -o $(BIN)/clibevent peers/clibevent/clibevent.c -levent"; \
		$(CC) -O2 -Wall -Wextra -o $(BIN)/clibevent peers/clibevent/clibevent.c -levent || exit 1; \
	else echo ">> libevent-dev not installed: peer:libevent not built (make deps installs it)"; rm -f $(BIN)/clibevent; fi

test:
	@echo ">> go vet"
	$(GO) vet ./...
	@echo ">> go test -race (fuzz targets run their seed corpora)"
	$(GO) test -race -count=1 -timeout 20m ./...
	@echo ">> timing tests, alone on the machine (beside other packages' tests a shared 2-core box cannot keep a service time)"
	CONCBENCH_TIMING_TESTS=1 $(GO) test -race -count=1 -run '^TestSearchMD1$$' ./loadgen/
	CONCBENCH_TIMING_TESTS=1 $(GO) test -race -count=1 -run '^TestSwitchesPerRequest$$' ./loadgen/trial/
	@echo ">> benchmarks, one quick pass to keep them compiling and honest"
	$(GO) test -run '^$$' -bench . -benchtime 100ms ./...

test-short:
	@echo ">> go vet"
	$(GO) vet ./...
	@echo ">> go test -race -short (long cases skipped; make test runs them all)"
	@# -p 4: four packages at a time on two cores — their tests mostly wait on
	@# sockets and processes (75 s here against 93 s with the default -p 2).
	$(GO) test -race -short -count=1 -p 4 ./...

lint:
	@echo ">> gofmt"
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt would change:"; echo "$$out"; exit 1; fi
	@echo ">> go vet"
	$(GO) vet ./...

fuzz:
	@echo ">> fuzzing each target for $(FUZZTIME) (seed corpora in testdata/fuzz; a failing input is saved there)"
	@for pkg in ./internal/proto/ ./loadgen/; do \
		for t in $$($(GO) test -list '^Fuzz' $$pkg | grep '^Fuzz'); do \
			echo ">> $$pkg $$t"; \
			$(GO) test -run '^$$' -fuzz "^$$t\$$" -fuzztime $(FUZZTIME) $$pkg || exit 1; \
		done; \
	done

bench: build
	@echo ">> bench: quick preset (every model and the C peers cepoll, uring and libevent, echo, c=1..1000, fair pool sizes, 6 to 9 adaptive timed repetitions and 1 counting syscalls); resumes results/quick if interrupted"
	$(BIN)/bench -preset quick -out results/quick $(BENCHFLAGS)

bench-full: build
	@echo ">> bench: full preset (echo+rpc, blocking work, reconnect, c up to 10000, 5 repetitions): hours"
	$(BIN)/bench -preset full -out results/full $(BENCHFLAGS)

clean:
	rm -rf $(BIN)

# loadgen's profile for profile-guided optimization (cmd/loadgen/default.pgo,
# which go build uses): loadgen -cpuprofile against cepoll, scripts/pgo.sh.
pgo: build
	scripts/pgo.sh

# Hosts for multi-host load generation without spare machines: network
# namespaces, each with its own sshd, reached over veths from this (the server's)
# namespace. scripts/netns.sh -h lists the flags; down reads what up recorded.
netns-up:
	scripts/netns.sh up $(NETNS_FLAGS)

netns-down:
	scripts/netns.sh down $(NETNS_FLAGS)

# Optional: build and test work without these, skipping what needs them and
# saying so. liburing-dev and libevent-dev are the libraries of the C peers
# peer:uring and peer:libevent; nginx is the peer:nginx reference server (bin/bench
# -preset http); wrk and ab are for driving a server by hand.
.PHONY: deps
deps:
	@echo ">> installing liburing-dev, libevent-dev (peer:uring, peer:libevent), nginx-light (peer:nginx), wrk and apache2-utils (ab) with apt-get"
	@if [ "$$(id -u)" = 0 ]; then sudo=; else sudo=sudo; fi; \
	$$sudo apt-get update && \
	$$sudo apt-get install -y liburing-dev libevent-dev && \
	{ $$sudo apt-get install -y nginx-light wrk apache2-utils || $$sudo apt-get install -y nginx wrk apache2-utils; }
