package eventlog

import (
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"errors"
	"fmt"
)

// NumPCRs is the number of PCRs of a PC Client TPM. Replay computes
// indexes 0 to NumPCRs-1.
const NumPCRs = 24

// ErrBadPCRIndex is wrapped by the Replay error for an event that would
// extend a PCR index outside 0 to NumPCRs-1.
var ErrBadPCRIndex = errors.New("PCR index out of range")

// replayState is the running PCR values of every bank the log covers and
// this package can hash. Values live in one byte slice, so replay does not
// allocate per event.
type replayState struct {
	algs  []Algorithm
	sizes []int // digest size of each bank
	// buf holds the PCRs of every bank, NumPCRs digests of the bank's
	// size each, one bank after the other.
	buf    []byte
	starts []int // offset of each bank in buf
}

// pcr returns the running value of PCR i of bank b.
func (st *replayState) pcr(b, i int) []byte {
	size := st.sizes[b]
	off := st.starts[b] + i*size
	return st.buf[off : off+size : off+size]
}

// resetValue returns the value PCR i holds after TPM2_Startup: all ones for
// the dynamic-root PCRs 17 to 22, zero otherwise (PC Client Platform TPM
// Profile, section 4.6). PCR 0's locality is applied by the replay.
func resetValue(i int) byte {
	if i >= 17 && i <= 22 {
		return 0xFF
	}
	return 0
}

// Replay computes the PCR values the log's events produce, for every bank
// the log has digests for and this package can hash (SM3_256 banks are
// left out). It follows the PC Client Platform Firmware Profile:
//
//   - PCRs start at their reset values: zero, or all ones for 17 to 22;
//   - a StartupLocality EV_NO_ACTION event for PCR 0 sets PCR 0's last
//     byte to the locality, and an EV_EFI_HCRTM_EVENT, when no StartupLocality event
//     sets the locality, starts PCR 0 at locality 4;
//   - EV_NO_ACTION events are never extended, whatever their PCR index;
//   - every other event extends its digest into its PCR, and an index
//     outside 0 to 23 is an error wrapping ErrBadPCRIndex.
//
// The result has all 24 PCRs of every replayed bank.
func Replay(log *Log) (PCRValues, error) {
	st, err := replay(log, nil)
	if err != nil {
		return nil, err
	}
	return st.values(), nil
}

// replay replays the banks of the log that are in only, or all of them
// when only is nil.
func replay(log *Log, only PCRValues) (*replayState, error) {
	n := 0
	for _, a := range log.Banks {
		if _, want := only[a]; a.hashable() && (only == nil || want) {
			n++
		}
	}
	st := &replayState{
		algs:   make([]Algorithm, 0, n),
		sizes:  make([]int, 0, n),
		starts: make([]int, 0, n),
	}
	total := 0
	for _, a := range log.Banks {
		if _, want := only[a]; a.hashable() && (only == nil || want) {
			st.algs = append(st.algs, a)
			st.sizes = append(st.sizes, a.Size())
			st.starts = append(st.starts, total)
			total += NumPCRs * a.Size()
		}
	}
	st.buf = make([]byte, total)
	for b := range st.algs {
		for i := 17; i <= 22; i++ {
			copy(st.pcr(b, i), onesBlock[:])
		}
	}

	locality, haveLocality, hcrtm := startLocality(log)
	if haveLocality || hcrtm {
		if !haveLocality {
			locality = 4
		}
		for b := range st.algs {
			st.pcr(b, 0)[st.sizes[b]-1] = locality
		}
	}

	for i := range log.Events {
		e := &log.Events[i]
		if e.Type == EV_NO_ACTION {
			continue
		}
		if e.PCR >= NumPCRs {
			return nil, fmt.Errorf("event %d at byte offset %d: %s event for PCR %d: %w (0 to %d); the log is corrupt or not a PC Client log", e.Number, e.Offset, e.Type, e.PCR, ErrBadPCRIndex, NumPCRs-1)
		}
		for _, d := range e.Digests {
			b := st.bank(d.Alg)
			if b < 0 {
				continue
			}
			extend(d.Alg, st.pcr(b, int(e.PCR)), d.Value)
		}
	}
	return st, nil
}

// startLocality finds the StartupLocality event and whether an H-CRTM
// event is present.
func startLocality(log *Log) (locality byte, ok, hcrtm bool) {
	for i := range log.Events {
		e := &log.Events[i]
		switch e.Type {
		case EV_NO_ACTION:
			if l, isLoc := startupLocality(e); isLoc && !ok && e.PCR == 0 {
				locality, ok = l, true
			}
		case EV_EFI_HCRTM_EVENT:
			hcrtm = true
		}
	}
	return locality, ok, hcrtm
}

func (st *replayState) bank(a Algorithm) int {
	for i, x := range st.algs {
		if x == a {
			return i
		}
	}
	return -1
}

func (st *replayState) values() PCRValues {
	out := make(PCRValues, len(st.algs))
	for b, a := range st.algs {
		size := st.sizes[b]
		m := make(map[int][]byte, NumPCRs)
		buf := make([]byte, NumPCRs*size)
		for i := 0; i < NumPCRs; i++ {
			v := buf[i*size : (i+1)*size : (i+1)*size]
			copy(v, st.pcr(b, i))
			m[i] = v
		}
		out[a] = m
	}
	return out
}

// extend sets pcr to H(pcr || digest) for the bank's algorithm. pcr and
// digest must both have the algorithm's digest size.
func extend(alg Algorithm, pcr, digest []byte) {
	var buf [2 * sha512.Size]byte
	n := copy(buf[:], pcr)
	n += copy(buf[n:], digest)
	switch alg {
	case SHA1:
		s := sha1.Sum(buf[:n])
		copy(pcr, s[:])
	case SHA256:
		s := sha256.Sum256(buf[:n])
		copy(pcr, s[:])
	case SHA384:
		s := sha512.Sum384(buf[:n])
		copy(pcr, s[:])
	case SHA512:
		s := sha512.Sum512(buf[:n])
		copy(pcr, s[:])
	}
}

// digestOf returns H(data) for the algorithm into dst, which must have room
// for the digest size, and returns the filled slice.
func digestOf(alg Algorithm, dst *[sha512.Size]byte, data []byte) []byte {
	switch alg {
	case SHA1:
		s := sha1.Sum(data)
		return dst[:copy(dst[:], s[:])]
	case SHA256:
		s := sha256.Sum256(data)
		return dst[:copy(dst[:], s[:])]
	case SHA384:
		s := sha512.Sum384(data)
		return dst[:copy(dst[:], s[:])]
	case SHA512:
		s := sha512.Sum512(data)
		return dst[:copy(dst[:], s[:])]
	}
	return nil
}
