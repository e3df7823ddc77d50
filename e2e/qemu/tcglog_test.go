package qemu

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"hash"
)

// A deliberately small reader of crypto-agile TCG event logs, enough for
// the harness's own checks (which event differs from the corpus, does the
// log replay to the PCRs the guest read). The product's parser lives in the
// eventlog package.

type tcgEvent struct {
	Index   int
	PCR     uint32
	Type    uint32
	Digests map[uint16][]byte
	Data    []byte
}

const (
	algSHA1    = 0x0004
	algSHA256  = 0x000b
	evNoAction = 0x00000003
)

func parseTCGLog(b []byte) ([]tcgEvent, error) {
	le := binary.LittleEndian
	// The first event is a TCG_PCClientPCREvent (SHA-1 format) holding the
	// Spec ID event with the digest sizes.
	if len(b) < 32 {
		return nil, fmt.Errorf("log of %d bytes is too short", len(b))
	}
	n := le.Uint32(b[28:])
	if uint64(n) > uint64(len(b)-32) {
		return nil, fmt.Errorf("spec ID event of %d bytes overruns the log", n)
	}
	spec := b[32 : 32+n]
	if len(spec) < 28 || !bytes.HasPrefix(spec, []byte("Spec ID Event03\x00")) {
		return nil, fmt.Errorf("first event is not a crypto-agile Spec ID event")
	}
	count := le.Uint32(spec[24:])
	sizes := map[uint16]int{}
	p := spec[28:]
	for i := uint32(0); i < count; i++ {
		if len(p) < 4 {
			return nil, fmt.Errorf("spec ID event: digest size list truncated")
		}
		sizes[le.Uint16(p)] = int(le.Uint16(p[2:]))
		p = p[4:]
	}
	events := []tcgEvent{{PCR: le.Uint32(b), Type: le.Uint32(b[4:]), Data: spec}}
	rest := b[32+n:]
	for len(rest) > 0 {
		if len(rest) < 12 {
			return nil, fmt.Errorf("event %d: header truncated", len(events))
		}
		ev := tcgEvent{Index: len(events), PCR: le.Uint32(rest), Type: le.Uint32(rest[4:]), Digests: map[uint16][]byte{}}
		nd := le.Uint32(rest[8:])
		rest = rest[12:]
		for i := uint32(0); i < nd; i++ {
			if len(rest) < 2 {
				return nil, fmt.Errorf("event %d: digest truncated", ev.Index)
			}
			alg := le.Uint16(rest)
			size, ok := sizes[alg]
			if !ok || len(rest) < 2+size {
				return nil, fmt.Errorf("event %d: digest of algorithm %#x unknown or truncated", ev.Index, alg)
			}
			ev.Digests[alg] = rest[2 : 2+size]
			rest = rest[2+size:]
		}
		if len(rest) < 4 {
			return nil, fmt.Errorf("event %d: data size truncated", ev.Index)
		}
		ds := le.Uint32(rest)
		if uint64(ds) > uint64(len(rest)-4) {
			return nil, fmt.Errorf("event %d: data of %d bytes overruns the log", ev.Index, ds)
		}
		ev.Data = rest[4 : 4+ds]
		rest = rest[4+ds:]
		events = append(events, ev)
	}
	return events, nil
}

// replayTCGLog returns the PCR values the events extend, for one bank.
func replayTCGLog(events []tcgEvent, alg uint16) map[uint32][]byte {
	newHash := map[uint16]func() hash.Hash{algSHA1: sha1.New, algSHA256: sha256.New}[alg]
	pcrs := map[uint32][]byte{}
	for _, ev := range events[1:] {
		if ev.Type == evNoAction {
			continue
		}
		cur, ok := pcrs[ev.PCR]
		if !ok {
			cur = make([]byte, newHash().Size())
		}
		h := newHash()
		h.Write(cur)
		h.Write(ev.Digests[alg])
		pcrs[ev.PCR] = h.Sum(nil)
	}
	return pcrs
}
