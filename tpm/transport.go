package tpm

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// ErrNoSimulator is returned by Open for the simulator transport in a
// build without cgo, which cannot include the reference simulator.
var ErrNoSimulator = errors.New("this build of vouch has no TPM simulator (it was built with CGO_ENABLED=0): use a swtpm socket or a TPM device")

// ErrSwtpmBusy is returned by Open when swtpm accepts the connection but
// sends no response within Config.SwtpmTimeout. swtpm serves one client of
// its data channel at a time and queues the others, so the usual cause is
// another process that has the socket open.
var ErrSwtpmBusy = errors.New("swtpm socket busy")

// DefaultSwtpmTimeout is the time Open waits for swtpm's first response
// when Config.SwtpmTimeout is zero.
const DefaultSwtpmTimeout = 10 * time.Second

// Transport names accepted by Config.Transport.
const (
	// TransportDevice opens /dev/tpmrm0, or /dev/tpm0 when the kernel has
	// no resource manager. "device:/path" opens the given device.
	TransportDevice = "device"
	// TransportSimulator runs the reference simulator in this process. It
	// starts from a fresh, random state and discards it on Close.
	TransportSimulator = "simulator"
	// TransportSwtpm connects to a swtpm data socket: "swtpm:tcp:HOST:PORT"
	// or "swtpm:unix:/path".
	TransportSwtpm = "swtpm"
)

// Default device paths, tried in order.
var devicePaths = []string{"/dev/tpmrm0", "/dev/tpm0"}

// maxResponseSize bounds a TPM response read from a socket. TPM responses
// are at most a few KiB (MAX_RESPONSE_SIZE is 4096 on most TPMs).
const maxResponseSize = 1 << 16

// CheckTransport returns an error when spec is not a valid TPM transport
// string, without opening anything.
func CheckTransport(spec string) error {
	_, _, _, err := parseTransport(spec)
	return err
}

// parseTransport splits a transport string into its kind and, for swtpm,
// the network and address; a device's path is returned as addr.
func parseTransport(spec string) (kind, network, addr string, err error) {
	kind, rest, _ := strings.Cut(spec, ":")
	switch kind {
	case "", TransportDevice:
		return TransportDevice, "", rest, nil
	case TransportSimulator:
		if rest != "" {
			return "", "", "", fmt.Errorf("invalid TPM transport %q: the simulator takes no address", spec)
		}
		return kind, "", "", nil
	case TransportSwtpm:
		network, addr, ok := strings.Cut(rest, ":")
		if !ok || addr == "" || (network != "tcp" && network != "unix") {
			return "", "", "", fmt.Errorf("invalid TPM transport %q: use swtpm:tcp:HOST:PORT or swtpm:unix:/path/to/socket", spec)
		}
		return kind, network, addr, nil
	}
	return "", "", "", fmt.Errorf("invalid TPM transport %q: use device, device:/dev/tpmrm0, swtpm:tcp:HOST:PORT, swtpm:unix:/path or simulator", spec)
}

// openTransport parses a transport string and opens it.
func openTransport(spec string, swtpmTimeout time.Duration) (transport.TPMCloser, string, error) {
	kind, network, addr, err := parseTransport(spec)
	if err != nil {
		return nil, "", err
	}
	switch kind {
	case TransportSimulator:
		t, err := openSimulator()
		return t, "simulator", err
	case TransportSwtpm:
		t, err := dialSwtpm(network, addr, swtpmTimeout)
		if err != nil {
			return nil, "", err
		}
		return t, "swtpm " + network + " " + addr, nil
	}
	return openDevice(addr)
}

func openDevice(path string) (transport.TPMCloser, string, error) {
	paths := devicePaths
	if path != "" {
		paths = []string{path}
	}
	var first error
	for _, p := range paths {
		f, err := openDeviceFile(p)
		if err != nil {
			if first == nil {
				first = err
			}
			continue
		}
		return &deviceTransport{f: f}, p, nil
	}
	return nil, "", fmt.Errorf("opening TPM device: %w (tried %s; no TPM here? use --tpm swtpm:... or --tpm simulator)", first, strings.Join(paths, ", "))
}

// deviceTransport sends commands to a TPM character device. The kernel
// returns a whole response per read.
type deviceTransport struct {
	f *os.File
}

func (d *deviceTransport) Send(cmd []byte) ([]byte, error) {
	if _, err := d.f.Write(cmd); err != nil {
		return nil, fmt.Errorf("writing TPM command to %s: %w", d.f.Name(), err)
	}
	buf := make([]byte, maxResponseSize)
	n, err := d.f.Read(buf)
	if err != nil {
		return nil, fmt.Errorf("reading TPM response from %s: %w", d.f.Name(), err)
	}
	return buf[:n], nil
}

func (d *deviceTransport) Close() error { return d.f.Close() }

// streamTransport sends raw TPM commands over a stream socket (the swtpm
// data channel) and reads each response by its header's size field.
type streamTransport struct {
	mu   sync.Mutex
	conn net.Conn
	addr string
	// firstTimeout bounds the wait for the first response. swtpm queues
	// a connection while another client holds the data channel, so the
	// connect succeeds and only the missing response shows the wait.
	firstTimeout time.Duration
	answered     bool
}

func dialSwtpm(network, addr string, firstTimeout time.Duration) (*streamTransport, error) {
	if firstTimeout <= 0 {
		firstTimeout = DefaultSwtpmTimeout
	}
	conn, err := net.DialTimeout(network, addr, firstTimeout)
	if err != nil {
		return nil, fmt.Errorf("connecting to swtpm at %s %s: %w (is swtpm running with --server type=%s?)", network, addr, err, map[string]string{"tcp": "tcp,port=PORT", "unix": "unixio,path=PATH"}[network])
	}
	return &streamTransport{conn: conn, addr: network + " " + addr, firstTimeout: firstTimeout}, nil
}

func (s *streamTransport) Send(cmd []byte) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.answered {
		if err := s.conn.SetDeadline(time.Now().Add(s.firstTimeout)); err != nil {
			return nil, fmt.Errorf("setting a deadline on the swtpm socket %s: %w", s.addr, err)
		}
	}
	rsp, err := s.roundTrip(cmd)
	if err != nil {
		if !s.answered && errors.Is(err, os.ErrDeadlineExceeded) {
			return nil, fmt.Errorf("swtpm at %s sent no response within %s: another process probably holds the socket, since swtpm serves one client at a time; stop that process (a vouch agent, for example) or wait for it to finish: %w",
				s.addr, s.firstTimeout, ErrSwtpmBusy)
		}
		return nil, err
	}
	if !s.answered {
		// Later commands may take long (key generation), and swtpm
		// serves this connection until it closes.
		if err := s.conn.SetDeadline(time.Time{}); err != nil {
			return nil, fmt.Errorf("clearing the deadline on the swtpm socket %s: %w", s.addr, err)
		}
		s.answered = true
	}
	return rsp, nil
}

func (s *streamTransport) roundTrip(cmd []byte) ([]byte, error) {
	if _, err := s.conn.Write(cmd); err != nil {
		return nil, fmt.Errorf("sending TPM command to swtpm: %w", err)
	}
	// A response starts with tag (2 bytes), responseSize (4) and
	// responseCode (4).
	hdr := make([]byte, 10)
	if _, err := io.ReadFull(s.conn, hdr); err != nil {
		return nil, fmt.Errorf("reading TPM response header from swtpm: %w", err)
	}
	size := binary.BigEndian.Uint32(hdr[2:6])
	if size < 10 || size > maxResponseSize {
		return nil, fmt.Errorf("swtpm response size %d is outside 10..%d: the socket is not a swtpm data channel (use the --server port, not --ctrl)", size, maxResponseSize)
	}
	rsp := make([]byte, size)
	copy(rsp, hdr)
	if _, err := io.ReadFull(s.conn, rsp[10:]); err != nil {
		return nil, fmt.Errorf("reading TPM response body from swtpm: %w", err)
	}
	return rsp, nil
}

func (s *streamTransport) Close() error { return s.conn.Close() }

// startup sends TPM2_Startup(CLEAR) and accepts TPM_RC_INITIALIZE, which a
// TPM returns when it has already been started (by firmware, or by swtpm's
// --flags startup-clear).
func startup(t transport.TPM) error {
	_, err := tpm2.Startup{StartupType: tpm2.TPMSUClear}.Execute(t)
	if err == nil || errors.Is(err, tpm2.TPMRCInitialize) {
		return nil
	}
	if errors.Is(err, ErrSwtpmBusy) {
		return err
	}
	return fmt.Errorf("TPM2_Startup: %w (start swtpm with --flags not-need-init,startup-clear)", err)
}
