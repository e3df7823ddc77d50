package tpm

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/vouch-attest/vouch/attest"
)

func TestOpenRejectsInvalidTransports(t *testing.T) {
	for _, spec := range []string{
		"carrier-pigeon",
		"swtpm",
		"swtpm:tcp",
		"swtpm:udp:127.0.0.1:2321",
		"swtpm:unix:",
		"simulator:extra",
	} {
		t.Run(spec, func(t *testing.T) {
			_, err := Open(Config{Transport: spec})
			if err == nil || !strings.Contains(err.Error(), "invalid TPM transport") {
				t.Fatalf("Open(%q): got %v, want an invalid-transport error", spec, err)
			}
		})
	}
}

func TestOpenMissingDevice(t *testing.T) {
	path := filepath.Join(t.TempDir(), "tpmrm0")
	_, err := Open(Config{Transport: "device:" + path})
	if !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("Open of a missing device: got %v, want os.ErrNotExist", err)
	}
}

func TestOpenSwtpmNotListening(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "none.sock")
	_, err := Open(Config{Transport: "swtpm:unix:" + sock})
	if err == nil || !strings.Contains(err.Error(), "is swtpm running") {
		t.Fatalf("Open of a socket nobody listens on: got %v", err)
	}
}

func TestExtendPCRValidatesDigests(t *testing.T) {
	tp := openTestSimulator(t)
	if err := tp.ExtendPCR(16, map[attest.Algorithm][]byte{attest.AlgSHA256: make([]byte, 20)}); err == nil {
		t.Error("ExtendPCR accepted a 20-byte SHA-256 digest")
	}
	if err := tp.ExtendPCR(32, map[attest.Algorithm][]byte{attest.AlgSHA256: make([]byte, 32)}); err == nil {
		t.Error("ExtendPCR accepted PCR 32")
	}
	if err := tp.ExtendPCR(16, nil); err == nil {
		t.Error("ExtendPCR accepted no digest")
	}

	// A valid extend changes exactly the named bank.
	before, err := tp.ReadPCRs(attest.Selection{{Hash: attest.AlgSHA1, PCRs: []int{16}}, {Hash: attest.AlgSHA256, PCRs: []int{16}}})
	if err != nil {
		t.Fatal(err)
	}
	if err := tp.ExtendPCR(16, map[attest.Algorithm][]byte{attest.AlgSHA256: make([]byte, 32)}); err != nil {
		t.Fatalf("ExtendPCR: %v", err)
	}
	after, err := tp.ReadPCRs(attest.Selection{{Hash: attest.AlgSHA1, PCRs: []int{16}}, {Hash: attest.AlgSHA256, PCRs: []int{16}}})
	if err != nil {
		t.Fatal(err)
	}
	if string(after[attest.AlgSHA1][16]) != string(before[attest.AlgSHA1][16]) {
		t.Error("extending the SHA-256 bank changed the SHA-1 bank")
	}
	h := attest.HashFunc(attest.AlgSHA256).New()
	h.Write(before[attest.AlgSHA256][16])
	h.Write(make([]byte, 32))
	if string(after[attest.AlgSHA256][16]) != string(h.Sum(nil)) {
		t.Error("SHA-256 PCR 16 is not H(old || digest) after the extend")
	}
}

func TestReadAllPCRs(t *testing.T) {
	tp := openTestSimulator(t)
	vals, err := tp.ReadPCRs(nil)
	if err != nil {
		t.Fatalf("ReadPCRs(nil): %v", err)
	}
	banks, err := tp.ActiveBanks()
	if err != nil {
		t.Fatal(err)
	}
	for _, b := range banks {
		if got := len(vals[b.Hash]); got != len(b.PCRs) {
			t.Errorf("bank %s: %d values, want %d", b.Hash, got, len(b.PCRs))
		}
		for i, d := range vals[b.Hash] {
			if len(d) != b.Hash.Size() {
				t.Errorf("%s PCR %d has %d bytes", b.Hash, i, len(d))
			}
		}
	}
}
