package ima

import (
	"bytes"
	"crypto/sha256"
	"encoding"
	"fmt"
	"math/bits"
	"slices"
	"strings"
)

// DefaultMaxStalledRounds is how many rounds in a row may leave entries
// pending without verifying any of them before Verify fails.
const DefaultMaxStalledRounds = 3

// imaPCR is the PCR that IMA extends unless its policy names another.
const imaPCR = 10

// State is the record a verifier keeps per machine and boot between rounds
// of incremental verification. It encodes to JSON. Persist it only after
// Verify returns no error.
type State struct {
	// ResetCount is the TPM resetCount of the boot this state belongs to.
	ResetCount uint32 `json:"reset_count"`
	// Entries is the number of entries verified: the offset the agent
	// sends the next entries from.
	Entries int `json:"entries"`
	// Violations counts the violation entries among them.
	Violations int `json:"violations"`
	// Banks holds the running PCR values after the verified entries.
	Banks []BankState `json:"banks"`
	// PrefixHash is the SHA-256 of the verified entries' logged content,
	// and PrefixHashState the hash's internal state for resuming it.
	PrefixHash      HexBytes `json:"prefix_hash"`
	PrefixHashState []byte   `json:"prefix_hash_state"`
	// Pending is the number of entries after the verified ones that the
	// last quote did not cover yet.
	Pending int `json:"pending"`
	// StalledRounds counts consecutive rounds that left entries pending
	// without verifying any.
	StalledRounds int `json:"stalled_rounds"`
}

// BankState is one bank's running values in a State.
type BankState struct {
	Algorithm Algorithm `json:"algorithm"`
	// Scheme is the extend scheme that reproduced the quote.
	Scheme ExtendScheme `json:"scheme"`
	// PCRs holds the value of PCR 10 and of every other PCR the entries
	// extended.
	PCRs map[int]HexBytes `json:"pcrs"`
}

// Round is one attestation's IMA evidence.
type Round struct {
	// ResetCount is the TPM resetCount from the verified quote. A value
	// different from the state's means a reboot: verification starts over
	// and the agent must send the list from offset 0.
	ResetCount uint32
	// Offset is the index of the first entry in Entries.
	Offset int
	// Entries are the list's entries from Offset on; their Index fields
	// must count up from Offset.
	Entries []Entry
	// Quoted holds PCR values covered by a verified quote. Every bank
	// with PCR 10 is replayed; PCRs 0-9 of the boot_aggregate's bank are
	// needed in the round that verifies entry 0.
	Quoted PCRValues
}

// VerifyOptions adjusts Verify.
type VerifyOptions struct {
	// MaxStalledRounds is the number of rounds in a row that may leave
	// entries pending without progress; 0 means DefaultMaxStalledRounds.
	MaxStalledRounds int
	// InsecureSkipBootAggregate skips the boot_aggregate check, for
	// machines whose quotes cannot include PCRs 0-9.
	InsecureSkipBootAggregate bool
}

// Result is the outcome of one round of Verify.
type Result struct {
	// State is the state to persist for the next round.
	State *State
	// Verified holds the entries this round verified, a sub-slice of
	// Round.Entries. Apply policy to these.
	Verified []Entry
	// Pending is the number of entries after the verified prefix that the
	// quote does not cover yet (entries logged after the PCR was read).
	Pending int
	// Violations lists the indexes of violation entries in Verified.
	Violations []int
	// Schemes names the extend scheme that matched, per bank.
	Schemes map[Algorithm]ExtendScheme
	// BootAggregate is set when this round verified entry 0.
	BootAggregate *BootAggregate
	// Restarted is true when this round started from an empty state: the
	// first round of a boot.
	Restarted bool
	// SkippedBanks lists quoted banks that could not be replayed (no Go
	// implementation of their algorithm).
	SkippedBanks []Algorithm
}

// snapshot is the engine's replay state at a matching prefix.
type snapshot struct {
	count      int
	violations int
	touched    uint32
	banks      []BankState
	prefixSum  []byte
	prefixSt   []byte
}

// Verify checks one round of IMA evidence against the state of earlier
// rounds in the same boot (nil for the first round). It checks:
//
//  1. the entries continue the verified prefix (Offset equals
//     prev.Entries), or restart it (Offset 0), in which case the resent
//     entries must reproduce the verified prefix byte for byte;
//  2. every entry's template data hashes to its logged template hash;
//  3. some prefix of the verified entries plus the new ones replays, in
//     every quoted bank that has PCR 10, to the quoted values of PCR 10
//     and of every other PCR the entries extend. The longest such prefix
//     is verified and the rest is pending. The prefix contains at least
//     the boot_aggregate, which IMA extends before any program runs;
//  4. no verified entry extends a PCR the quote does not cover;
//  5. entry 0 is a boot_aggregate matching the quoted PCRs 0-9 (see
//     CheckBootAggregate), unless opts.InsecureSkipBootAggregate;
//  6. entries left pending are eventually covered: a round that verifies
//     nothing while entries stay pending for more than MaxStalledRounds
//     rounds in a row fails.
//
// It does not verify the quote itself, apply file policy (see Policy), or
// check anything about entries past the verified prefix beyond their
// template hashes. Verification failures are *VerificationError values.
func Verify(prev *State, round Round, opts VerifyOptions) (*Result, error) {
	maxStalled := opts.MaxStalledRounds
	if maxStalled <= 0 {
		maxStalled = DefaultMaxStalledRounds
	}
	for i := range round.Entries {
		if round.Entries[i].Index != round.Offset+i {
			return nil, fmt.Errorf("entry at position %d has index %d, want %d: entries must be consecutive from the offset", i, round.Entries[i].Index, round.Offset+i)
		}
	}

	res := &Result{}
	if prev != nil && prev.ResetCount != round.ResetCount {
		prev = nil // a reboot starts over
	}
	if prev == nil {
		res.Restarted = true
		if round.Offset != 0 {
			return nil, fmt.Errorf("verifier has no IMA state for this boot but the entries start at offset %d: send the list from offset 0", round.Offset)
		}
	} else if round.Offset != prev.Entries && round.Offset != 0 {
		return nil, fmt.Errorf("entries start at offset %d but %d entries are verified: send the list from offset %d, or from 0", round.Offset, prev.Entries, prev.Entries)
	}

	algs, skipped, err := replayBanks(prev, round.Quoted)
	if err != nil {
		return nil, err
	}
	res.SkippedBanks = skipped
	resume := prev != nil && round.Offset == prev.Entries && prev.Entries > 0
	var eng *engine
	var best *snapshot
	if prev != nil && len(prev.Banks) > 0 {
		eng, best, err = replayRound(prev, round, algs, resume, schemes)
	} else {
		// Current kernels extend per-bank hashes, so replay that scheme
		// alone first, and both only when it matches no prefix.
		eng, best, err = replayRound(prev, round, algs, resume, []ExtendScheme{PerBankHash})
		if err == nil && best == nil {
			eng, best, err = replayRound(prev, round, algs, resume, schemes)
		}
	}
	if err != nil {
		return nil, err
	}
	start := round.Offset
	if best == nil {
		return nil, &VerificationError{Reason: ReasonPCRMismatch, Entry: -1, Detail: eng.mismatchDetail(round.Quoted, start)}
	}
	if best.count == 0 && len(round.Entries) > 0 {
		// IMA extends the boot_aggregate when it starts, before any
		// program runs, so every quote an agent takes covers it.
		return nil, &VerificationError{Reason: ReasonPCRMismatch, Entry: -1, Detail: fmt.Sprintf(
			"the quote covers none of the %d entries, not even the boot_aggregate; %s", len(round.Entries), eng.mismatchDetail(round.Quoted, start))}
	}
	if prev != nil && best.count < prev.Entries {
		return nil, &VerificationError{Reason: ReasonPCRMismatch, Entry: -1, Detail: fmt.Sprintf(
			"the quote matches the first %d entries, fewer than the %d verified before: PCR values went back within one boot", best.count, prev.Entries)}
	}

	// Check 4.
	for _, b := range best.banks {
		for pcr := range b.PCRs {
			if _, ok := round.Quoted[b.Algorithm][pcr]; !ok {
				return nil, &VerificationError{Reason: ReasonPCRNotQuoted, Entry: -1, Detail: fmt.Sprintf(
					"entries extend %s PCR %d, which the quote does not include: add it to the quote selection", b.Algorithm, pcr)}
			}
		}
	}

	firstNew := max(start, round.Offset)
	if prev != nil && !resume {
		firstNew = prev.Entries
	}
	res.Verified = round.Entries[firstNew-round.Offset : best.count-round.Offset]
	res.Pending = round.Offset + len(round.Entries) - best.count
	for i := range res.Verified {
		if res.Verified[i].IsViolation() {
			res.Violations = append(res.Violations, res.Verified[i].Index)
		}
	}
	res.Schemes = map[Algorithm]ExtendScheme{}
	for _, b := range best.banks {
		res.Schemes[b.Algorithm] = b.Scheme
	}

	// Check 5.
	if !opts.InsecureSkipBootAggregate && len(res.Verified) > 0 && res.Verified[0].Index == 0 {
		ba, err := CheckBootAggregate(&res.Verified[0], round.Quoted)
		res.BootAggregate = ba
		if err != nil {
			return res, err
		}
	}

	st := &State{
		ResetCount:      round.ResetCount,
		Entries:         best.count,
		Violations:      best.violations,
		Banks:           best.banks,
		PrefixHash:      best.prefixSum,
		PrefixHashState: best.prefixSt,
		Pending:         res.Pending,
	}
	// Check 6.
	if prev != nil && res.Pending > 0 && prev.Pending > 0 && best.count == prev.Entries {
		st.StalledRounds = prev.StalledRounds + 1
	}
	res.State = st
	if st.StalledRounds >= maxStalled {
		return res, &VerificationError{Reason: ReasonNoProgress, Entry: best.count, Detail: fmt.Sprintf(
			"%d entries have stayed pending for %d rounds: the quoted PCRs do not advance although the list grows", res.Pending, st.StalledRounds)}
	}
	return res, nil
}

// replayRound replays the round's entries with the given schemes, from
// the state when resuming, and returns the engine at the end of the list
// and the snapshot of the longest prefix that matches the quote, or nil.
// It performs checks 1 to 3 of Verify.
func replayRound(prev *State, round Round, algs []Algorithm, resume bool, use []ExtendScheme) (*engine, *snapshot, error) {
	eng, err := newEngine(algs, use)
	if err != nil {
		return nil, nil, err
	}
	if prev != nil {
		if err := eng.fixSchemes(prev); err != nil {
			return nil, nil, err
		}
	}
	if resume {
		if err := eng.restore(prev); err != nil {
			return nil, nil, err
		}
	}
	// Check 1 for a full resend: the first prev.Entries entries must hash
	// to the verified prefix.
	var prevSum []byte
	if prev != nil && !resume && prev.Entries > 0 {
		prevSum = prev.PrefixHash
		if len(round.Entries) < prev.Entries {
			return nil, nil, &VerificationError{Reason: ReasonHistoryChanged, Entry: -1, Detail: fmt.Sprintf(
				"IMA log history changed within one boot: the resent list has %d entries, fewer than the %d verified before", len(round.Entries), prev.Entries)}
		}
	}

	eng.setQuoted(round.Quoted)
	var best *snapshot
	if eng.matches() {
		best = eng.snapshot()
	}
	for i := range round.Entries {
		// Check 2.
		if err := eng.step(&round.Entries[i]); err != nil {
			return nil, nil, err
		}
		if prevSum != nil && eng.count == prev.Entries {
			if !bytes.Equal(eng.prefixSum(), prevSum) {
				return nil, nil, &VerificationError{Reason: ReasonHistoryChanged, Entry: -1, Detail: fmt.Sprintf(
					"IMA log history changed within one boot: the first %d entries of the resent list differ from the ones verified before", prev.Entries)}
			}
		}
		// Check 3.
		if eng.matches() {
			best = eng.snapshot()
		}
	}
	return eng, best, nil
}

// replayBanks picks the banks to replay: those of the state when resuming,
// else every quoted bank that has PCR 10.
func replayBanks(prev *State, quoted PCRValues) (algs, skipped []Algorithm, err error) {
	if prev != nil && len(prev.Banks) > 0 {
		for _, b := range prev.Banks {
			if _, ok := quoted[b.Algorithm][imaPCR]; !ok {
				return nil, nil, fmt.Errorf("the quote lacks PCR %d of the %s bank, which earlier rounds verified: quote the same banks in every round", imaPCR, b.Algorithm)
			}
			algs = append(algs, b.Algorithm)
		}
		return algs, nil, nil
	}
	for alg, pcrs := range quoted {
		if _, ok := pcrs[imaPCR]; !ok {
			continue
		}
		if !supported(alg) {
			skipped = append(skipped, alg)
			continue
		}
		if len(pcrs[imaPCR]) != alg.Size() {
			return nil, nil, fmt.Errorf("quoted %s PCR %d has %d bytes, want %d", alg, imaPCR, len(pcrs[imaPCR]), alg.Size())
		}
		algs = append(algs, alg)
	}
	if len(algs) == 0 {
		return nil, nil, fmt.Errorf("the quote covers PCR %d in no sha1, sha256, sha384 or sha512 bank: add PCR %d to the quote selection", imaPCR, imaPCR)
	}
	slices.Sort(algs)
	slices.Sort(skipped)
	return algs, skipped, nil
}

// fixSchemes keeps only the scheme each bank used in earlier rounds.
func (e *engine) fixSchemes(prev *State) error {
	for _, b := range e.banks {
		for _, pb := range prev.Banks {
			if pb.Algorithm != b.alg {
				continue
			}
			i := slices.IndexFunc(b.schemes, func(v *schemeValues) bool { return v.scheme == pb.Scheme })
			if i < 0 {
				return fmt.Errorf("state names extend scheme %s for the %s bank, which does not apply", pb.Scheme, b.alg)
			}
			b.schemes = []*schemeValues{b.schemes[i]}
		}
	}
	e.updateNeeds()
	return nil
}

// restore loads the running values and prefix hash of a state.
func (e *engine) restore(prev *State) error {
	for _, b := range e.banks {
		i := slices.IndexFunc(prev.Banks, func(pb BankState) bool { return pb.Algorithm == b.alg })
		if i < 0 {
			return fmt.Errorf("state has no %s bank: send the list from offset 0", b.alg)
		}
		for pcr, v := range prev.Banks[i].PCRs {
			if pcr < 0 || pcr >= maxPCR || len(v) != b.size {
				return fmt.Errorf("stored state contains an invalid %s PCR %d value of %d bytes: discard the state and send the list from offset 0", b.alg, pcr, len(v))
			}
			copy(b.schemes[0].pcrs[pcr], v)
			if pcr != imaPCR || !allZero(v) {
				e.touched |= 1 << pcr
			}
		}
	}
	h := sha256.New()
	if err := h.(encoding.BinaryUnmarshaler).UnmarshalBinary(prev.PrefixHashState); err != nil {
		return fmt.Errorf("state has an invalid prefix hash state: %w", err)
	}
	if !bytes.Equal(h.Sum(nil), prev.PrefixHash) {
		return fmt.Errorf("state's prefix hash state does not match its prefix hash: the stored state is corrupt")
	}
	e.prefix = h
	e.count = prev.Entries
	e.violations = prev.Violations
	return nil
}

// setQuoted stores the quoted values of each bank for matches.
func (e *engine) setQuoted(quoted PCRValues) {
	for _, b := range e.banks {
		b.quotedMask = 0
		for pcr, v := range quoted[b.alg] {
			if pcr >= 0 && pcr < maxPCR {
				b.quoted[pcr] = v
				b.quotedMask |= 1 << pcr
			}
		}
	}
}

// bankMatches reports whether v equals the quote in PCR 10 and every
// extended PCR that the quote includes.
func (e *engine) bankMatches(b *bankReplay, v *schemeValues) bool {
	set := (e.touched | 1<<imaPCR) & b.quotedMask
	for set != 0 {
		pcr := bits.TrailingZeros32(set)
		set &^= 1 << pcr
		if !bytes.Equal(v.pcrs[pcr], b.quoted[pcr]) {
			return false
		}
	}
	return true
}

// matches reports whether every bank matches the quote under one of its
// schemes.
func (e *engine) matches() bool {
	for _, b := range e.banks {
		ok := false
		for _, v := range b.schemes {
			if e.bankMatches(b, v) {
				ok = true
				break
			}
		}
		if !ok {
			return false
		}
	}
	return true
}

func (e *engine) snapshot() *snapshot {
	s := &snapshot{count: e.count, violations: e.violations, touched: e.touched,
		prefixSum: e.prefixSum(), prefixSt: e.prefixState()}
	for _, b := range e.banks {
		for _, v := range b.schemes {
			if !e.bankMatches(b, v) {
				continue
			}
			bs := BankState{Algorithm: b.alg, Scheme: v.scheme, PCRs: map[int]HexBytes{}}
			for pcr := 0; pcr < maxPCR; pcr++ {
				if (e.touched|1<<imaPCR)&(1<<pcr) != 0 {
					bs.PCRs[pcr] = slices.Clone(v.pcrs[pcr])
				}
			}
			s.banks = append(s.banks, bs)
			break
		}
	}
	return s
}

// mismatchDetail explains a failed replay: the quoted PCR 10 per bank
// and the replayed value at the end of the list under each scheme.
func (e *engine) mismatchDetail(quoted PCRValues, start int) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "no prefix of entries %d-%d replays to the quoted PCRs", start, e.count)
	for _, b := range e.banks {
		fmt.Fprintf(&sb, "; %s PCR %d quoted %x", b.alg, imaPCR, quoted[b.alg][imaPCR])
		for _, v := range b.schemes {
			fmt.Fprintf(&sb, ", replayed (%s) %x", v.scheme, v.pcrs[imaPCR])
		}
	}
	return sb.String()
}
