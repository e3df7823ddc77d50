package qemu

import (
	"io"
	"net"
	"os"
	"time"
)

// RelayEnv is set to 1 in QEMU's environment. A test binary that finds
// it set runs as a relay command and calls RelayMain.
const RelayEnv = "VOUCH_E2E_RELAY"

// RelayMain is the body of a relay command (VMConfig.Relay). QEMU runs one
// for each connection the guest opens to a forwarded address. The
// connection is on standard input, output and error, so nothing may be
// written to standard error. The only argument is the loopback host:port
// to connect to. RelayMain copies bytes both ways and returns the process
// exit code. A test binary calls it from TestMain when RelayEnv is set.
func RelayMain() int {
	if len(os.Args) != 2 {
		return 2
	}
	target := os.Args[1]
	host, _, err := net.SplitHostPort(target)
	if err != nil || !net.ParseIP(host).IsLoopback() {
		return 2 // only loopback targets: the guest must reach nothing else
	}
	guest, err := net.FileConn(os.Stdin)
	if err != nil {
		return 3
	}
	defer guest.Close()
	server, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return 4
	}
	defer server.Close()
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		_, _ = io.Copy(dst, src)
		if cw, ok := dst.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
		done <- struct{}{}
	}
	go pipe(server, guest)
	go pipe(guest, server)
	<-done
	<-done
	return 0
}
