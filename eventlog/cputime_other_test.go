//go:build !unix

package eventlog

import "time"

// processCPUTime returns 0 where getrusage is unavailable, and the
// benchmark then reports no CPU-time ratio.
func processCPUTime() time.Duration { return 0 }
