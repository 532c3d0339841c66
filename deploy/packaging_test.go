package deploy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

const (
	pkgVersion  = "0.1.0"
	unitSrc     = "packaging/spool-agent.service"
	unitPath    = "/usr/lib/systemd/system/spool-agent.service"
	confPath    = "/etc/spool-agent/spool-agent.yml"
	defaultPath = "/etc/default/spool-agent"
	statePath   = "/var/lib/spool-agent"
	serviceUser = "spool-agent"
)

// release is scripts/release.sh run once for linux/amd64 into a
// temporary directory.
type release struct {
	once sync.Once
	dist string
	err  error
	out  []byte
}

var amd64Release release

// releaseAmd64 runs scripts/release.sh for linux/amd64 (tarball, .deb,
// .rpm, checksums) and returns the directory holding them.
func releaseAmd64(t *testing.T) string {
	t.Helper()
	r := &amd64Release
	r.once.Do(func() {
		r.dist, r.err = os.MkdirTemp("", "spool-agent-dist-")
		if r.err != nil {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, "./scripts/release.sh", pkgVersion)
		cmd.Dir = repoRoot
		cmd.Env = append(os.Environ(), "DIST="+r.dist, "PLATFORMS=linux/amd64", "ARCHS=amd64")
		r.out, r.err = cmd.CombinedOutput()
	})
	if r.err != nil {
		t.Fatalf("scripts/release.sh %s: %v\n%s", pkgVersion, r.err, r.out)
	}
	return r.dist
}

// artifact returns the one file of dist that matches pattern.
func artifact(t *testing.T, dist, pattern string) string {
	t.Helper()
	m, err := filepath.Glob(filepath.Join(dist, pattern))
	if err != nil || len(m) != 1 {
		t.Fatalf("want one %s in %s, got %v (%v)", pattern, dist, m, err)
	}
	return m[0]
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestRelease checks the artifacts of scripts/release.sh: the checksums
// match, and the tarball's binary is static and stamped with the version.
func TestRelease(t *testing.T) {
	dist := releaseAmd64(t)
	sums, err := os.ReadFile(filepath.Join(dist, "SHA256SUMS"))
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, line := range strings.Split(strings.TrimSpace(string(sums)), "\n") {
		f := strings.Fields(line)
		if len(f) != 2 || len(f[0]) != 64 {
			t.Fatalf("SHA256SUMS line %q", line)
		}
		names = append(names, f[1])
	}
	slices.Sort(names)
	want := []string{"spool-agent-" + pkgVersion + "-1.x86_64.rpm", "spool-agent-" + pkgVersion + ".linux-amd64.tar.gz", "spool-agent_" + pkgVersion + "_amd64.deb"}
	if !slices.Equal(names, want) {
		t.Errorf("SHA256SUMS lists %v, want %v", names, want)
	}
	cmd := exec.Command("sha256sum", "--check", "--strict", "SHA256SUMS")
	cmd.Dir = dist
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("sha256sum --check: %v\n%s", err, out)
	}

	tmp := t.TempDir()
	run(t, "tar", "-xzf", filepath.Join(dist, "spool-agent-"+pkgVersion+".linux-amd64.tar.gz"), "-C", tmp)
	dir := filepath.Join(tmp, "spool-agent-"+pkgVersion+".linux-amd64")
	for _, f := range []string{"spool-agent", "README.md", "spool-agent.service", "spool-agent.yml"} {
		if _, err := os.Stat(filepath.Join(dir, f)); err != nil {
			t.Errorf("tarball: %v", err)
		}
	}
	checkVersion(t, filepath.Join(dir, "spool-agent"))
	if out := run(t, "go", "version", "-m", filepath.Join(dir, "spool-agent")); !strings.Contains(out, "CGO_ENABLED=0") || !strings.Contains(out, "-trimpath=true") {
		t.Errorf("the binary is not built with CGO_ENABLED=0 -trimpath:\n%s", out)
	}
}

var versionRE = regexp.MustCompile(`^spool-agent version ` + regexp.QuoteMeta(pkgVersion) + `, revision [0-9a-f]{40}(-dirty)?, go\S+, built \d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\n$`)

// checkVersion checks that bin says the release's version, revision and
// build date.
func checkVersion(t *testing.T, bin string) {
	t.Helper()
	out := run(t, bin, "--version")
	if !versionRE.MatchString(out) {
		t.Errorf("%s --version: %q does not match %s", bin, out, versionRE)
	}
}

// TestPackagesHoldTheSameFiles compares the .rpm's files (rpm -qlp) with
// the .deb's (dpkg-deb -c), their modes and their configuration files.
func TestPackagesHoldTheSameFiles(t *testing.T) {
	dpkgDeb := lookTool(t, "dpkg-deb", "apt-get install dpkg")
	rpm := lookTool(t, "rpm", "apt-get install rpm")
	dist := releaseAmd64(t)
	deb := artifact(t, dist, "*.deb")
	rpmFile := artifact(t, dist, "*.rpm")

	// dpkg-deb -c: "-rwxr-xr-x root/root 123 2026-01-01 00:00 ./usr/bin/spool-agent"
	debFiles := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, dpkgDeb, "-c", deb)), "\n") {
		f := strings.Fields(line)
		p := strings.TrimSuffix(strings.TrimPrefix(f[len(f)-1], "."), "/")
		if f[0][0] == 'd' {
			continue // dpkg lists every parent directory
		}
		debFiles[p] = f[0] + " " + f[1]
	}
	rpmFiles := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, rpm, "-qp", "--qf", `[%{FILEMODES:perms} %{FILEUSERNAME}/%{FILEGROUPNAME} %{FILENAMES}\n]`, rpmFile)), "\n") {
		f := strings.Fields(line)
		if f[0][0] == 'd' {
			continue
		}
		rpmFiles[f[2]] = f[0] + " " + f[1]
	}
	if len(debFiles) == 0 || !mapsEqual(debFiles, rpmFiles) {
		t.Errorf("the packages differ:\n.deb: %v\n.rpm: %v", debFiles, rpmFiles)
	}
	// rpm -qlp lists the files (and the directories the package owns).
	listed := strings.Fields(run(t, rpm, "-qlp", rpmFile))
	for p := range debFiles {
		if !slices.Contains(listed, p) {
			t.Errorf("rpm -qlp does not list %s", p)
		}
	}
	wantConf := []string{defaultPath, confPath}
	debConf := strings.Fields(run(t, dpkgDeb, "--info", deb, "conffiles"))
	rpmConf := strings.Fields(run(t, rpm, "-qcp", rpmFile))
	slices.Sort(debConf)
	slices.Sort(rpmConf)
	if !slices.Equal(debConf, wantConf) || !slices.Equal(rpmConf, wantConf) {
		t.Errorf("configuration files: .deb %v, .rpm %v, want %v", debConf, rpmConf, wantConf)
	}
}

func mapsEqual(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if b[k] != v {
			return false
		}
	}
	return true
}

var exposureRE = regexp.MustCompile(`Overall exposure level for spool-agent\.service: (\d+\.\d+)`)

// TestUnitSecurity checks the unit's hardening with systemd-analyze
// security (offline: no running systemd needed). The README quotes the
// figure.
func TestUnitSecurity(t *testing.T) {
	sa := lookTool(t, "systemd-analyze", "apt-get install systemd")
	cmd := exec.Command(sa, "security", "--offline=yes", "--no-pager", unitSrc)
	out, _ := cmd.CombinedOutput() // exits non-zero only above --threshold
	m := exposureRE.FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: no overall exposure:\n%s", out)
	}
	exposure, err := strconv.ParseFloat(string(m[1]), 64)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("systemd-analyze security --offline=yes %s: %.1f", unitSrc, exposure)
	if exposure >= 2.0 {
		t.Errorf("exposure %.1f, want below 2.0:\n%s", exposure, out)
	}
	readme, err := os.ReadFile(filepath.Join(repoRoot, "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(readme), "exposure **"+string(m[1])+"**") {
		t.Errorf("README.md does not give the exposure as **%s**", m[1])
	}
}

// TestConfigExamples runs the agent with the packaged configuration file,
// as shipped and with every example in it uncommented, and checks that it
// starts and serves its readiness endpoint.
func TestConfigExamples(t *testing.T) {
	bin := agentBinary(t)
	shipped, err := os.ReadFile("packaging/spool-agent.yml")
	if err != nil {
		t.Fatal(err)
	}
	tmp := t.TempDir()
	webConfig := filepath.Join(tmp, "web.yml")
	if err := os.WriteFile(webConfig, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	// Examples are lines that start with "#" and a key (or "#  " inside
	// one); prose starts with "# ".
	uncommented := regexp.MustCompile(`(?m)^#([^ #\n]|  )`).ReplaceAll(shipped, []byte("$1"))
	if bytes.Equal(uncommented, shipped) {
		t.Fatal("the configuration file has no commented examples")
	}
	r := strings.NewReplacer("/etc/spool-agent/web.yml", webConfig,
		"/srv/mail/spool", filepath.Join(tmp, "mail"),
		"http://otel-collector:4318", "http://127.0.0.1:9") // discard: nothing listens
	uncommented = []byte(r.Replace(string(uncommented)))
	for name, content := range map[string][]byte{"shipped": shipped, "uncommented": uncommented} {
		t.Run(name, func(t *testing.T) {
			f := filepath.Join(t.TempDir(), "spool-agent.yml")
			if err := os.WriteFile(f, content, 0o644); err != nil {
				t.Fatal(err)
			}
			base, stop := startAgent(t, exec.Command(bin, "run", "--config", f, "--web.listen-address=127.0.0.1:0"))
			defer stop()
			get(t, context.Background(), base+"/-/ready")
		})
	}
}

// startAgent starts cmd (spool-agent run) with the caller's PATH only and
// returns the base URL it serves once it says so, and a function that
// stops it.
func startAgent(t *testing.T, cmd *exec.Cmd) (string, func()) {
	t.Helper()
	if cmd.Env == nil {
		cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	}
	cmd.WaitDelay = 10 * time.Second
	// Its own process group, so that stopping reaches the agent under a
	// wrapper (runuser) too.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	stop := func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		waited := make(chan error, 1)
		go func() { waited <- cmd.Wait() }()
		select {
		case <-waited:
		case <-time.After(20 * time.Second):
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-waited
		}
	}
	var log bytes.Buffer
	sc := bufio.NewScanner(stderr)
	for sc.Scan() {
		log.WriteString(sc.Text() + "\n")
		if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
			go io.Copy(io.Discard, stderr)
			return m[1], stop
		}
	}
	stop()
	t.Fatalf("%q did not start serving:\n%s", cmd.Args, log.Bytes())
	return "", nil
}

// snapshot lists the paths under the directories a package's install,
// removal and purge may touch, outside dpkg's own database.
func snapshot(t *testing.T) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	for _, root := range []string{"/etc", "/usr/bin", "/usr/lib/systemd", "/usr/share/doc", "/var/lib"} {
		err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				if os.IsNotExist(err) || os.IsPermission(err) {
					return nil
				}
				return err
			}
			if d.IsDir() && (p == "/var/lib/dpkg" || p == "/var/lib/apt") {
				return filepath.SkipDir
			}
			out[p] = true
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// allowedLeftovers are new paths a purge may leave: the backups that
// useradd and groupadd make of the user databases (Debian's policy lets
// the system user stay).
var allowedLeftovers = []string{"/etc/passwd-", "/etc/group-", "/etc/shadow-", "/etc/gshadow-", "/etc/subuid-", "/etc/subgid-"}

// TestDebInstall installs the .deb with dpkg -i (CI runs as root on
// Debian), checks the binary, the unit, the user and the configuration
// files, runs the service's command as its user, reinstalls over a changed
// configuration file, then removes and purges the package and checks that
// nothing is left but the system user.
func TestDebInstall(t *testing.T) {
	dpkg := lookTool(t, "dpkg", "apt-get install dpkg")
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("installing a package needs root, as CI runs")
		}
		t.Skip("dpkg -i needs root (sudo go test -run TestDebInstall)")
	}
	runuser := lookTool(t, "runuser", "apt-get install util-linux")
	// One install test at a time on this machine (two checkouts' suites
	// may run at once).
	lock, err := os.OpenFile(filepath.Join(os.TempDir(), "spool-agent-deb-install.lock"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { lock.Close() }) // after the purge below (cleanups run last first)
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		t.Fatal(err)
	}
	if exec.Command("dpkg-query", "-W", "spool-agent").Run() == nil {
		// Left by an interrupted run; CI's machine is the test's own.
		if os.Getenv("CI") != "true" {
			t.Fatal("a spool-agent package is installed already; remove it first: dpkg -P spool-agent")
		}
		t.Log("purging the spool-agent package an earlier run left installed")
		run(t, dpkg, "-P", "spool-agent")
	}
	deb := artifact(t, releaseAmd64(t), "*.deb")

	before := snapshot(t)
	t.Cleanup(func() {
		if exec.Command("dpkg-query", "-W", "spool-agent").Run() == nil {
			exec.Command(dpkg, "-P", "spool-agent").Run()
		}
	})
	t.Log(run(t, dpkg, "-i", deb))

	checkVersion(t, "/usr/bin/spool-agent")
	for _, f := range []string{unitPath, confPath, defaultPath} {
		if _, err := os.Stat(f); err != nil {
			t.Error(err)
		}
	}
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(sa, "verify", unitPath).CombinedOutput(); err != nil || len(out) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
		}
	} else {
		t.Log("systemd-analyze not installed (apt-get install systemd): unit not verified")
	}
	// A system user without a login shell, and its group.
	pw := strings.Split(strings.TrimSpace(run(t, "getent", "passwd", serviceUser)), ":")
	uid, _ := strconv.Atoi(pw[2])
	if len(pw) != 7 || uid == 0 || uid >= 1000 || !strings.HasSuffix(pw[6], "nologin") {
		t.Errorf("user %s: %q, want a system user (uid < 1000) with no login shell", serviceUser, pw)
	}
	run(t, "getent", "group", serviceUser)
	conffiles := run(t, "dpkg-query", "-W", "-f=${Conffiles}", "spool-agent")
	for _, f := range []string{confPath, defaultPath} {
		if !strings.Contains(conffiles, f+" ") {
			t.Errorf("%s is not a conffile: %q", f, conffiles)
		}
	}

	// The service's command line, as its user, with the installed files.
	// systemd would create the state directory; do as it does.
	if err := os.MkdirAll(statePath, 0o750); err != nil {
		t.Fatal(err)
	}
	run(t, "chown", serviceUser+":"+serviceUser, statePath)
	execStart := unitExecStart(t, unitPath)
	args := []string{"-u", serviceUser, "-g", serviceUser, "--"}
	for _, a := range execStart {
		if a == "$ARGS" {
			a = "--web.listen-address=127.0.0.1:0"
		}
		args = append(args, a)
	}
	cmd := exec.Command(runuser, args...)
	cmd.Env = []string{"PATH=/usr/bin:/bin", "STATE_DIRECTORY=" + statePath}
	base, stop := startAgent(t, cmd)
	get(t, context.Background(), base+"/-/ready")
	if m := get(t, context.Background(), base+"/metrics"); !strings.Contains(m, `spool_agent_build_info{`) || !strings.Contains(m, `version="`+pkgVersion+`"`) {
		t.Errorf("/metrics has no spool_agent_build_info with version %s", pkgVersion)
	}
	stop()

	// A changed conffile is kept when the package is installed again.
	changed := "# changed by the administrator\nspool-glob: [\"/srv/spools/*\"]\n"
	if err := os.WriteFile(confPath, []byte(changed), 0o644); err != nil {
		t.Fatal(err)
	}
	run(t, dpkg, "-i", deb)
	if b, err := os.ReadFile(confPath); err != nil || string(b) != changed {
		t.Errorf("the reinstall did not keep the changed %s: %q %v", confPath, b, err)
	}

	// Remove: the program goes, the configuration stays.
	run(t, dpkg, "-r", "spool-agent")
	for _, f := range []string{"/usr/bin/spool-agent", unitPath} {
		if _, err := os.Lstat(f); err == nil {
			t.Errorf("dpkg -r left %s", f)
		}
	}
	for _, f := range []string{confPath, defaultPath} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("dpkg -r removed the conffile %s: %v", f, err)
		}
	}
	// Purge: nothing left but the system user.
	run(t, dpkg, "-P", "spool-agent")
	after := snapshot(t)
	for p := range after {
		if !before[p] && !slices.Contains(allowedLeftovers, p) {
			t.Errorf("dpkg -P left %s", p)
		}
	}
	for p := range before {
		if !after[p] {
			t.Errorf("install and purge removed %s, which was there before", p)
		}
	}
	if exec.Command("getent", "passwd", serviceUser).Run() == nil {
		t.Logf("the system user %s stays after the purge, as Debian's policy allows", serviceUser)
	}
}

// unitExecStart returns the words of the unit's ExecStart=.
func unitExecStart(t *testing.T, unit string) []string {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s has no ExecStart=", unit)
	return nil
}
