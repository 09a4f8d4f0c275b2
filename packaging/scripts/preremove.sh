#!/bin/sh
# cairn-caddy package: before the files are removed. deb runs it as
# `prerm remove|upgrade|deconfigure|failed-upgrade`; rpm as `%preun N`
# (0: erase, 1 or more: upgrade). An upgrade leaves the service running:
# postinst restarts it on the new binary.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

if [ -d /run/systemd/system ]; then
	systemctl --no-reload disable --now cairn-caddy.service >/dev/null 2>&1 || true
elif command -v systemctl >/dev/null 2>&1; then
	# Without systemd as PID 1, still drop the enablement links.
	systemctl --no-reload disable cairn-caddy.service >/dev/null 2>&1 || true
fi
exit 0
