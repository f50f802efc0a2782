# make packages: the .deb and the .rpm in dist/, built with nfpm run as a
# Go program from the module proxy (no binary downloads).
VERSION ?= 0.1.0
RELEASE ?= 1
GOARCH ?= $(shell go env GOARCH)
NFPM ?= go run github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.45.2
BUILD := build/package
LDFLAGS := -s -w -X github.com/ispbalance/ispbalance/internal/cli.Version=$(VERSION)
MANPAGES := $(BUILD)/ifup-balance.8.gz $(BUILD)/nm-dispatcher-balance.8.gz $(BUILD)/balance.conf.5.gz

export VERSION RELEASE GOARCH

.PHONY: packages binaries deb rpm clean

packages: deb rpm

deb: binaries $(MANPAGES) $(BUILD)/changelog.Debian.gz
	mkdir -p dist
	$(NFPM) package -f nfpm.yaml -p deb -t dist/

rpm: binaries $(MANPAGES)
	mkdir -p dist
	$(NFPM) package -f nfpm.yaml -p rpm -t dist/

# Static, reproducible binaries: no cgo, no build paths, no debug data.
binaries:
	mkdir -p $(BUILD)
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BUILD)/ifup-balance ./cmd/ifup-balance
	CGO_ENABLED=0 go build -trimpath -ldflags '$(LDFLAGS)' -o $(BUILD)/nm-dispatcher-balance ./cmd/nm-dispatcher-balance

$(BUILD)/%.gz: distro/man/%
	mkdir -p $(BUILD)
	gzip -9nc $< > $@

$(BUILD)/changelog.Debian.gz: distro/debian/changelog.in
	mkdir -p $(BUILD)
	sed -e 's/@VERSION@/$(VERSION)/' -e 's/@RELEASE@/$(RELEASE)/' $< | gzip -9nc > $@

clean:
	rm -rf build dist
