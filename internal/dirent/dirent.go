// Package dirent lists directories the way the kernel hands them out: a
// buffer of directory records per system call, parsed in place into name,
// type and inode, with no allocation per entry. A spool directory may
// hold a million names; listing it through os.ReadDir would allocate a
// string and a DirEntry for each.
//
// Read fills a buffer from a directory descriptor (getdents64 on Linux,
// getdirentries on darwin and FreeBSD) and Parse walks the records in it.
// ReadAll does both until the directory ends.
package dirent

import (
	"encoding/binary"
	"errors"
)

// Type is an entry's file type as the directory records it (d_type).
type Type uint8

// File types. The values are d_type's, the same on Linux, darwin and
// FreeBSD; other values are other special files.
const (
	Unknown   Type = 0 // the file system does not record types: stat the file
	Directory Type = 4
	Regular   Type = 8
	Symlink   Type = 10
)

// Entry is one directory entry.
type Entry struct {
	// Name is the entry's name, valid only during the callback (it points
	// into the read buffer). The byte after it in memory is a NUL
	// (Name[:len(Name)+1] is NUL-terminated), so a system call can take
	// it as a C string without a copy.
	Name []byte
	Ino  uint64
	Type Type
}

// ErrUnsupported reports a system on which this package cannot read
// directories.
var ErrUnsupported = errors.New("dirent: directory reading not supported on this system")

// layout is where a system's directory record keeps its fields.
type layout struct {
	ino, reclen, typ, name int
	namlen                 int // offset of a 16-bit name length, or -1: the name ends at its NUL
}

// Record layouts (offsets in golang.org/x/sys/unix.Dirent).
var (
	linuxLayout   = layout{ino: 0, reclen: 16, typ: 18, name: 19, namlen: -1} // linux_dirent64
	darwinLayout  = layout{ino: 0, reclen: 16, typ: 20, name: 21, namlen: 18} // struct dirent, 64-bit inodes
	freebsdLayout = layout{ino: 0, reclen: 16, typ: 18, name: 24, namlen: 20} // struct dirent since FreeBSD 12
)

// Parse calls f for each directory record in b (as Read returned them),
// except "." and "..", in order. It stops at a record that does not fit
// in b.
func Parse(b []byte, f func(Entry)) { native.parse(b, f) }

func (l layout) parse(b []byte, f func(Entry)) {
	for len(b) > l.name {
		reclen := int(binary.NativeEndian.Uint16(b[l.reclen:]))
		if reclen <= l.name || reclen > len(b) {
			return
		}
		rec := b[:reclen]
		b = b[reclen:]
		name := rec[l.name:]
		if l.namlen >= 0 {
			n := int(binary.NativeEndian.Uint16(rec[l.namlen:]))
			if n >= len(name) {
				continue // no room for the NUL: malformed
			}
			name = name[:n]
		} else {
			n := 0
			for n < len(name) && name[n] != 0 {
				n++
			}
			if n == len(name) {
				continue // not NUL-terminated: malformed
			}
			name = name[:n]
		}
		if len(name) == 0 || name[0] == '.' && (len(name) == 1 || len(name) == 2 && name[1] == '.') {
			continue
		}
		f(Entry{Name: name, Ino: binary.NativeEndian.Uint64(rec[l.ino:]), Type: Type(rec[l.typ])})
	}
}

// ReadAll lists the directory open at fd from its current offset to its
// end, calling f for each entry but "." and "..", using buf (a few
// hundred KiB lists a large directory in few calls) for the records.
func ReadAll(fd int, buf []byte, f func(Entry)) error {
	for {
		n, err := Read(fd, buf)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		Parse(buf[:n], f)
	}
}
