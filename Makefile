# avedge — each target is one line; `make test` is the command the README and .ci/run use.
GO ?= go

.PHONY: build test test-pion test-pion-patches race bench fuzz lint cover bench-relay bench-control bench-flood bpf
build: ; $(GO) build ./...
test: ; $(GO) test -race -count=1 -timeout 20m ./... && $(MAKE) --no-print-directory test-pion-patches
# The tests of our pion patches (third_party/pion-turn/PATCHES.md) and of the code they touch: the copy is a
# module of its own, which ./... does not reach. test-pion runs all of pion's tests.
test-pion-patches: ; cd third_party/pion-turn && $(GO) test -race -count=1 -run 'TestPacketHandlerReadWaiter|Permission|Base36|ShortNonce|Nonce|KnownAttr|MethodString' ./internal/allocation/ ./internal/server/
race: test
# pion's own tests in the patched copy (third_party/pion-turn/PATCHES.md), less the one that needs a public STUN server.
test-pion: ; cd third_party/pion-turn && $(GO) test -race -count=1 -skip 'TestClientWithSTUN$$' ./... && ../../scripts/pion-patches.sh --check
bench: ; $(GO) test -run '^$$' -bench . -benchmem ./...
fuzz: ; ./scripts/fuzz.sh
lint: ; gofmt -l . | (! grep .) && $(GO) vet ./...
cover: ; $(GO) test -count=1 -coverprofile=cover.out ./... && $(GO) tool cover -func=cover.out | tail -1
bench-relay: ; ./scripts/bench-relay.sh
bench-control: ; ./scripts/bench-control.sh
bench-flood: ; ./scripts/bench-flood.sh
bpf: ; $(GO) generate ./relay/internal/kfast/
