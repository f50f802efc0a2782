# Sourced by scripts/demo and scripts/test: installs what a fresh Debian
# machine lacks for building ispbalance and running its namespace lab.
set -euo pipefail

need_root() {
	if [ "$(id -u)" != 0 ]; then
		echo "$0: run as root (the lab creates network namespaces): sudo $0" >&2
		exit 1
	fi
}

install_packages() {
	local missing=()
	command -v ip >/dev/null || missing+=(iproute2)
	command -v iptables-restore >/dev/null || missing+=(iptables)
	command -v nft >/dev/null || missing+=(nftables)
	command -v conntrack >/dev/null || missing+=(conntrack)
	command -v ipset >/dev/null || missing+=(ipset)
	command -v socat >/dev/null || missing+=(socat)
	command -v ping >/dev/null || missing+=(iputils-ping)
	command -v sysctl >/dev/null || missing+=(procps)
	command -v logger >/dev/null || missing+=(bsdutils)
	command -v gzip >/dev/null || missing+=(gzip)
	command -v setpriv >/dev/null || missing+=(util-linux)
	command -v nsenter >/dev/null || missing+=(util-linux)
	command -v git >/dev/null || missing+=(git)
	command -v curl >/dev/null || missing+=(curl ca-certificates)
	command -v unzip >/dev/null || missing+=(unzip)
	# Packaging and the hooks' tests: make packages, rpm and lintian read
	# the packages; real DHCP servers (dnsmasq, and ISC dhcpd for DHCPv6
	# prefix delegation) and clients, NetworkManager with its
	# own D-Bus and udev, and systemd-analyze face the installed package.
	command -v make >/dev/null || missing+=(make)
	command -v rpm >/dev/null || missing+=(rpm)
	command -v lintian >/dev/null || missing+=(lintian)
	command -v systemd-analyze >/dev/null || missing+=(systemd)
	command -v dnsmasq >/dev/null || missing+=(dnsmasq-base)
	command -v dhclient >/dev/null || missing+=(isc-dhcp-client)
	command -v dhcpd >/dev/null || missing+=(isc-dhcp-server)
	command -v NetworkManager >/dev/null || missing+=(network-manager)
	command -v dbus-daemon >/dev/null || missing+=(dbus)
	command -v udevadm >/dev/null || missing+=(udev)
	# promtool checks the monitor's metrics as Prometheus would.
	command -v promtool >/dev/null || missing+=(prometheus)
	# The booted-system tests build a Debian root from the registry.
	command -v mmdebstrap >/dev/null || missing+=(mmdebstrap)
	if [ ${#missing[@]} -gt 0 ]; then
		echo "installing: ${missing[*]}"
		export DEBIAN_FRONTEND=noninteractive
		apt-get update -qq
		# Servers installed only for the tests (dhcpd, NetworkManager,
		# Prometheus) must not start on this machine: policy-rc.d tells
		# the packages' scripts not to start them.
		local policy=/usr/sbin/policy-rc.d made="" rc=0
		if [ ! -e "$policy" ]; then
			printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 755 "$policy" && made=1
		fi
		apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null || rc=$?
		if [ -n "$made" ]; then rm -f "$policy"; fi
		return $rc
	fi
}

# ensure_go puts a Go toolchain of at least go.mod's version on PATH. Debian
# 12 ships Go 1.19, too old; the toolchain is then fetched as the Go module
# golang.org/toolchain from the Go module proxy, as `go` itself would do.
ensure_go() {
	local want have
	want=$(sed -n 's/^go \([0-9.]*\)$/\1/p' go.mod)
	export PATH="$PATH:/usr/local/go/bin"
	if command -v go >/dev/null; then
		have=$(go env GOVERSION | sed 's/^go//')
		if [ "$(printf '%s\n%s\n' "$want" "$have" | sort -V | head -1)" = "$want" ]; then
			return
		fi
	fi
	local arch dir proxy
	arch=$(dpkg --print-architecture)
	dir=/usr/local/lib/ispbalance-go$want
	if [ ! -x "$dir/bin/go" ]; then
		proxy=${GOPROXY:-https://proxy.golang.org}
		proxy=${proxy%%,*}
		echo "fetching Go $want toolchain from the module proxy"
		curl -fsSL -o /tmp/go-toolchain.zip "$proxy/golang.org/toolchain/@v/v0.0.1-go$want.linux-$arch.zip"
		rm -rf "$dir.tmp" && mkdir -p "$dir.tmp"
		unzip -q /tmp/go-toolchain.zip -d "$dir.tmp"
		mv "$dir.tmp/golang.org/toolchain@v0.0.1-go$want.linux-$arch" "$dir"
		rm -rf "$dir.tmp" /tmp/go-toolchain.zip
	fi
	export PATH="$dir/bin:$PATH"
}
