package reliability

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spool-agent/spool-agent/reliability/internal/workload"
)

// TestInteropModes: under umask 022 and 002 (a spool shared by a group), a
// spool that this project creates (spool-agent init) has the directory
// modes of one that the reference creates (refworker create), and entries
// that this library enqueues have the modes of the reference's: directories
// 0777, metadata and payload 0666, registry files 0644, each minus the
// umask. A consumer's metadata rewrite keeps the metadata file's mode, in
// both implementations.
func TestInteropModes(t *testing.T) {
	needBinary(t, &bin.worker)
	needBinary(t, &bin.ref)
	needBinary(t, &bin.agent)
	for _, umask := range []fs.FileMode{0o022, 0o002} {
		t.Run(fmt.Sprintf("umask%03o", umask), func(t *testing.T) {
			base := t.TempDir()
			withUmask := func(args ...string) []string {
				return append([]string{"/bin/sh", "-c", fmt.Sprintf(`umask %03o; exec "$0" "$@"`, umask)}, args...)
			}
			run := func(args ...string) {
				t.Helper()
				if _, errOut, code := runCmd(t, 30*time.Second, nil, nil, withUmask(args...)...); code != 0 {
					t.Fatalf("%v: exit %d: %s", args, code, errOut)
				}
			}
			modeOf := func(path string) fs.FileMode {
				t.Helper()
				fi, err := os.Lstat(path)
				if err != nil {
					t.Fatal(err)
				}
				return fi.Mode()
			}
			refDir, libDir := filepath.Join(base, "ref"), filepath.Join(base, "lib")
			run(bin.ref, "create", "-spool", refDir, "-queues", "in,out")
			run(bin.agent, "init", libDir, "--queue", "in", "--queue", "out")
			for _, rel := range []string{".", ".registry", ".tmp", ".data", "in", "in/.checkout", "out", "out/.checkout"} {
				want := fs.ModeDir | 0o777&^umask
				if got := modeOf(filepath.Join(refDir, rel)); got != want {
					t.Errorf("the reference's %s: %v, want %v", rel, got, want)
				}
				if got := modeOf(filepath.Join(libDir, rel)); got != want {
					t.Errorf("spool-agent init's %s: %v, want %v (the reference's)", rel, got, want)
				}
			}

			// One entry of each implementation in the library's spool.
			ackRef, ackLib := filepath.Join(base, "acks-ref.log"), filepath.Join(base, "acks-lib.log")
			run(bin.ref, "produce", "-spool", libDir, "-queue", "in", "-id", "ref", "-log", ackRef, "-n", "1")
			run(bin.worker, "produce", "-spool", libDir, "-queue", "in", "-id", "lib", "-log", ackLib, "-n", "1")
			names := map[string]string{} // implementation -> entry name
			for impl, log := range map[string]string{"reference": ackRef, "library": ackLib} {
				lines, err := workload.ReadLog(log)
				if err != nil || len(lines) != 1 {
					t.Fatalf("%s: %v %v", log, lines, err)
				}
				names[impl] = lines[0][2]
			}
			for impl, name := range names {
				for _, f := range []struct {
					rel  string
					want fs.FileMode
				}{
					{filepath.Join(".registry", name), 0o644 &^ umask},
					{filepath.Join(".data", name), 0o666 &^ umask},
					{filepath.Join("in", name), 0o666 &^ umask},
				} {
					if got := modeOf(filepath.Join(libDir, f.rel)); got != f.want {
						t.Errorf("%s's entry: %s is %v, want %v", impl, f.rel, got, f.want)
					}
				}
			}

			// Metadata rewrites keep the file's mode: the library's
			// consumer moves both entries to out, the reference's back.
			for _, step := range []struct {
				exe, from, to string
				mode          fs.FileMode
			}{
				{bin.worker, "in", "out", 0o640},
				{bin.ref, "out", "in", 0o604},
			} {
				for _, name := range names {
					if err := os.Chmod(filepath.Join(libDir, step.from, name), step.mode); err != nil {
						t.Fatal(err)
					}
				}
				log := filepath.Join(base, "moved-"+step.to+".log")
				p := &proc{name: "consumer", args: func(int) []string {
					return withUmask(step.exe, "consume", "-spool", libDir, "-queue", step.from, "-to", step.to, "-log", log)
				}}
				if err := p.start(); err != nil {
					t.Fatal(err)
				}
				waitLines(t, log, "moved", len(names))
				p.signal(syscall.SIGTERM)
				for _, u := range p.unexpected() {
					t.Error(u)
				}
				for impl, name := range names {
					if got := modeOf(filepath.Join(libDir, step.to, name)); got != step.mode {
						t.Errorf("%s's entry rewritten by %s: %s/%s is %v, want %v (the mode it had)", impl, filepath.Base(step.exe), step.to, name, got, step.mode)
					}
				}
			}
		})
	}
}
