package ima

import (
	"bytes"
	"crypto/sha1"
	"crypto/sha256"
	"encoding"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"hash"
	"slices"
)

// ExtendScheme is a way the kernel extends the PCR banks other than SHA-1.
// Both give the same SHA-1 bank.
type ExtendScheme int

const (
	// PerBankHash extends each bank with the template data hashed by that
	// bank's algorithm, as kernels with per-bank template digests do
	// (Linux 5.8 and later). Violations extend all ones of the bank's size.
	PerBankHash ExtendScheme = iota + 1
	// PaddedSHA1 extends every bank with the SHA-1 template hash padded
	// with zeros to the bank's size, as older kernels do. Violations extend
	// 20 bytes of ones padded with zeros.
	PaddedSHA1
)

var schemes = []ExtendScheme{PerBankHash, PaddedSHA1}

func (s ExtendScheme) String() string {
	switch s {
	case PerBankHash:
		return "per-bank-hash"
	case PaddedSHA1:
		return "padded-sha1"
	}
	return "none"
}

// MarshalText encodes the scheme by name.
func (s ExtendScheme) MarshalText() ([]byte, error) {
	if s != PerBankHash && s != PaddedSHA1 {
		return nil, fmt.Errorf("invalid extend scheme %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText decodes a scheme name written by MarshalText.
func (s *ExtendScheme) UnmarshalText(b []byte) error {
	for _, c := range schemes {
		if string(b) == c.String() {
			*s = c
			return nil
		}
	}
	return fmt.Errorf("unknown extend scheme %q: want per-bank-hash or padded-sha1", b)
}

// HexBytes is a byte string that encodes to JSON as hexadecimal.
type HexBytes []byte

// MarshalText encodes b as lowercase hexadecimal.
func (b HexBytes) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(b)), nil }

// UnmarshalText decodes hexadecimal.
func (b *HexBytes) UnmarshalText(text []byte) error {
	v, err := hex.DecodeString(string(text))
	if err != nil {
		return fmt.Errorf("invalid hex value %q: %w", truncateForError(text), err)
	}
	*b = v
	return nil
}

// schemeValues holds one scheme's running PCR values for one bank.
type schemeValues struct {
	scheme ExtendScheme
	pcrs   [maxPCR][]byte
}

// bankReplay replays one bank under each extend scheme still possible.
type bankReplay struct {
	alg     Algorithm
	size    int
	schemes []*schemeValues
	// quoted and quotedMask hold the quote's values for this bank.
	quoted     [maxPCR][]byte
	quotedMask uint32
}

// engine replays entries into every bank and hashes the entries into the
// prefix hash. It does not allocate per entry.
type engine struct {
	banks      []*bankReplay
	touched    uint32 // bit i set when an entry extended PCR i
	count      int    // entries replayed
	violations int
	prefix     hash.Hash
	needSHA1   bool // some bank replays PaddedSHA1
	// scratch holds one entry's prefix hash input: PCR, two lengths, a
	// template hash and name of at most 64 bytes each, and a SHA-256.
	scratch [4 + 1 + 64 + 1 + maxTemplateNameLen + 32]byte
}

func newEngine(algs []Algorithm, use []ExtendScheme) (*engine, error) {
	e := &engine{prefix: sha256.New()}
	for _, alg := range algs {
		if slices.ContainsFunc(e.banks, func(b *bankReplay) bool { return b.alg == alg }) {
			continue
		}
		if !supported(alg) {
			return nil, fmt.Errorf("PCR bank %s is not supported: replay needs sha1, sha256, sha384 or sha512", alg)
		}
		b := &bankReplay{alg: alg, size: alg.Size()}
		for _, s := range use {
			if alg == SHA1 && s == PaddedSHA1 {
				continue // identical to PerBankHash for SHA-1
			}
			b.schemes = append(b.schemes, newSchemeValues(s, b.size))
		}
		e.banks = append(e.banks, b)
	}
	e.updateNeeds()
	return e, nil
}

func (b *bankReplay) has(s ExtendScheme) bool {
	for _, v := range b.schemes {
		if v.scheme == s {
			return true
		}
	}
	return false
}

func newSchemeValues(s ExtendScheme, size int) *schemeValues {
	v := &schemeValues{scheme: s}
	backing := make([]byte, maxPCR*size)
	for i := range v.pcrs {
		v.pcrs[i] = backing[i*size : (i+1)*size : (i+1)*size]
	}
	return v
}

func (e *engine) updateNeeds() {
	e.needSHA1 = false
	for _, b := range e.banks {
		for _, s := range b.schemes {
			if s.scheme == PaddedSHA1 || b.alg == SHA1 {
				e.needSHA1 = true
			}
		}
	}
}

// step replays one entry. It returns a *VerificationError when the
// entry's template data does not hash to its logged template hash.
func (e *engine) step(ent *Entry) error {
	if ent.PCR >= maxPCR {
		return fmt.Errorf("entry %d: PCR index %d is out of range", ent.Index, ent.PCR)
	}
	pcr := ent.PCR
	e.touched |= 1 << pcr
	e.count++

	if ent.IsViolation() {
		e.violations++
		var ones, padded [64]byte
		for i := range ones {
			ones[i] = 0xff
		}
		copy(padded[:], ones[:sha1Size])
		for _, b := range e.banks {
			for _, s := range b.schemes {
				if s.scheme == PaddedSHA1 {
					extend(s.pcrs[pcr], b.alg, padded[:b.size])
				} else {
					extend(s.pcrs[pcr], b.alg, ones[:b.size])
				}
			}
		}
		e.hashPrefix(ent, nil)
		return nil
	}

	// Hash first, extend next, check the logged hash last: an entry
	// whose logged hash is wrong is still replayed with its computed
	// hashes, so that a full replay can report every bad entry.
	var sha1Hash digest
	var err error
	if e.needSHA1 || len(ent.TemplateHash) == sha1Size {
		if sha1Hash, err = ent.templateHash(SHA1); err != nil {
			return &VerificationError{Reason: ReasonTemplateHash, Entry: ent.Index, Detail: err.Error()}
		}
	}
	var bankHashes [4]digest
	for i, b := range e.banks {
		switch {
		case b.alg == SHA1:
			bankHashes[i] = sha1Hash
		case b.has(PerBankHash):
			if bankHashes[i], err = ent.templateHash(b.alg); err != nil {
				return &VerificationError{Reason: ReasonTemplateHash, Entry: ent.Index, Detail: err.Error()}
			}
		}
	}
	for i, b := range e.banks {
		for _, s := range b.schemes {
			if s.scheme == PaddedSHA1 {
				var padded [64]byte
				copy(padded[:], sha1Hash.bytes())
				extend(s.pcrs[pcr], b.alg, padded[:b.size])
			} else {
				extend(s.pcrs[pcr], b.alg, bankHashes[i].bytes())
			}
		}
	}
	var dataHash *digest
	for i, b := range e.banks {
		if b.alg == SHA256 && bankHashes[i].n > 0 && ent.TemplateName != TemplateIMA {
			dataHash = &bankHashes[i]
		}
	}
	e.hashPrefix(ent, dataHash)

	loggedAlg, ok := loggedAlgorithm(len(ent.TemplateHash))
	if !ok {
		return &VerificationError{Reason: ReasonTemplateHash, Entry: ent.Index,
			Detail: fmt.Sprintf("template hash has %d bytes, which matches no supported algorithm", len(ent.TemplateHash))}
	}
	computed := sha1Hash
	if loggedAlg != SHA1 {
		found := false
		for i, b := range e.banks {
			if b.alg == loggedAlg && bankHashes[i].n > 0 {
				computed, found = bankHashes[i], true
			}
		}
		if !found {
			if computed, err = ent.templateHash(loggedAlg); err != nil {
				return &VerificationError{Reason: ReasonTemplateHash, Entry: ent.Index, Detail: err.Error()}
			}
		}
	}
	if !bytes.Equal(computed.bytes(), ent.TemplateHash) {
		return templateHashError(ent, slices.Clone(computed.bytes()), loggedAlg)
	}
	return nil
}

func templateHashError(ent *Entry, got []byte, alg Algorithm) *VerificationError {
	return &VerificationError{Reason: ReasonTemplateHash, Entry: ent.Index, Detail: fmt.Sprintf(
		"%s entry: template data hashes to %x with %s, but the logged template hash is %x",
		ent.TemplateName, got, alg, ent.TemplateHash)}
}

// extend sets pcr to H(pcr || d) in place.
func extend(pcr []byte, alg Algorithm, d []byte) {
	var buf [128]byte
	n := copy(buf[:], pcr)
	n += copy(buf[n:], d)
	switch alg {
	case SHA1:
		s := sha1.Sum(buf[:n])
		copy(pcr, s[:])
	case SHA256:
		s := sha256.Sum256(buf[:n])
		copy(pcr, s[:])
	default:
		out := sum(alg, buf[:n])
		copy(pcr, out.bytes())
	}
}

// hashPrefix feeds the entry into the prefix hash: its PCR, logged
// template hash, template name and the SHA-256 of its template data as
// logged, so that a change in any logged byte changes the hash. dataHash
// is that SHA-256 when the caller has it already.
func (e *engine) hashPrefix(ent *Entry, dataHash *digest) {
	var d digest
	if dataHash == nil {
		d = sum(SHA256, ent.TemplateData)
		dataHash = &d
	}
	buf := e.scratch[:0]
	buf = binary.LittleEndian.AppendUint32(buf, ent.PCR)
	buf = append(buf, byte(len(ent.TemplateHash)))
	buf = append(buf, ent.TemplateHash...)
	buf = append(buf, byte(len(ent.TemplateName)))
	buf = append(buf, ent.TemplateName...)
	buf = append(buf, dataHash.bytes()...)
	e.prefix.Write(buf)
}

func (e *engine) prefixSum() []byte { return e.prefix.Sum(nil) }

func (e *engine) prefixState() []byte {
	st, err := e.prefix.(encoding.BinaryMarshaler).MarshalBinary()
	if err != nil {
		panic("ima: sha256 state does not marshal: " + err.Error())
	}
	return st
}

// value returns the running value of pcr in bank alg under scheme s.
func (e *engine) value(alg Algorithm, s ExtendScheme, pcr int) []byte {
	for _, b := range e.banks {
		if b.alg != alg {
			continue
		}
		for _, v := range b.schemes {
			if v.scheme == s || (alg == SHA1 && s == PaddedSHA1) {
				return v.pcrs[pcr]
			}
		}
	}
	return nil
}

// touchedPCRs lists the PCRs that replayed entries extended.
func (e *engine) touchedPCRs() []int {
	var out []int
	for i := 0; i < maxPCR; i++ {
		if e.touched&(1<<i) != 0 {
			out = append(out, i)
		}
	}
	return out
}

// Replay is the outcome of replaying a list into PCR banks from zero.
type Replay struct {
	// Entries is the number of entries replayed.
	Entries int
	// Violations lists the indexes of violation entries. They extend all
	// ones and are never good measurements.
	Violations []int
	// TemplateHashErrors lists the first MaxReportedErrors entries whose
	// template data does not hash to the logged template hash. Such
	// entries are replayed with the hashes computed from their data.
	TemplateHashErrors []error
	// TemplateHashErrorCount counts all such entries, listed or not.
	TemplateHashErrorCount int
	// PCRs holds the replayed values by scheme, bank and PCR, for every
	// PCR the entries extended.
	PCRs map[ExtendScheme]PCRValues
}

// MaxReportedErrors bounds the errors a Replay lists, so that a list whose
// every entry is damaged does not hold one error per entry.
const MaxReportedErrors = 100

// ReplayEntries replays entries into the given banks from all-zero PCRs
// under both extend schemes. It does not compare with a quote: see
// Replay.Compare and Verify.
func ReplayEntries(entries []Entry, banks []Algorithm) (*Replay, error) {
	e, err := newEngine(banks, schemes)
	if err != nil {
		return nil, err
	}
	r := &Replay{}
	for i := range entries {
		ent := &entries[i]
		if ent.IsViolation() {
			r.Violations = append(r.Violations, ent.Index)
		}
		if err := e.step(ent); err != nil {
			var ve *VerificationError
			if !asVerificationError(err, &ve) || ve.Reason != ReasonTemplateHash {
				return nil, err
			}
			r.TemplateHashErrorCount++
			if len(r.TemplateHashErrors) < MaxReportedErrors {
				r.TemplateHashErrors = append(r.TemplateHashErrors, err)
			}
		}
	}
	r.Entries = e.count
	r.PCRs = map[ExtendScheme]PCRValues{}
	for _, s := range schemes {
		vals := PCRValues{}
		for _, b := range e.banks {
			m := map[int][]byte{}
			for _, pcr := range e.touchedPCRs() {
				m[pcr] = slices.Clone(e.value(b.alg, s, pcr))
			}
			vals[b.alg] = m
		}
		r.PCRs[s] = vals
	}
	return r, nil
}

// PCRMatch compares one expected PCR value with the replay.
type PCRMatch struct {
	Algorithm Algorithm
	PCR       int
	Expected  []byte
	// Scheme is the extend scheme whose replay equals Expected, or 0 when
	// none does. For the SHA-1 bank both schemes agree and Scheme is
	// PerBankHash.
	Scheme ExtendScheme
	// Replayed holds the replayed value under each scheme.
	Replayed map[ExtendScheme][]byte
}

// Compare matches the replay against expected PCR values, for each bank
// and PCR in expected. A PCR that no entry extended replays to zeros.
func (r *Replay) Compare(expected PCRValues) []PCRMatch {
	var out []PCRMatch
	algs := make([]Algorithm, 0, len(expected))
	for alg := range expected {
		algs = append(algs, alg)
	}
	slices.Sort(algs)
	for _, alg := range algs {
		pcrs := make([]int, 0, len(expected[alg]))
		for pcr := range expected[alg] {
			pcrs = append(pcrs, pcr)
		}
		slices.Sort(pcrs)
		for _, pcr := range pcrs {
			m := PCRMatch{Algorithm: alg, PCR: pcr, Expected: expected[alg][pcr], Replayed: map[ExtendScheme][]byte{}}
			for _, s := range schemes {
				v, ok := r.PCRs[s][alg][pcr]
				if !ok {
					if _, bank := r.PCRs[s][alg]; !bank {
						continue
					}
					v = make([]byte, alg.Size())
				}
				m.Replayed[s] = v
				if m.Scheme == 0 && bytes.Equal(v, m.Expected) {
					m.Scheme = s
				}
			}
			out = append(out, m)
		}
	}
	return out
}
