package fsys

import "fmt"

// setOptions stores an FS in a *spool.Options. The field it sets is
// unexported, so that the spool's public API carries no seam; package spool
// registers the setter from its init, since fsys cannot import spool (spool
// imports fsys). It is written once, before main, and only read after: not
// a seam itself.
var setOptions any

// RegisterOptions is called by package spool's init only.
func RegisterOptions[O any](set func(*O, FS)) { setOptions = set }

// SetOptions makes the spool opened with opts (a *spool.Options) use fs
// instead of [OS]: the module's fault-injection tests use it.
func SetOptions[O any](opts *O, fs FS) {
	set, ok := setOptions.(func(*O, FS))
	if !ok {
		panic(fmt.Sprintf("fsys.SetOptions: no setter registered for %T (import package spool)", opts))
	}
	set(opts, fs)
}
