package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spool-agent/spool-agent/spool"
)

// TestReferenceNames checks that ls, show, mv and rm handle names the OCaml
// reference accepts but this project never creates: a name starting with
// "." and a 230-byte name, written by hand as the reference writes them.
func TestReferenceNames(t *testing.T) {
	for _, name := range []string{".dotted", strings.Repeat("n", 230)} {
		t.Run(name[:min(len(name), 10)], func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "spool")
			if _, err := spool.Create(dir, []string{"active", "frozen"}, &spool.Options{Durability: spool.DurabilityNone}); err != nil {
				t.Fatal(err)
			}
			writeFile(t, filepath.Join(dir, spool.RegistryDir, name), "")
			writeFile(t, filepath.Join(dir, spool.DataDir, name), "payload")
			writeFile(t, filepath.Join(dir, "active", name), "meta")

			out := mustCLI(t, "", "ls", dir)
			if !strings.Contains(out, name+"  active  waiting") {
				t.Fatalf("ls does not list %q as waiting:\n%s", name, out)
			}
			var doc struct{ Entries []entryJSON }
			if err := json.Unmarshal([]byte(mustCLI(t, "", "ls", dir, "-o", "json")), &doc); err != nil || len(doc.Entries) != 1 || doc.Entries[0].Name != name {
				t.Fatalf("ls -o json: %v %+v", err, doc.Entries)
			}
			if out := mustCLI(t, "", "show", dir, name); !strings.Contains(out, "metadata:  4 bytes\n  meta\n") {
				t.Fatalf("show:\n%s", out)
			}
			mustCLI(t, "", "mv", dir, name, "--to", "frozen")
			if _, err := os.Stat(filepath.Join(dir, "frozen", name)); err != nil {
				t.Fatalf("mv: %v", err)
			}
			if r := cli(t, nil, "", "fsck", dir); r.code != 0 {
				t.Fatalf("fsck after mv: exit %d\n%s%s", r.code, r.stdout, r.stderr)
			}
			mustCLI(t, "", "rm", dir, name)
			for _, p := range []string{filepath.Join("frozen", name), filepath.Join(spool.RegistryDir, name), filepath.Join(spool.DataDir, name)} {
				if _, err := os.Lstat(filepath.Join(dir, p)); !os.IsNotExist(err) {
					t.Errorf("rm left %s: %v", p, err)
				}
			}
		})
	}
}
