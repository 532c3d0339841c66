#!/bin/sh
# Before removal (deb: "remove"; rpm: 0), not before an upgrade: stop and
# disable the service.
set -e

case "$1" in
remove | 0) ;;
*) exit 0 ;;
esac

command -v systemctl >/dev/null 2>&1 || exit 0
if [ -d /run/systemd/system ]; then
	systemctl stop spool-agent.service || true
fi
systemctl disable spool-agent.service >/dev/null 2>&1 || true
exit 0
