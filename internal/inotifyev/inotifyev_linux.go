package inotifyev

import (
	"bytes"
	"encoding/binary"

	"golang.org/x/sys/unix"
)

// Event is one inotify event. Name is empty for an event about the watched
// directory itself (and for IN_Q_OVERFLOW and IN_IGNORED); it aliases the
// buffer passed to Each.
type Event struct {
	Wd   int32  // the watch descriptor; -1 for IN_Q_OVERFLOW
	Mask uint32 // IN_* bits
	Name []byte // the name in the watched directory, without its padding
}

// Each calls fn for every whole event in buf, in order. A truncated event
// at the end (which the kernel never writes) is ignored.
func Each(buf []byte, fn func(Event)) {
	for len(buf) >= unix.SizeofInotifyEvent {
		n := int(binary.NativeEndian.Uint32(buf[12:16]))
		if unix.SizeofInotifyEvent+n > len(buf) {
			return
		}
		name := buf[unix.SizeofInotifyEvent : unix.SizeofInotifyEvent+n]
		if i := bytes.IndexByte(name, 0); i >= 0 {
			name = name[:i]
		}
		fn(Event{
			Wd:   int32(binary.NativeEndian.Uint32(buf[0:4])),
			Mask: binary.NativeEndian.Uint32(buf[4:8]),
			Name: name,
		})
		buf = buf[unix.SizeofInotifyEvent+n:]
	}
}
