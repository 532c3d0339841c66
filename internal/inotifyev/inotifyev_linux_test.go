package inotifyev

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"golang.org/x/sys/unix"
)

// encode returns the kernel's encoding of an event whose name is padded to
// pad bytes (0: no name).
func encode(wd int32, mask uint32, name string, pad int) []byte {
	b := make([]byte, unix.SizeofInotifyEvent+pad)
	binary.NativeEndian.PutUint32(b[0:4], uint32(wd))
	binary.NativeEndian.PutUint32(b[4:8], mask)
	binary.NativeEndian.PutUint32(b[12:16], uint32(pad))
	copy(b[unix.SizeofInotifyEvent:], name)
	return b
}

func TestEach(t *testing.T) {
	type ev struct {
		wd   int32
		mask uint32
		name string
	}
	tests := []struct {
		name string
		buf  []byte
		want []ev
	}{
		{"empty", nil, nil},
		{"named and padded", encode(3, unix.IN_CREATE, "entry", 16), []ev{{3, unix.IN_CREATE, "entry"}}},
		{"the directory itself", encode(3, unix.IN_DELETE_SELF, "", 0), []ev{{3, unix.IN_DELETE_SELF, ""}}},
		{"several, in order", slices.Concat(encode(1, unix.IN_MOVED_FROM, "a", 4), encode(-1, unix.IN_Q_OVERFLOW, "", 0), encode(2, unix.IN_MOVED_TO, "b", 8)),
			[]ev{{1, unix.IN_MOVED_FROM, "a"}, {-1, unix.IN_Q_OVERFLOW, ""}, {2, unix.IN_MOVED_TO, "b"}}},
		{"truncated tail ignored", slices.Concat(encode(1, unix.IN_CREATE, "a", 4), encode(1, unix.IN_CREATE, "b", 16)[:20]),
			[]ev{{1, unix.IN_CREATE, "a"}}},
		{"short header ignored", encode(1, unix.IN_CREATE, "", 0)[:10], nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []ev
			Each(tt.buf, func(e Event) { got = append(got, ev{e.Wd, e.Mask, string(e.Name)}) })
			if !slices.Equal(got, tt.want) {
				t.Errorf("Each = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestEachKernel decodes what the kernel wrote for a real change.
func TestEachKernel(t *testing.T) {
	fd, err := unix.InotifyInit1(unix.IN_NONBLOCK | unix.IN_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	dir := t.TempDir()
	wd, err := unix.InotifyAddWatch(fd, dir, unix.IN_CREATE)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "some-file-name"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 4096)
	n, err := unix.Read(fd, buf)
	if err != nil {
		t.Fatal(err)
	}
	var got []Event
	Each(buf[:n], func(e Event) { got = append(got, e) })
	if len(got) != 1 || got[0].Wd != int32(wd) || got[0].Mask != unix.IN_CREATE || string(got[0].Name) != "some-file-name" {
		t.Errorf("decoded %+v", got)
	}
}
