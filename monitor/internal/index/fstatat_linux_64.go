//go:build linux && (amd64 || arm64 || ppc64 || ppc64le || riscv64 || s390x)

package index

import "golang.org/x/sys/unix"

// sysFstatat is the fstatat system call that fills a unix.Stat_t.
const sysFstatat = unix.SYS_NEWFSTATAT
