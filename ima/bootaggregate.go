package ima

import (
	"bytes"
	"fmt"
	"slices"
)

// BootAggregate is the outcome of checking a boot_aggregate entry.
type BootAggregate struct {
	// Algorithm is the bank the aggregate was computed from: the one
	// named by the entry's digest.
	Algorithm Algorithm
	// PCRs lists the PCRs the aggregate covers.
	PCRs   []int
	Logged []byte
	// Expected is the aggregate computed from the quoted PCRs.
	Expected []byte
}

// CheckBootAggregate checks the first entry of a list, the boot_aggregate,
// against the boot PCRs of a verified quote. It checks:
//
//  1. the entry is named "boot_aggregate";
//  2. its digest is not all zeros, which IMA logs when it finds no TPM at
//     boot (the caller passes quoted PCRs only for machines with a TPM);
//  3. its digest equals the digest, with the algorithm the entry names, of
//     PCRs 0-7 of that algorithm's bank, followed by PCRs 8 and 9 for any
//     algorithm other than SHA-1. This is the rule of
//     ima_calc_boot_aggregate_tfm in security/integrity/ima/ima_crypto.c
//     since Linux 5.8; older kernels always log a SHA-1 aggregate of PCRs
//     0-7, which the same rule covers.
//
// It returns a *VerificationError when a check fails, and a plain error
// when the quote lacks a needed PCR or the entry does not decode.
func CheckBootAggregate(e *Entry, quoted PCRValues) (*BootAggregate, error) {
	f, err := e.Fields()
	if err != nil {
		return nil, err
	}
	if string(f.Name) != BootAggregateName {
		return nil, &VerificationError{Reason: ReasonBootAggregate, Entry: e.Index,
			Detail: fmt.Sprintf("first entry measures %q, not boot_aggregate", f.Name)}
	}
	alg, err := ParseAlgorithm(f.DigestAlgorithm)
	if err != nil || !supported(alg) {
		return nil, fmt.Errorf("entry %d: boot_aggregate uses algorithm %q, which has no supported PCR bank", e.Index, f.DigestAlgorithm)
	}
	if allZero(f.Digest) {
		return nil, &VerificationError{Reason: ReasonBootAggregateZero, Entry: e.Index,
			Detail: "boot_aggregate is all zeros, so IMA found no TPM at boot although the machine has one"}
	}
	n := 10
	if alg == SHA1 {
		n = 8
	}
	res := &BootAggregate{Algorithm: alg, Logged: f.Digest}
	bank := quoted[alg]
	concat := make([]byte, 0, n*alg.Size())
	for pcr := 0; pcr < n; pcr++ {
		v, ok := bank[pcr]
		if !ok {
			return nil, fmt.Errorf("boot_aggregate needs PCR %d of the %s bank, which the quote does not include: add PCRs 0-%d to the quote selection", pcr, alg, n-1)
		}
		if len(v) != alg.Size() {
			return nil, fmt.Errorf("quoted %s PCR %d has %d bytes, want %d", alg, pcr, len(v), alg.Size())
		}
		res.PCRs = append(res.PCRs, pcr)
		concat = append(concat, v...)
	}
	agg := sum(alg, concat)
	res.Expected = slices.Clone(agg.bytes())
	if !bytes.Equal(res.Expected, f.Digest) {
		return res, &VerificationError{Reason: ReasonBootAggregate, Entry: e.Index, Detail: fmt.Sprintf(
			"boot_aggregate is %s:%x, but %s PCRs 0-%d aggregate to %x", alg, f.Digest, alg, n-1, res.Expected)}
	}
	return res, nil
}
