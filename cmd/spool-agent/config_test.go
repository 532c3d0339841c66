package main

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/monitor"
	"github.com/spool-agent/spool-agent/repair"
	"github.com/spool-agent/spool-agent/spool"
)

// parseOK parses args with env and fails the test on an error.
func parseOK(t *testing.T, env map[string]string, args ...string) *Main {
	t.Helper()
	var stdout, stderr bytes.Buffer
	m := testMain(env, "", &stdout, &stderr)
	if err := m.ParseFlags(args); err != nil {
		t.Fatalf("parse %q: %v", args, err)
	}
	return m
}

// TestPrecedence checks the documented order: command line, then
// environment, then configuration file, then default.
func TestPrecedence(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, "max-tmp-file-age: 1m\nspool: [file=/from/file]\nlog.level: warn\n")
	for _, tc := range []struct {
		name            string
		flag, env, file bool
		wantAge         time.Duration
		wantSpool       []string
		wantLevel       string
	}{
		{"default", false, false, false, 10 * time.Minute, nil, "info"},
		{"file", false, false, true, time.Minute, []string{"file=/from/file"}, "warn"},
		{"env", false, true, false, 2 * time.Minute, []string{"env=/from/env", "env2=/x"}, "error"},
		{"env over file", false, true, true, 2 * time.Minute, []string{"env=/from/env", "env2=/x"}, "error"},
		{"flag", true, false, false, 3 * time.Minute, []string{"flag=/from/flag"}, "debug"},
		{"flag over file", true, false, true, 3 * time.Minute, []string{"flag=/from/flag"}, "debug"},
		{"flag over env", true, true, false, 3 * time.Minute, []string{"flag=/from/flag"}, "debug"},
		{"flag over env over file", true, true, true, 3 * time.Minute, []string{"flag=/from/flag"}, "debug"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			env := map[string]string{}
			args := []string{}
			if tc.file {
				args = append(args, "--config", cfg)
			}
			if tc.env {
				env["SPOOL_AGENT_MAX_TMP_FILE_AGE"] = "2m"
				env["SPOOL_AGENT_SPOOL"] = "env=/from/env,env2=/x"
				env["SPOOL_AGENT_LOG_LEVEL"] = "error"
			}
			args = append(args, "run")
			if tc.flag {
				args = append(args, "--max-tmp-file-age", "3m", "--spool", "flag=/from/flag", "--log.level=debug")
			}
			m := parseOK(t, env, args...)
			if got := m.cli.Run.MaxTmpFileAge; got != tc.wantAge {
				t.Errorf("--max-tmp-file-age = %v, want %v", got, tc.wantAge)
			}
			if got := m.cli.Run.Spool; !reflect.DeepEqual(got, tc.wantSpool) {
				t.Errorf("--spool = %q, want %q", got, tc.wantSpool)
			}
			if got := m.cli.LogLevel; got != tc.wantLevel {
				t.Errorf("--log.level = %q, want %q", got, tc.wantLevel)
			}
		})
	}
}

// TestConfigFromEnv checks that $SPOOL_AGENT_CONFIG names the file.
func TestConfigFromEnv(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, "check-every: 5s\n")
	m := parseOK(t, map[string]string{"SPOOL_AGENT_CONFIG": cfg}, "run")
	if m.cli.Run.CheckEvery != 5*time.Second {
		t.Fatalf("--check-every = %v, want 5s from the file named by $SPOOL_AGENT_CONFIG", m.cli.Run.CheckEvery)
	}
}

// TestConfigForms checks the key spellings and value shapes a file may use.
func TestConfigForms(t *testing.T) {
	dir := t.TempDir()
	yamlCfg := filepath.Join(dir, "agent.yaml")
	writeFile(t, yamlCfg, `
# nested and dotted keys, '_' for '-'
web:
  listen-address: ["127.0.0.1:1", "127.0.0.1:2"]
  config:
    file: /etc/web.yml
log:
  level: debug
log.format: json
max_tmp_file_age: 90s
alert-after-cycles: 0
create: true
create-queue: [in, out]
max-queue-age:
  in: 1h
  out: 30m
spool-glob: /srv/*/spool
`)
	jsonCfg := filepath.Join(dir, "agent.json")
	writeFile(t, jsonCfg, `{"web.listen-address": ["127.0.0.1:1", "127.0.0.1:2"], "web": {"config": {"file": "/etc/web.yml"}},
 "log": {"level": "debug"}, "log.format": "json", "max_tmp_file_age": "90s", "alert-after-cycles": 0, "create": true,
 "create-queue": ["in", "out"], "max-queue-age": ["in=1h", "out=30m"], "spool-glob": ["/srv/*/spool"]}`)
	for _, cfg := range []string{yamlCfg, jsonCfg} {
		t.Run(filepath.Ext(cfg), func(t *testing.T) {
			m := parseOK(t, nil, "--config", cfg, "run")
			r := m.cli.Run
			want := RunCmd{
				SpoolGlob:        []string{"/srv/*/spool"},
				Create:           true,
				CreateQueue:      []string{"in", "out"},
				CheckEvery:       15 * time.Second,
				AlertAfterCycles: 0,
				FullRescanEvery:  10 * time.Minute,
				LimitFlags: LimitFlags{
					MaxCheckedOutAge: 10 * time.Minute,
					MaxTmpFileAge:    90 * time.Second,
					MaxQueueAge:      map[string]time.Duration{"in": time.Hour, "out": 30 * time.Minute},
				},
				MaxUnregistered:  monitor.DefaultMaxUnregistered,
				MaxQueues:        monitor.DefaultMaxQueues,
				MaxWatches:       monitor.DefaultMaxWatches,
				ConfigAutoReload: true,
				WebListenAddress: []string{"127.0.0.1:1", "127.0.0.1:2"},
				WebConfigFile:    "/etc/web.yml",
			}
			want.OTLPFlags = r.OTLPFlags
			if !reflect.DeepEqual(r, want) {
				t.Errorf("run flags\n got %+v\nwant %+v", r, want)
			}
			if m.cli.LogLevel != "debug" || m.cli.LogFormat != "json" {
				t.Errorf("log flags %q %q, want debug json", m.cli.LogLevel, m.cli.LogFormat)
			}
		})
	}
}

// TestConfigServesEveryCommand checks that keys of other commands are
// accepted (one file serves run and fsck) and applied where they exist.
func TestConfigServesEveryCommand(t *testing.T) {
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	writeFile(t, cfg, "check-every: 1s\nmax-checked-out-age: 1h\noutput: json\n")
	m := parseOK(t, nil, "--config", cfg, "fsck", "/x")
	if m.cli.Fsck.MaxCheckedOutAge != time.Hour || !m.cli.Fsck.json() {
		t.Fatalf("fsck flags %+v: the file's max-checked-out-age and output not applied", m.cli.Fsck)
	}
}

func TestSpoolDefs(t *testing.T) {
	root := t.TempDir()
	mkSpool := func(rel string) string {
		d := filepath.Join(root, rel)
		if err := os.MkdirAll(filepath.Join(d, ".registry"), 0o755); err != nil {
			t.Fatal(err)
		}
		return d
	}
	mail := mkSpool("var/mail")
	jobs := mkSpool("var/jobs")
	mkSpool("other/jobs")
	if err := os.MkdirAll(filepath.Join(root, "var", "notaspool"), 0o755); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(root, "var", "file"), "x")

	cfgPath := filepath.Join(root, "agent.yaml")
	writeFile(t, cfgPath, `
max-queue-age: {active: 1h, frozen: 1d}
spools:
  mail:
    check-every: 1s
    max-queue-age: {active: 5m}
  billing:
    dir: /srv/billing
    alert-after-cycles: 0
    max-checked-out-age: 1h
  outbox:
    dir: /srv/outbox-from-file
`)
	// 1d is not a Go duration: the file is invalid until fixed.
	var stdout, stderr bytes.Buffer
	m := testMain(nil, "", &stdout, &stderr)
	if err := m.ParseFlags([]string{"--config", cfgPath, "run"}); err == nil || !strings.Contains(err.Error(), "max-queue-age") {
		t.Fatalf("invalid duration in the file: err = %v", err)
	}
	writeFile(t, cfgPath, strings.Replace(mustRead(t, cfgPath), "frozen: 1d", "frozen: 24h", 1))

	m = parseOK(t, nil, "--config", cfgPath, "run",
		"--spool", "outbox=/srv/outbox", "--spool", "extra=/srv/extra/",
		"--spool-glob", filepath.Join(root, "var", "*"),
		"--check-every", "30s")
	defs, skipped, err := m.cli.Run.spoolDefs(m.config)
	if err != nil {
		t.Fatal(err)
	}
	wantSkipped := []skippedMatch{
		{Pattern: filepath.Join(root, "var", "*"), Path: filepath.Join(root, "var", "file"), Reason: "not a spool directory (no .registry directory)"},
		{Pattern: filepath.Join(root, "var", "*"), Path: filepath.Join(root, "var", "notaspool"), Reason: "not a spool directory (no .registry directory)"},
	}
	if !reflect.DeepEqual(skipped, wantSkipped) {
		t.Errorf("skipped %+v, want %+v", skipped, wantSkipped)
	}
	base := monitor.Config{
		Limits: monitor.Limits{
			MaxCheckedOutAge: 10 * time.Minute,
			MaxTmpFileAge:    10 * time.Minute,
			MaxQueueAge:      map[string]time.Duration{"active": time.Hour, "frozen": 24 * time.Hour},
		},
		CheckEvery:       30 * time.Second,
		AlertAfterCycles: 2,
		FullRescanEvery:  10 * time.Minute,
		MaxUnregistered:  monitor.DefaultMaxUnregistered,
		MaxQueues:        monitor.DefaultMaxQueues,
		MaxWatches:       monitor.DefaultMaxWatches,
	}
	billing := base
	billing.AlertAfterCycles = 0
	billing.Limits.MaxCheckedOutAge = time.Hour
	mailCfg := base
	mailCfg.CheckEvery = time.Second
	mailCfg.Limits.MaxQueueAge = map[string]time.Duration{"active": 5 * time.Minute, "frozen": 24 * time.Hour}
	want := []spoolDef{
		{Name: "billing", Dir: "/srv/billing", Source: "config file " + cfgPath, Config: billing},
		{Name: "extra", Dir: "/srv/extra", Source: "--spool", Config: base},
		{Name: "jobs", Dir: jobs, Source: "--spool-glob " + filepath.Join(root, "var", "*"), Config: base},
		{Name: "mail", Dir: mail, Source: "--spool-glob " + filepath.Join(root, "var", "*"), Config: mailCfg},
		{Name: "outbox", Dir: "/srv/outbox", Source: "--spool", Config: base},
	}
	if !reflect.DeepEqual(defs, want) {
		t.Fatalf("spoolDefs:\n got %+v\nwant %+v", defs, want)
	}

	// An explicit spool wins over a glob match of the same name; two glob
	// matches of one name are an error.
	m = parseOK(t, nil, "run", "--spool", "jobs=/explicit/jobs", "--spool-glob", filepath.Join(root, "*", "jobs"))
	defs, _, err = m.cli.Run.spoolDefs(nil)
	if err != nil || len(defs) != 1 || defs[0].Dir != "/explicit/jobs" {
		t.Fatalf("explicit over glob: %+v, %v", defs, err)
	}
	m = parseOK(t, nil, "run", "--spool-glob", filepath.Join(root, "*", "jobs"))
	if _, _, err := m.cli.Run.spoolDefs(nil); err == nil || !strings.Contains(err.Error(), "would both be spool") {
		t.Fatalf("two glob matches named jobs: err = %v", err)
	}
}

func TestSpoolDefsErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--spool", "nodir"}, "want NAME=DIR"},
		{[]string{"--spool", "x="}, "want NAME=DIR"},
		{[]string{"--spool", ".hidden=/x"}, "invalid name"},
		{[]string{"--spool", "a=/x", "--spool", "a=/y"}, "given twice"},
		{[]string{"--spool-glob", "[", "--spool", "a=/x"}, "syntax error in pattern"},
		{[]string{"--spool", "a=/x", "--check-every", "0s"}, "must be positive"},
		{[]string{"--spool", "a=/x", "--alert-after-cycles=-1"}, "must not be negative"},
		{[]string{"--spool", "a=/x", "--max-queue-age", "a/b=1m"}, "invalid name"},
	} {
		m := parseOK(t, nil, append([]string{"run"}, tc.args...)...)
		_, _, err := m.cli.Run.spoolDefs(nil)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: err = %v, want %q", tc.args, err, tc.want)
		}
	}
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSpoolSettingsAreRunFlags checks that the keys of a spool in the
// spools: section are the run flags tagged spool:"" (the configuration
// file's contract), and that each tagged field names a flag of run.
func TestSpoolSettingsAreRunFlags(t *testing.T) {
	var stdout, stderr bytes.Buffer
	m := testMain(nil, "", &stdout, &stderr)
	parser, err := m.newParser(&CLI{}, m.newResolvers())
	if err != nil {
		t.Fatal(err)
	}
	set := spoolFlags(parser.Model.Node)
	want := []string{"check-every", "alert-after-cycles", "full-rescan-every", "max-checked-out-age", "max-tmp-file-age", "max-queue-age"}
	if !reflect.DeepEqual(set.names, want) {
		t.Errorf("per-spool keys %q, want %q", set.names, want)
	}
	for _, f := range reflect.VisibleFields(reflect.TypeFor[RunCmd]()) {
		if _, ok := f.Tag.Lookup("spool"); ok && set.flags[flagName(f)] == nil {
			t.Errorf("field %s is tagged spool but %q is no run flag", f.Name, flagName(f))
		}
	}
}

// TestSpoolSettingsChecked checks that a spool's settings are decoded and
// checked as the flags are, when the file is read.
func TestSpoolSettingsChecked(t *testing.T) {
	tests := []struct {
		name, spool, want string
	}{
		{"unknown key", "chek-every: 1s", `unknown key "chek-every" (want dir, check-every, alert-after-cycles, full-rescan-every, max-checked-out-age, max-tmp-file-age, max-queue-age)`},
		{"zero check-every", "check-every: 0s", "--check-every 0s: must be positive"},
		{"zero full-rescan-every", "full-rescan-every: 0", "--full-rescan-every 0s: must be positive"},
		{"negative alert-after-cycles", "alert-after-cycles: -1", "must not be negative"},
		{"not a number", "alert-after-cycles: two", "alert-after-cycles"},
		{"negative age", "max-tmp-file-age: -1m", "must not be negative"},
		{"not a duration", "max-checked-out-age: 1d", "max-checked-out-age"},
		{"bad queue", "max-queue-age: {.x: 1m}", "queue"},
		{"negative queue age", "max-queue-age: [q=-1m]", "negative duration"},
		{"empty dir", "dir: ''", "dir: empty"},
		{"list for a value", "check-every: [1s]", "check-every: want a single value"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cfg := filepath.Join(t.TempDir(), "agent.yaml")
			writeFile(t, cfg, "spools:\n  s:\n    "+tt.spool+"\n")
			var stdout, stderr bytes.Buffer
			err := testMain(nil, "", &stdout, &stderr).ParseFlags([]string{"--config", cfg, "run"})
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "spools: s: ") {
				t.Errorf("err = %v, want one about spool s containing %q", err, tt.want)
			}
		})
	}
}

// TestDefaultsFromPackages checks that run's defaults are the constants of
// the packages that own them.
func TestDefaultsFromPackages(t *testing.T) {
	m := parseOK(t, nil, "run")
	r := m.cli.Run
	want := monitor.DefaultConfig()
	got := monitor.Config{
		Limits:           monitor.Limits{MaxCheckedOutAge: r.MaxCheckedOutAge, MaxTmpFileAge: r.MaxTmpFileAge},
		CheckEvery:       r.CheckEvery,
		AlertAfterCycles: r.AlertAfterCycles,
		FullRescanEvery:  r.FullRescanEvery,
		MaxUnregistered:  r.MaxUnregistered,
		MaxQueues:        r.MaxQueues,
		MaxWatches:       r.MaxWatches,
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("run's defaults %+v, want monitor.DefaultConfig() %+v", got, want)
	}
	if m.cli.MaxMetadataSize != spool.DefaultMaxMetadataSize {
		t.Errorf("--max-metadata-size default %d, want spool.DefaultMaxMetadataSize", m.cli.MaxMetadataSize)
	}
	if !reflect.DeepEqual(r.WebListenAddress, []string{DefaultListenAddress}) {
		t.Errorf("--web.listen-address default %q, want %q", r.WebListenAddress, DefaultListenAddress)
	}
	if d := parseOK(t, nil, "enqueue", "/x", "q").cli.Enqueue.Durability; d != spool.DefaultDurability.String() {
		t.Errorf("enqueue --durability default %q, want %q", d, spool.DefaultDurability)
	}
	if q := parseOK(t, nil, "repair", "/x").cli.Repair.QuarantineQueue; q != repair.DefaultQuarantineQueue {
		t.Errorf("--quarantine-queue default %q, want %q", q, repair.DefaultQuarantineQueue)
	}
	for d, want := range map[time.Duration]string{15 * time.Second: "15s", 10 * time.Minute: "10m", time.Hour: "1h", 90 * time.Minute: "1h30m", 1500 * time.Millisecond: "1.5s"} {
		if got := flagDuration(d); got != want {
			t.Errorf("flagDuration(%v) = %q, want %q", d, got, want)
		}
	}
}
