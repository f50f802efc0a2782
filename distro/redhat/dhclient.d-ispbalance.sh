# ispbalance: tell ispbalance about DHCP lease changes. Red Hat's
# dhclient-script sources this file and calls ispbalance_config when a
# lease is bound or renewed and ispbalance_restore when it goes. dhclient
# exports reason, interface, new_routers, ...; the binary reads and checks
# them from its environment, so no value from the DHCP server is expanded
# by this shell.
ispbalance_config() {
	if [ -x /usr/sbin/ifup-balance ]; then
		/usr/sbin/ifup-balance hook dhclient </dev/null >/dev/null || true
	fi
	true
}

ispbalance_restore() {
	ispbalance_config
}
