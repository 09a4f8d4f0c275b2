#!/bin/sh
# cairn-caddy package: after the files are unpacked, on install and upgrade.
# deb runs it as `postinst configure [OLD-VERSION]`; rpm as `%post N`
# (1: install, 2 or more: upgrade).
#
# It creates the `cairn` system user and the data directory, gives the
# environment file to that user, and on an upgrade restarts a running
# service: the new binary applies the pending store migrations when it
# starts (`migrations auto`, the default), before it serves a request, or
# refuses to serve a schema it does not match (`migrations manual`: run
# `cairn-caddy migrate up` first). A fresh install does not start the
# service: the domain and the secrets in /etc/cairn/cairn.env come first.
set -e

case "$1" in
configure)
	# deb: $2 is the version configured before, empty on a first install.
	upgrade=${2:+yes}
	;;
1) upgrade= ;;
[2-9] | [1-9][0-9]*) upgrade=yes ;;
abort-upgrade | abort-remove | abort-deconfigure) exit 0 ;;
*) echo "cairn-caddy postinst: unknown argument '$1'" >&2; exit 1 ;;
esac

if ! getent passwd cairn >/dev/null; then
	if command -v adduser >/dev/null 2>&1 && [ -e /etc/debian_version ]; then
		adduser --system --group --quiet --home /var/lib/cairn --no-create-home \
			--shell /usr/sbin/nologin --gecos 'cairn-caddy service' cairn
	else
		useradd --system --user-group --home-dir /var/lib/cairn --no-create-home \
			--shell /usr/sbin/nologin --comment 'cairn-caddy service' cairn
	fi
fi

# The data directory: the SQLite store, the generated keys, certificates.
# systemd's StateDirectory= makes it too, but not when the service runs
# without systemd.
if [ ! -d /var/lib/cairn ]; then
	install -d -m 0700 -o cairn -g cairn /var/lib/cairn
fi
# Secrets: readable by the service user only (systemd reads it as root).
chown cairn:cairn /etc/cairn/cairn.env
chmod 0600 /etc/cairn/cairn.env

if [ -d /run/systemd/system ]; then
	systemctl daemon-reload >/dev/null 2>&1 || true
	if [ -n "$upgrade" ]; then
		# Only a running service is restarted; its start migrates.
		if ! systemctl try-restart cairn-caddy.service; then
			echo "cairn-caddy: the service did not come back after the upgrade; see 'journalctl -u cairn-caddy'." >&2
			echo "cairn-caddy: with 'migrations manual', migrate first (docs/install.md, \"Upgrade\"), then 'systemctl start cairn-caddy'." >&2
		fi
	fi
elif [ -n "$upgrade" ]; then
	echo "cairn-caddy: systemd is not running; restart cairn-caddy yourself: it applies the pending store migrations when it starts." >&2
fi

if [ -z "$upgrade" ]; then
	echo "cairn-caddy: set CAIRN_DOMAIN and the secrets in /etc/cairn/cairn.env, then: systemctl enable --now cairn-caddy"
fi
exit 0
