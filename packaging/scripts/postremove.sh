#!/bin/sh
# cairn-caddy package: after the files are removed. deb runs it as
# `postrm remove|purge|upgrade|…`; rpm as `%postun N` (0: erase, 1 or
# more: upgrade).
#
# Remove keeps the data (/var/lib/cairn: the store, the keys, the
# certificates), the configuration and the `cairn` user. Purge, which
# only deb has, deletes all three: the data directory is gone for good, so
# take a backup first (`cairn-caddy backup`). An rpm erase keeps them
# like a deb remove.
set -e

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
fi

if [ "$1" = purge ]; then
	rm -rf /var/lib/cairn
	# dpkg has removed the conffiles; anything left in /etc/cairn (an
	# edited copy, a backup of one) was written for this package.
	rm -rf /etc/cairn
	if getent passwd cairn >/dev/null; then
		if command -v deluser >/dev/null 2>&1; then
			deluser --system --quiet cairn >/dev/null 2>&1 || true
		else
			userdel cairn >/dev/null 2>&1 || true
		fi
	fi
	if getent group cairn >/dev/null; then
		if command -v delgroup >/dev/null 2>&1; then
			delgroup --system --quiet cairn >/dev/null 2>&1 || true
		else
			groupdel cairn >/dev/null 2>&1 || true
		fi
	fi
fi
exit 0
