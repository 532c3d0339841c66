#!/bin/sh
# After removal. On purge (deb only) remove the state the service kept in
# its StateDirectory; the system user stays, as Debian's policy allows
# (files elsewhere may still belong to it).
set -e

case "$1" in
purge) rm -rf /var/lib/spool-agent ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload || true
fi
exit 0
