//go:build linux && (386 || arm || mips || mipsle)

package index

import "golang.org/x/sys/unix"

// sysFstatat is the fstatat system call that fills a unix.Stat_t: on
// 32-bit Linux, unix.Stat_t is the kernel's struct stat64.
const sysFstatat = unix.SYS_FSTATAT64
