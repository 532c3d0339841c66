#!/bin/sh
# After install or upgrade (deb: "configure" [old version]; rpm: 1 install,
# 2 upgrade): create the system user, then enable the service on a first
# install (deb; rpm follows the system's presets) and (re)start it where
# systemd runs.
set -e

case "$1" in
configure | 1 | 2) ;;
*) exit 0 ;;
esac

if ! getent group spool-agent >/dev/null; then
	groupadd --system spool-agent
fi
if ! getent passwd spool-agent >/dev/null; then
	useradd --system --gid spool-agent --no-create-home --home-dir /var/lib/spool-agent \
		--shell /usr/sbin/nologin --comment "spool-agent daemon" spool-agent
fi

command -v systemctl >/dev/null 2>&1 || exit 0
case "$1" in
configure) [ -n "$2" ] || systemctl enable spool-agent.service >/dev/null 2>&1 ;;
1) systemctl preset spool-agent.service >/dev/null 2>&1 || true ;;
esac
if [ -d /run/systemd/system ]; then
	systemctl daemon-reload
	case "$1" in
	configure)
		if systemctl is-enabled --quiet spool-agent.service; then
			systemctl restart spool-agent.service ||
				echo "spool-agent: the service did not start; see journalctl -u spool-agent" >&2
		fi
		;;
	2) systemctl try-restart spool-agent.service || true ;;
	esac
fi
exit 0
