#!/usr/bin/env bash
# Benchmarks the spool library against its floor (the same system calls in
# straight-line code) and prints, per row, the median library and floor
# throughput and their ratio over COUNT runs, then the dequeue wake-up
# latency. Every row runs library and floor in alternating rounds in the
# same benchmark, so both see the same load; still, run it on an idle
# machine (the load average is printed before and after).
#
# The floor issues every operation's own fsyncs (the per-operation floor);
# at 8 and 32 goroutines the library shares flushes among them (group
# commit), so a ratio above 1 is its gain. The group-commit targets of
# issue 17 are checked at the end: Enqueue and Cycle at full, >= 2x the
# floor with 8 goroutines, >= 0.95x with 1. Those rows also run a third
# side, the floor's system calls with no flush at all (the ceiling: no
# durable implementation can pass it), and the check says in how many runs
# the ceiling itself was below the target.
#
#   scripts/bench-spool.sh            # COUNT=5
#   COUNT=10 scripts/bench-spool.sh
#   BENCH='Cycle' scripts/bench-spool.sh
#   BENCH='/full/' BENCHTIME=5s scripts/bench-spool.sh   # fsync-bound rows need more operations
#   BENCH='(Enqueue|Cycle)/full/' COUNT=5 BENCHTIME=2s scripts/bench-spool.sh   # the group-commit rows only
#   GOMAXPROCS=8 BENCH='(Enqueue|Cycle)/full/' scripts/bench-spool.sh   # a floor whose goroutines need not wait for a P (README, Performance)
set -euo pipefail
cd "$(dirname "$0")/.."
count=${COUNT:-5}
bench=${BENCH:-.}
benchtime=${BENCHTIME:-1s}
out=${OUT:-$(mktemp /tmp/bench-spool.XXXXXX)}

cmd=(go test -run '^$' -bench "$bench" -benchtime "$benchtime" -count "$count" ./spool/)
echo "load before: $(cut -d' ' -f1-3 /proc/loadavg)   $(nproc) CPUs   GOMAXPROCS=${GOMAXPROCS:-$(nproc)}   $(go version | cut -d' ' -f3)   $(uname -r)   $(df -T . | awk 'NR==2 {print $2}')"
echo "command: COUNT=$count BENCHTIME=$benchtime BENCH='$bench' scripts/bench-spool.sh"
echo "runs:    ${cmd[*]}"
"${cmd[@]}" | tee "$out" >/dev/null
echo "load after:  $(cut -d' ' -f1-3 /proc/loadavg)"
echo "raw output:  $out"
echo

# Lines look like:
# BenchmarkEnqueue/full/g8-2  1200  1650000 ns/op  1243 floor-ops/s  1197 lib-ops/s  0.963 ratio
awk '
function median(list,   a, n, i, j, t) {
	n = split(list, a, " ")
	for (i = 2; i <= n; i++) { t = a[i] + 0; for (j = i - 1; j >= 1 && a[j] + 0 > t; j--) a[j+1] = a[j]; a[j+1] = t }
	return (n % 2) ? a[(n+1)/2] : (a[n/2] + a[n/2+1]) / 2
}
function minimum(list,   a, n, i, m) {
	n = split(list, a, " "); m = a[1] + 0
	for (i = 2; i <= n; i++) if (a[i] + 0 < m) m = a[i] + 0
	return m
}
/^Benchmark(Enqueue|CheckoutRemove|Cycle)\// {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^Benchmark/, "", name)
	split(name, p, "/")
	key = p[1] "|" p[2] "|" substr(p[3], 2)
	if (!(key in seen)) { seen[key] = 1; order[++rows] = key }
	for (i = 3; i < NF; i++) {
		if ($(i+1) == "lib-ops/s") lib[key] = lib[key] " " $i
		if ($(i+1) == "floor-ops/s") flr[key] = flr[key] " " $i
		if ($(i+1) == "ratio") rat[key] = rat[key] " " $i
		if ($(i+1) == "ceiling-ops/s") cops[key] = cops[key] " " $i
		if ($(i+1) == "ceiling-ratio") crat[key] = crat[key] " " $i
	}
}
/^BenchmarkWakeLatency\// {
	name = $1; sub(/-[0-9]+$/, "", name); sub(/^BenchmarkWakeLatency\//, "", name)
	if (!(name in wseen)) { wseen[name] = 1; worder[++wrows] = name }
	for (i = 3; i < NF; i++) {
		if ($(i+1) == "p50-us") w50[name] = w50[name] " " $i
		if ($(i+1) == "p90-us") w90[name] = w90[name] " " $i
		if ($(i+1) == "p99-us") w99[name] = w99[name] " " $i
		if ($(i+1) == "max-us") wmax[name] = wmax[name] " " $i
	}
}
END {
	if (rows > 0) {
		print "| operation | durability | goroutines | library ops/s | floor ops/s | ratio (median) | ratio (worst run) | no-flush ceiling / floor |"
		print "|---|---|---:|---:|---:|---:|---:|---:|"
		bad = 0
		for (r = 1; r <= rows; r++) {
			k = order[r]; split(k, p, "|")
			m = median(rat[k]); if (m < 0.9) bad++
			c = (k in crat) ? sprintf("%.2f", median(crat[k])) : "-"
			printf "| %s | %s | %s | %.0f | %.0f | %.2f%s | %.2f | %s |\n", p[1], p[2], p[3], median(lib[k]), median(flr[k]), m, (m < 0.9 ? " (below 0.9)" : ""), minimum(rat[k]), c
		}
		printf "\n%d of %d rows below 0.9x the floor (medians of %d runs)\n", bad, rows, split(rat[order[1]], x, " ")
		# Group-commit targets (issue 17), on the median ratios.
		nt = 0
		for (r = 1; r <= rows; r++) {
			k = order[r]; split(k, p, "|")
			if (p[2] != "full" || (p[1] != "Enqueue" && p[1] != "Cycle")) continue
			want = 0
			if (p[3] == "1") want = 0.95
			if (p[3] == "8") want = 2
			if (want == 0) continue
			if (nt++ == 0) print "\nGroup-commit targets (median ratio against the per-operation floor; the ceiling is the floor with no flush at all, which no durable implementation can pass):"
			m = median(rat[k])
			line = sprintf("  %-8s full g%-2s %.2fx  target >= %.2fx  %-7s", p[1], p[3], m, want, (m >= want ? "met" : "NOT met"))
			if (k in crat) {
				nr = split(crat[k], cr, " "); below = 0
				for (i = 1; i <= nr; i++) if (cr[i] + 0 < want) below++
				line = line sprintf("  ceiling %.2fx the floor, below the target in %d of %d runs; library at %.0f%% of the ceiling", median(crat[k]), below, nr, 100 * median(lib[k]) / median(cops[k]))
			}
			print line
		}
	}
	if (wrows > 0) {
		print "\nDequeue wake-up latency, rename into the queue until Dequeue returns (library) or until a blocking read of an inotify descriptor returns (floor); medians over runs, microseconds:"
		print "| | p50 | p90 | p99 | max |"
		print "|---|---:|---:|---:|---:|"
		for (r = 1; r <= wrows; r++) {
			k = worder[r]
			printf "| %s | %.0f | %.0f | %.0f | %.0f |\n", k, median(w50[k]), median(w90[k]), median(w99[k]), median(wmax[k])
		}
	}
}' "$out"
