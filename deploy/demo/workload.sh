#!/bin/sh
# Demo workload of the docker-compose stack: a producer and two consumers
# working on one spool through the spool-agent CLI, so the dashboard moves.
#
#   producer:  spool-agent enqueue SPOOL incoming        (0-5 or 0-1 entries a tick, in waves)
#   worker:    spool-agent mv SPOOL NAME --to outgoing   (up to 2 a tick)
#   sender:    spool-agent rm SPOOL NAME                 (up to 2 a tick)
#
# At start it also leaves one entry checked out, as a consumer that crashed
# would, so the agent's too_old problem and SpoolCheckoutStuck fire after a
# while; `spool-agent recover SPOOL --older-than 1m` repairs it.
#
# Environment: SPOOL (the spool directory), DEMO_TICK (seconds between
# ticks, default 1), DEMO_TICKS (stop after that many ticks; default: never),
# SPOOL_AGENT (the binary, default spool-agent).
set -eu

SPOOL=${SPOOL:?set SPOOL to the spool directory}
TICK=${DEMO_TICK:-1}
TICKS=${DEMO_TICKS:-0}
AGENT=${SPOOL_AGENT:-spool-agent}

if [ ! -d "$SPOOL/.registry" ]; then
	"$AGENT" init "$SPOOL" --queue incoming --queue outgoing --queue dead-letter
	# The crashed consumer: an entry checked out by hand and never released.
	name=$(echo "payload of an entry whose consumer crashed" |
		"$AGENT" enqueue "$SPOOL" incoming --metadata "demo crashed consumer" --data-file -)
	mkdir -p "$SPOOL/incoming/.checkout"
	mv "$SPOOL/incoming/$name" "$SPOOL/incoming/.checkout/$name"
	echo "workload: left $name checked out in incoming"
fi

# names QUEUE [N]: the first N entry names (default 1) waiting in QUEUE.
names() {
	"$AGENT" ls "$SPOOL" "$1" 2>/dev/null | awk -v n="${2:-1}" 'NF && $1 != "NAME" && c < n { print $1; c++ }'
}

# rand N: a pseudo-random number in [0, N).
rand() {
	echo $(($(od -An -N2 -tu2 /dev/urandom | tr -d ' ') % $1))
}

i=0 produced=0 moved=0 removed=0
while [ "$TICKS" -eq 0 ] || [ "$i" -lt "$TICKS" ]; do
	i=$((i + 1))
	# Waves: for 60 ticks out of 120 the producer (2.5 entries a tick on
	# average) outpaces the consumers (2), then the queue drains again.
	if [ $(((i / 60) % 2)) -eq 0 ]; then burst=6; else burst=2; fi
	n=$(rand "$burst")
	while [ "$n" -gt 0 ]; do
		"$AGENT" enqueue "$SPOOL" incoming --metadata "demo entry $i" --data-file - >/dev/null <<-PAYLOAD
			demo payload $i $(date +%s)
		PAYLOAD
		produced=$((produced + 1))
		n=$((n - 1))
	done
	for name in $(names incoming 2); do
		if "$AGENT" mv "$SPOOL" "$name" --to outgoing >/dev/null; then
			moved=$((moved + 1))
		fi
	done
	for name in $(names outgoing 2); do
		if "$AGENT" rm "$SPOOL" "$name" >/dev/null; then
			removed=$((removed + 1))
		fi
	done
	sleep "$TICK"
done
echo "workload: produced $produced moved $moved removed $removed"
