package qemu

import (
	"io"
	"net"
	"os"
	"time"
)

// RelayEnv names the environment variable that tells RelayMain where to
// connect: a loopback host:port.
const RelayEnv = "VOUCH_E2E_RELAY"

// RelayMain is the body of a relay command (VMConfig.Relay). QEMU runs one
// for each connection the guest opens to GuestAddr, with that connection on
// standard input and output (and standard error, so nothing may be written
// there). It copies bytes both ways between the guest and the loopback
// address in $VOUCH_E2E_RELAY, and returns the process exit code. A test
// binary calls it from TestMain when the variable is set.
func RelayMain() int {
	target := os.Getenv(RelayEnv)
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
