//go:build unix

package eventlog

import (
	"syscall"
	"time"
)

// processCPUTime returns the user and system CPU time of this process,
// which, unlike wall time, does not grow while other processes hold the
// CPU.
func processCPUTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
