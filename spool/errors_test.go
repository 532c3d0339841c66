package spool

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestPathErrors: a failed file-system call reaches the caller as an
// *fs.PathError naming the operation and the path that failed, under the
// package's own wrapping, and errors.Is still sees the errno.
func TestPathErrors(t *testing.T) {
	cases := []struct {
		name     string
		failOp   string // hookFS operation to fail with EIO
		failPath string // suffix of the path to fail
		op       func(s *Spool, name string) error
		wantOp   string
		wantPath string // suffix, with name for the entry's name
	}{
		{"enqueue payload", "open", "/.data/", func(s *Spool, _ string) error {
			_, err := s.EnqueueBytes(context.Background(), "q", []byte("m"), []byte("d"), EnqueueOptions{Name: "new"})
			return err
		}, "create", "/.data/new"},
		{"checkout", "open", "/q/", func(s *Spool, name string) error {
			_, err := s.Checkout(context.Background(), "q", name)
			return err
		}, "checkout: open", "/q/name"},
		{"read data", "open", "/.data/", func(s *Spool, name string) error {
			_, err := s.ReadData(name)
			return err
		}, "", "/.data/name"},
		{"list", "readdir", "/q", func(s *Spool, _ string) error {
			_, err := s.List("q")
			return err
		}, "", "/q"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			h := &hookFS{}
			s := newTestSpool(t, []string{"q"}, &Options{Durability: DurabilityNone, fs: h})
			defer s.Close()
			name := mustEnqueue(t, s, "q", "m", "d", EnqueueOptions{})
			h.hook = func(op, path string) error {
				if op == tc.failOp && strings.Contains(path+"/", tc.failPath) {
					return unix.EIO
				}
				return nil
			}
			err := tc.op(s, name)
			h.hook = nil
			var pe *fs.PathError
			if !errors.As(err, &pe) {
				t.Fatalf("err = %v (%T), want an *fs.PathError in the chain", err, err)
			}
			if !errors.Is(err, unix.EIO) {
				t.Errorf("errors.Is(%v, EIO) = false", err)
			}
			want := strings.ReplaceAll(tc.wantPath, "name", name)
			if !strings.HasSuffix(pe.Path, want) || !strings.HasPrefix(pe.Path, s.Dir()) {
				t.Errorf("Path = %q, want %s...%s", pe.Path, s.Dir(), want)
			}
			if tc.wantOp != "" && pe.Op != tc.wantOp {
				t.Errorf("Op = %q, want %q", pe.Op, tc.wantOp)
			}
		})
	}
}

// TestOpenNotSpoolErrors: Open's refusals wrap ErrNotSpool, and a path that
// cannot be checked is an *fs.PathError.
func TestOpenNotSpoolErrors(t *testing.T) {
	dir := t.TempDir()
	if _, err := Open(dir, nil); !errors.Is(err, ErrNotSpool) {
		t.Errorf("Open of an empty directory: %v, want ErrNotSpool", err)
	}
	if _, err := Open(filepath.Join(dir, "missing"), nil); !errors.Is(err, ErrNotSpool) {
		t.Errorf("Open of a missing directory: %v, want ErrNotSpool", err)
	}
	f := filepath.Join(dir, "file")
	if err := os.WriteFile(f, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(filepath.Join(f, "x"), nil); !errors.As(err, new(*fs.PathError)) {
		t.Errorf("Open beneath a file: %v, want an *fs.PathError", err)
	}
}
