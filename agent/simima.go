package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/ima"
)

// SimulatedIMA plays the kernel's part of IMA for a simulated boot, in
// tests and demonstrations. Sync appends the entries of a recorded list
// (Source, binary or ascii) that the agent's list (List, binary) lacks, and
// extends each into the TPM as the kernel does when it measures a file.
// The first entry of List is a boot_aggregate computed from the TPM's
// SHA-256 PCRs 0-9 in place of the recorded one, so that it matches the
// simulated boot.
type SimulatedIMA struct {
	Device *DeviceTPM
	Source string
	List   string
}

// imaBanks are the banks a simulated kernel extends, where the TPM has them.
var imaBanks = []attest.Algorithm{attest.AlgSHA1, attest.AlgSHA256, attest.AlgSHA384, attest.AlgSHA512}

// Sync appends the entries of Source beyond the length of List to List
// and extends them into the TPM. It returns the number of entries added.
func (s *SimulatedIMA) Sync() (int, error) {
	src, err := os.ReadFile(s.Source)
	if err != nil {
		return 0, fmt.Errorf("simulated IMA: %w", err)
	}
	entries, _, err := ima.Parse(src, ima.ParseOptions{})
	if err != nil {
		return 0, fmt.Errorf("simulated IMA: %s: %w", s.Source, err)
	}
	if len(entries) == 0 {
		return 0, nil
	}
	if f, err := entries[0].Fields(); err != nil || string(f.Name) != ima.BootAggregateName {
		return 0, fmt.Errorf("simulated IMA: %s does not start with a boot_aggregate", s.Source)
	}
	list, err := os.ReadFile(s.List)
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, err
	}
	have := 0
	if len(list) > 0 {
		dec := ima.NewBinaryDecoder(list, ima.ParseOptions{})
		for dec.Next() {
			have++
		}
		if dec.Err() != nil {
			return 0, fmt.Errorf("simulated IMA: %s: %w", s.List, dec.Err())
		}
	}
	added := 0
	if have == 0 {
		if err := SimulateIMA(s.Device, s.List, nil); err != nil {
			return 0, err
		}
		if list, err = os.ReadFile(s.List); err != nil {
			return 0, err
		}
		have, added = 1, 1
	}
	for i := have; i < len(entries); i++ {
		e := &entries[i]
		digests := map[attest.Algorithm][]byte{}
		for _, alg := range imaBanks {
			if e.IsViolation() {
				digests[alg] = bytes.Repeat([]byte{0xff}, alg.Size())
			} else if h, err := e.TemplateHashOf(alg); err == nil {
				digests[alg] = h
			}
		}
		if _, err := s.Device.Extend(int(e.PCR), digests); err != nil {
			return added, fmt.Errorf("simulated IMA: entry %d: %w", i, err)
		}
		list = ima.AppendBinary(list, e)
		added++
	}
	if added > 0 {
		if err := os.WriteFile(s.List, list, 0o600); err != nil {
			return added, err
		}
	}
	return added, nil
}

// beforeQuote runs a function before each quote of a TPM.
type beforeQuote struct {
	TPM
	fn func() error
}

func (b beforeQuote) Quote(nonce []byte, pcrs []int) ([]byte, []byte, []api.PCRBank, error) {
	if err := b.fn(); err != nil {
		return nil, nil, nil, err
	}
	return b.TPM.Quote(nonce, pcrs)
}

// WithBeforeQuote returns t with fn run before each quote, such as
// SimulatedIMA.Sync.
func WithBeforeQuote(t TPM, fn func() error) TPM { return beforeQuote{TPM: t, fn: fn} }
