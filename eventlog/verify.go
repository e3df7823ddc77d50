package eventlog

import (
	"bytes"
	"crypto/sha512"
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"
)

// Workaround names a firmware or operating system quirk that Verify may
// correct for, when the caller allows it and strict replay does not match.
type Workaround string

// Known workarounds.
const (
	// WorkaroundExitBootServices appends the two EV_EFI_ACTION events
	// "Exit Boot Services Invocation" and "Exit Boot Services Returned with
	// Success" to PCR 5. Some firmware extends them without logging them.
	// It is tried only when the log has no such event and PCR 5 is the
	// only mismatch of a bank.
	WorkaroundExitBootServices Workaround = "exit-boot-services-missing"
	// WorkaroundWindowsCappedSHA1 accepts a SHA-1 bank that Windows
	// "capped": when Windows does not use the SHA-1 bank of a TPM with
	// both banks, it extends 20 zero bytes into it, unlogged, so the bank
	// can no longer be used for sealing. It is tried only when another
	// bank of the log matches in full and every mismatching SHA-1 PCR
	// but 11 equals its replay extended once with 20 zero bytes. The bank
	// is then reported as capped: its values are not verified and must not
	// be used by policy.
	WorkaroundWindowsCappedSHA1 Workaround = "windows-capped-sha1"
)

// Workarounds returns every known workaround in the order Verify tries
// them, whatever the order of VerifyOptions.Workarounds.
func Workarounds() []Workaround {
	return []Workaround{WorkaroundExitBootServices, WorkaroundWindowsCappedSHA1}
}

// ParseWorkaround parses a workaround name.
func ParseWorkaround(name string) (Workaround, error) {
	for _, w := range Workarounds() {
		if string(w) == name {
			return w, nil
		}
	}
	names := make([]string, 0, 2)
	for _, w := range Workarounds() {
		names = append(names, string(w))
	}
	return "", fmt.Errorf("unknown workaround %q: expected one of %s", name, strings.Join(names, ", "))
}

// VerifyOptions configures Verify. The zero value is strict.
type VerifyOptions struct {
	// Workarounds lists the quirks Verify may correct for when strict
	// replay does not match. Each weakens what a match proves; allow only
	// those the fleet needs.
	Workarounds []Workaround
}

// BankStatus is the outcome of comparing one bank.
type BankStatus string

// Bank outcomes.
const (
	// BankMatch: every quoted PCR of the bank equals the replay, strictly
	// or with the bank's Workaround.
	BankMatch BankStatus = "match"
	// BankMismatch: at least one quoted PCR differs from the replay.
	BankMismatch BankStatus = "mismatch"
	// BankCapped: the SHA-1 bank was capped by Windows (see
	// WorkaroundWindowsCappedSHA1). Its values are not verified.
	BankCapped BankStatus = "capped"
	// BankUnused: the log has no digests for the bank, and every quoted
	// PCR of it is at its reset value, so nothing was ever extended into
	// it. The bank is consistent with the log, and it proves nothing.
	BankUnused BankStatus = "unused"
	// BankNotInLog: the log has no digests for the bank (a SHA-1 format
	// log from a TPM 2.0 machine, for example), or the bank's algorithm
	// cannot be computed here (SM3_256), so its values cannot be verified.
	BankNotInLog BankStatus = "not-in-log"
)

// Result is the outcome of Verify.
type Result struct {
	Banks []BankResult `json:"banks"`
	// Workarounds lists the workarounds that were needed, empty when
	// strict replay matched.
	Workarounds []Workaround `json:"workarounds,omitempty"`
	// Findings lists events whose data does not match their digest or
	// their type's structure (see Check). They do not change the PCR
	// verdict, but policy must not trust the data of those events.
	Findings []Finding `json:"findings,omitempty"`
}

// BankResult is the comparison of one quoted bank.
type BankResult struct {
	Bank       Algorithm   `json:"bank"`
	Status     BankStatus  `json:"status"`
	Workaround Workaround  `json:"workaround,omitempty"`
	PCRs       []PCRResult `json:"pcrs"`
}

// PCRResult is the comparison of one quoted PCR.
type PCRResult struct {
	Index int `json:"index"`
	// Replayed is nil when the bank cannot be replayed from the log.
	Replayed HexBytes `json:"replayed"`
	Quoted   HexBytes `json:"quoted"`
	Match    bool     `json:"match"`
	// Events lists the numbers of the events that extended this PCR, set
	// for a mismatch so the caller can show what fed it.
	Events []int `json:"events,omitempty"`
}

// Verified reports whether at least one bank matched and no bank
// mismatched. Banks reported as capped, unused or not in the log are not
// verified; VerifiedBanks lists the banks policy may rely on.
func (r *Result) Verified() bool {
	matched := false
	for _, b := range r.Banks {
		switch b.Status {
		case BankMismatch:
			return false
		case BankMatch:
			matched = true
		}
	}
	return matched
}

// VerifiedBanks returns the banks whose status is BankMatch.
func (r *Result) VerifiedBanks() []Algorithm {
	var out []Algorithm
	for _, b := range r.Banks {
		if b.Status == BankMatch {
			out = append(out, b.Bank)
		}
	}
	return out
}

// Mismatches returns the mismatching PCRs by bank.
func (r *Result) Mismatches() map[Algorithm][]int {
	out := map[Algorithm][]int{}
	for _, b := range r.Banks {
		if b.Status != BankMismatch {
			continue
		}
		for _, p := range b.PCRs {
			if !p.Match {
				out[b.Bank] = append(out[b.Bank], p.Index)
			}
		}
	}
	return out
}

// MismatchError is the verification failure Verify returns when a quoted
// PCR does not equal the log's replay. It is distinct from the errors of a
// log or PCR file that cannot be read.
type MismatchError struct {
	Mismatches map[Algorithm][]int
	// Expected names the PCR values the log was compared with, such as
	// "the --expect values", for the message. Empty means "the quoted
	// PCR values".
	Expected string
}

func (e *MismatchError) Error() string {
	var parts []string
	for _, alg := range PCRValues(nil).sortedBanks(e.Mismatches) {
		parts = append(parts, fmt.Sprintf("%s PCR %s", alg, joinInts(e.Mismatches[alg])))
	}
	expected := e.Expected
	if expected == "" {
		expected = "the quoted PCR values"
	}
	return "event log does not replay to " + expected + ": mismatch in " + strings.Join(parts, "; ")
}

// ErrNoVerifiedBank is returned when no quoted bank could be compared with
// the log (for example a SHA-256 quote against a SHA-1 format log).
var ErrNoVerifiedBank = errors.New("no quoted bank can be verified from the event log: quote a bank the log has digests for")

// Verify replays the log and compares the result with quoted PCR values,
// such as those a verified quote covers. It checks, in order:
//
//  1. the quoted values have the digest size of their bank;
//  2. the log replays (see Replay), which fails on events for PCR indexes
//     outside 0 to 23;
//  3. every quoted PCR of every bank the log has digests for equals the
//     replay;
//  4. when 3 fails, each workaround of opts, in the order of
//     Workarounds(), is tried on the banks that failed, and a bank it
//     fixes completely is reported with the workaround's name;
//  5. quoted banks the log has no digests for are reported unused when
//     every value is a reset value, and not in the log otherwise;
//  6. every event's data hashes to its digest in the strongest matching
//     bank whose quote covered the event's PCR (see Check), and failures
//     are returned as findings. Checking one such bank suffices: its
//     digests are authenticated by the replay, so data that hashes to
//     them is what was measured. A bank that matched but did not cover
//     the PCR authenticates nothing about the event. Events of PCRs no
//     matching bank covered are checked in every bank.
//
// It returns the result with a nil error when Result.Verified is true,
// the result with a *MismatchError when a bank mismatches, and the result
// with ErrNoVerifiedBank when no bank could be verified. Other errors mean
// the inputs could not be used, and the result is nil.
//
// Verify does not check the quote itself: the caller must pass only PCR
// values from a quote whose signature, nonce and AK it has verified.
func Verify(log *Log, quoted PCRValues, opts VerifyOptions) (*Result, error) {
	// Read each quoted bank once into an array indexed by PCR, so the
	// comparison does no map lookups.
	banks := quoted.Banks()
	var stack [4][NumPCRs][]byte
	values := stack[:]
	if len(banks) > len(stack) {
		values = make([][NumPCRs][]byte, len(banks))
	}
	total := 0
	for b, alg := range banks {
		size := alg.Size()
		for i, v := range quoted[alg] {
			if i < 0 || i >= NumPCRs {
				return nil, fmt.Errorf("quoted %s PCR index %d is out of range 0 to %d", alg, i, NumPCRs-1)
			}
			if size != 0 && len(v) != size {
				return nil, fmt.Errorf("quoted %s PCR %d is %d bytes, a %s digest is %d", alg, i, len(v), alg, size)
			}
			if v == nil {
				v = []byte{} // nil marks a PCR that is not quoted
			}
			values[b][i] = v
			total++
		}
	}
	st, err := replay(log, quoted)
	if err != nil {
		return nil, err
	}

	res := &Result{Banks: make([]BankResult, 0, len(banks))}
	pcrs := make([]PCRResult, 0, total)
	for b, alg := range banks {
		br := compareBank(st, alg, &values[b], pcrs[len(pcrs):len(pcrs):cap(pcrs)])
		br.PCRs = slices.Clip(br.PCRs)
		pcrs = pcrs[:len(pcrs)+len(br.PCRs)]
		res.Banks = append(res.Banks, br)
	}
	if len(mismatchedBanks(res)) > 0 {
		for _, w := range Workarounds() {
			if containsWorkaround(opts.Workarounds, w) {
				applyWorkaround(w, log, st, res)
			}
		}
	}
	for _, b := range res.Banks {
		if b.Status == BankMismatch {
			for _, p := range b.PCRs {
				if !p.Match {
					res.setEvents(log, b.Bank)
					break
				}
			}
		}
	}
	res.Findings = checkCovered(log, strongestCoveringBanks(res))

	switch {
	case len(mismatchedBanks(res)) > 0:
		return res, &MismatchError{Mismatches: res.Mismatches()}
	case !res.Verified():
		return res, ErrNoVerifiedBank
	}
	return res, nil
}

// strongestCoveringBanks returns, for each PCR, the bank with the largest
// digest among the matching banks whose quote covered that PCR, or 0 where
// none did. A quote may select different PCRs in each bank, so a bank
// authenticates the digests of an event only when it covered the event's
// PCR.
func strongestCoveringBanks(r *Result) *[NumPCRs]Algorithm {
	var best [NumPCRs]Algorithm
	for _, b := range r.Banks {
		if b.Status != BankMatch {
			continue
		}
		for _, p := range b.PCRs {
			if p.Match && p.Index >= 0 && p.Index < NumPCRs && b.Bank.Size() > best[p.Index].Size() {
				best[p.Index] = b.Bank
			}
		}
	}
	return &best
}

func mismatchedBanks(r *Result) []int {
	var idx []int
	for i, b := range r.Banks {
		if b.Status == BankMismatch {
			idx = append(idx, i)
		}
	}
	return idx
}

// compareBank compares the quoted values of one bank, indexed by PCR with
// nil for a PCR not quoted, with the replay. It appends the PCR results to
// pcrs, which must have room for them.
func compareBank(st *replayState, alg Algorithm, quoted *[NumPCRs][]byte, pcrs []PCRResult) BankResult {
	br := BankResult{Bank: alg, Status: BankMatch, PCRs: pcrs}
	b := st.bank(alg)
	if b < 0 {
		br.Status = BankUnused
	}
	for i, q := range quoted {
		if q == nil {
			continue
		}
		if b < 0 {
			br.PCRs = append(br.PCRs, PCRResult{Index: i, Quoted: q})
			if !isResetValue(i, q) {
				br.Status = BankNotInLog
			}
			continue
		}
		r := st.pcr(b, i)
		p := PCRResult{Index: i, Replayed: r, Quoted: q, Match: bytes.Equal(r, q)}
		if !p.Match {
			br.Status = BankMismatch
		}
		br.PCRs = append(br.PCRs, p)
	}
	return br
}

func isResetValue(i int, v []byte) bool {
	want := resetValue(i)
	for _, c := range v {
		if c != want {
			return false
		}
	}
	return true
}

// setEvents records, for each mismatching PCR of the bank, the events that
// extended it.
func (r *Result) setEvents(log *Log, alg Algorithm) {
	for bi := range r.Banks {
		if r.Banks[bi].Bank != alg {
			continue
		}
		for pi := range r.Banks[bi].PCRs {
			p := &r.Banks[bi].PCRs[pi]
			if p.Match {
				continue
			}
			for _, e := range log.Events {
				if e.Type != EV_NO_ACTION && int(e.PCR) == p.Index && e.Digest(alg) != nil {
					p.Events = append(p.Events, e.Number)
				}
			}
		}
	}
}

func applyWorkaround(w Workaround, log *Log, st *replayState, res *Result) {
	for _, bi := range mismatchedBanks(res) {
		br := &res.Banks[bi]
		var ok bool
		switch w {
		case WorkaroundExitBootServices:
			ok = fixExitBootServices(log, br)
		case WorkaroundWindowsCappedSHA1:
			ok = fixCappedSHA1(res, br)
		}
		if !ok {
			continue
		}
		br.Workaround = w
		if !containsWorkaround(res.Workarounds, w) {
			res.Workarounds = append(res.Workarounds, w)
		}
	}
}

func containsWorkaround(list []Workaround, w Workaround) bool {
	for _, x := range list {
		if x == w {
			return true
		}
	}
	return false
}

const (
	ebsInvocation = "Exit Boot Services Invocation"
	ebsReturned   = "Exit Boot Services Returned with Success"
)

// fixExitBootServices applies WorkaroundExitBootServices to one bank.
func fixExitBootServices(log *Log, br *BankResult) bool {
	for i := range log.Events {
		e := &log.Events[i]
		if e.Type != EV_EFI_ACTION && e.Type != EV_ACTION {
			continue
		}
		if a, ok := e.Decode().(*Action); ok && (a.Text == ebsInvocation || a.Text == ebsReturned) {
			return false
		}
	}
	var pcr5 *PCRResult
	for i := range br.PCRs {
		p := &br.PCRs[i]
		if p.Match {
			continue
		}
		if p.Index != 5 {
			return false
		}
		pcr5 = p
	}
	if pcr5 == nil || pcr5.Replayed == nil {
		return false
	}

	var value, buf [sha512.Size]byte
	v := value[:copy(value[:], pcr5.Replayed)]
	extend(br.Bank, v, digestOf(br.Bank, &buf, []byte(ebsInvocation)))
	extend(br.Bank, v, digestOf(br.Bank, &buf, []byte(ebsReturned)))
	if !bytes.Equal(v, pcr5.Quoted) {
		return false
	}
	pcr5.Replayed = append([]byte(nil), v...)
	pcr5.Match = true
	br.Status = BankMatch
	return true
}

// fixCappedSHA1 applies WorkaroundWindowsCappedSHA1 to one bank.
func fixCappedSHA1(res *Result, br *BankResult) bool {
	if br.Bank != SHA1 {
		return false
	}
	otherMatch := false
	for _, b := range res.Banks {
		if b.Bank != SHA1 && b.Status == BankMatch && b.Workaround == "" {
			otherMatch = true
		}
	}
	if !otherMatch {
		return false
	}
	var zero [20]byte
	capped := 0
	for _, p := range br.PCRs {
		if p.Match || p.Index == 11 {
			// Windows extends PCR 11 further after capping it (BitLocker
			// locks it), so its value cannot be predicted.
			continue
		}
		v := append([]byte(nil), p.Replayed...)
		extend(SHA1, v, zero[:])
		if !bytes.Equal(v, p.Quoted) {
			return false
		}
		capped++
	}
	if capped == 0 {
		return false
	}
	br.Status = BankCapped
	return true
}

func (PCRValues) sortedBanks(m map[Algorithm][]int) []Algorithm {
	algs := make([]Algorithm, 0, len(m))
	for a := range m {
		algs = append(algs, a)
	}
	sort.Slice(algs, func(i, j int) bool { return algs[i] < algs[j] })
	return algs
}

func joinInts(v []int) string {
	s := make([]string, len(v))
	for i, x := range v {
		s[i] = fmt.Sprint(x)
	}
	return strings.Join(s, ",")
}
