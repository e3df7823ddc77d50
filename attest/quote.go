package attest

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/subtle"
	"errors"
	"fmt"
	"math/big"
	"slices"
	"sort"
)

// Quote is the evidence a TPM2_Quote returns, exactly as the TPM produced
// it.
type Quote struct {
	// Attest is the TPMS_ATTEST structure that was signed.
	Attest []byte `json:"attest"`
	// Signature is the TPMT_SIGNATURE over Attest.
	Signature []byte `json:"signature"`
}

// QuoteExpectations holds the verifier's challenge (nonce and PCR
// selection) and the PCR values the agent reported with the quote.
type QuoteExpectations struct {
	// Nonce is the verifier's fresh challenge; extraData must equal it
	// byte for byte.
	Nonce []byte
	// Selection is the PCR selection the verifier asked for.
	Selection Selection
	// PCRs are the PCR values the agent reported (untrusted). They must
	// include every selected PCR; others are returned as unverified.
	PCRs PCRValues
	// InsecureAllowSHA1 accepts a signature whose digest is SHA-1, as
	// produced by keys with an RSASSA-SHA1 scheme on older clients.
	InsecureAllowSHA1 bool
}

// VerifiedQuote is the result of a successful [VerifyQuote].
type VerifiedQuote struct {
	// Clock is the TPM clock at signing time. Compare it with the previous
	// quote of the same TPM with [CheckClock].
	Clock ClockInfo
	// FirmwareVersion is the TPM vendor's firmware version (opaque).
	FirmwareVersion uint64
	// QualifiedSigner is the signing key's qualified name (not checked).
	QualifiedSigner []byte
	// Selection is the signed PCR selection in wire order.
	Selection Selection
	// Verified holds exactly the PCR values the signed pcrDigest covers.
	Verified PCRValues
	// Unverified holds reported PCR values outside the signed selection,
	// nil when there are none. Nothing vouches for them.
	Unverified PCRValues
}

// PCR is one PCR value with whether a verified quote covers it.
type PCR struct {
	Hash     Algorithm
	Index    int
	Digest   []byte
	Verified bool
}

// PCRs lists every reported PCR value, verified or not, sorted by bank and
// index.
func (v *VerifiedQuote) PCRs() []PCR {
	var out []PCR
	for _, set := range []struct {
		values   PCRValues
		verified bool
	}{{v.Verified, true}, {v.Unverified, false}} {
		for alg, bank := range set.values {
			for i, d := range bank {
				out = append(out, PCR{Hash: alg, Index: i, Digest: d, Verified: set.verified})
			}
		}
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Hash != out[j].Hash {
			return out[i].Hash < out[j].Hash
		}
		return out[i].Index < out[j].Index
	})
	return out
}

// VerifyQuote checks a quote against an attestation key the verifier has
// already enrolled and the verifier's expectations. It checks, in order:
//
//  1. Attest parses as a TPMS_ATTEST with nothing after it;
//  2. its magic is TPM_GENERATED_VALUE;
//  3. its type is TPM_ST_ATTEST_QUOTE (not a certify, NV certify or other
//     structure);
//  4. extraData equals the nonce exactly (same length, same bytes);
//  5. the signed PCR selection equals the requested one (same banks, same
//     PCRs per bank; bank order may differ, empty banks are ignored);
//  6. the reported PCR values include every selected PCR, each of the
//     bank's digest size;
//  7. the signature parses, its scheme (the union member that is set) and
//     hash fit the key, and SHA-1 is rejected unless InsecureAllowSHA1;
//  8. pcrDigest equals the signature hash of the selected PCR values
//     concatenated in the signed selection's order;
//  9. the signature verifies under the attestation key.
//
// Each failure is a *VerificationError with its own Reason. VerifyQuote
// leaves to the caller: the freshness of the nonce (single use, expiry),
// the clock comparison with the previous quote ([CheckClock]), the AK's
// binding to an EK (credential activation), and qualifiedSigner, which is
// returned but not checked.
func VerifyQuote(ak *AKPublic, q Quote, want QuoteExpectations) (*VerifiedQuote, error) {
	if ak == nil || ak.Key == nil {
		return nil, errors.New("verify quote: no attestation key: parse it with ParseAKPublic first")
	}
	wantSel, err := want.Selection.Normalize()
	if err != nil {
		return nil, fmt.Errorf("verify quote: requested selection: %w", err)
	}
	if len(wantSel) == 0 {
		return nil, errors.New("verify quote: the requested PCR selection is empty: select at least one PCR")
	}

	// 1.
	var a AttestationData
	var qi QuoteInfo
	if err := parseAttestationData(q.Attest, &a, &qi); err != nil {
		return nil, verifyErrWrap(ReasonMalformedAttest, err, "quote attestation data is malformed")
	}
	// 2.
	if a.Magic != tpmGeneratedValue {
		return nil, verifyErr(ReasonBadMagic, "quote magic is 0x%08x, want TPM_GENERATED_VALUE 0x%08x", a.Magic, tpmGeneratedValue)
	}
	// 3.
	if a.Type != tpmSTAttestQuote {
		return nil, verifyErr(ReasonNotQuote, "attestation type is %s, want TPM_ST_ATTEST_QUOTE", attestTypeName(a.Type))
	}
	// 4.
	if len(a.ExtraData) != len(want.Nonce) || subtle.ConstantTimeCompare(a.ExtraData, want.Nonce) != 1 {
		return nil, verifyErr(ReasonNonceMismatch, "quote extraData (%d bytes) does not equal the nonce (%d bytes): the quote answers another challenge", len(a.ExtraData), len(want.Nonce))
	}
	// 5.
	gotSel, err := Selection(a.Quote.PCRSelection).Normalize()
	if err != nil {
		return nil, verifyErrWrap(ReasonMalformedAttest, err, "signed PCR selection")
	}
	if err := compareSelections(gotSel, wantSel); err != nil {
		return nil, err
	}
	// 6. The selected values are also concatenated, in the signed order,
	// for the pcrDigest of check 8: gotSel keeps the wire order of the
	// banks and drops only empty ones, which add nothing to the digest.
	var catBuf [2048]byte
	cat := catBuf[:0]
	verified := make(PCRValues, len(gotSel))
	complete := len(want.PCRs) == len(gotSel)
	for _, b := range gotSel {
		size := b.Hash.Size()
		if size == 0 {
			return nil, verifyErr(ReasonSelectionMismatch, "signed selection names bank %s, which has no known digest size", b.Hash)
		}
		reported := want.PCRs[b.Hash]
		bank := make(map[int][]byte, len(b.PCRs))
		for _, i := range b.PCRs {
			d, ok := reported[i]
			if !ok {
				return nil, verifyErr(ReasonMissingPCR, "no value reported for %s PCR %d, which the quote covers", b.Hash, i)
			}
			if len(d) != size {
				return nil, verifyErr(ReasonMissingPCR, "reported %s PCR %d has %d bytes, want %d", b.Hash, i, len(d), size)
			}
			bank[i] = d
			cat = append(cat, d...)
		}
		verified[b.Hash] = bank
		complete = complete && len(reported) == len(b.PCRs)
	}
	// 7.
	var sig Signature
	if err := parseSignature(q.Signature, &sig); err != nil {
		return nil, verifyErrWrap(ReasonMalformedSignature, err, "quote signature is malformed")
	}
	if err := checkScheme(ak, &sig, want.InsecureAllowSHA1); err != nil {
		return nil, err
	}
	hash := HashFunc(sig.Hash)

	// 8. The TPM hashes the selected PCRs with the signing scheme's hash,
	// in the order of the selection as it appears in TPMS_QUOTE_INFO.
	var sumBuf [64]byte
	if sum := hashSum(hash, sumBuf[:0], cat); !bytes.Equal(sum, qi.PCRDigest) {
		return nil, verifyErr(ReasonPCRDigestMismatch, "reported PCR values (%s) do not hash to the signed pcrDigest: a reported value differs from the TPM's", gotSel)
	}

	// 9.
	digest := hashSum(hash, sumBuf[:0], q.Attest)
	if err := verifySignature(ak, &sig, digest); err != nil {
		return nil, err
	}

	out := &VerifiedQuote{
		Clock:           a.ClockInfo,
		FirmwareVersion: a.FirmwareVersion,
		QualifiedSigner: a.QualifiedSigner,
		Selection:       a.Quote.PCRSelection,
		Verified:        verified,
	}
	if complete {
		// Every reported bank holds exactly the selected PCRs: nothing is
		// left unverified.
		return out, nil
	}
	for alg, bank := range want.PCRs {
		for i, d := range bank {
			if _, ok := verified[alg][i]; !ok {
				if out.Unverified == nil {
					out.Unverified = make(PCRValues)
				}
				SetPCR(out.Unverified, alg, i, d)
			}
		}
	}
	return out, nil
}

// hashSum appends the digest of data to dst. The hashes checkScheme
// accepts are called directly, without a hash.Hash, so data (a stack
// buffer in VerifyQuote) does not escape to the heap.
func hashSum(hash crypto.Hash, dst, data []byte) []byte {
	switch hash {
	case crypto.SHA256:
		sum := sha256.Sum256(data)
		return append(dst, sum[:]...)
	case crypto.SHA384:
		sum := sha512.Sum384(data)
		return append(dst, sum[:]...)
	case crypto.SHA512:
		sum := sha512.Sum512(data)
		return append(dst, sum[:]...)
	case crypto.SHA1:
		sum := sha1.Sum(data)
		return append(dst, sum[:]...)
	}
	h := hash.New()
	h.Write(bytes.Clone(data))
	return h.Sum(dst)
}

func compareSelections(got, want Selection) error {
	// Both are normalized: each bank appears at most once.
	for _, w := range want {
		var g *BankSelection
		for i := range got {
			if got[i].Hash == w.Hash {
				g = &got[i]
				break
			}
		}
		if g == nil {
			return verifyErr(ReasonSelectionMismatch, "signed selection %q lacks bank %s, requested %q", got, w.Hash, want)
		}
		if !equalInts(g.PCRs, w.PCRs) {
			return verifyErr(ReasonSelectionMismatch, "signed selection of bank %s is PCRs %s, requested %s", w.Hash, FormatPCRList(g.PCRs), FormatPCRList(w.PCRs))
		}
	}
	if len(got) != len(want) {
		for _, g := range got {
			if !slices.ContainsFunc(want, func(w BankSelection) bool { return w.Hash == g.Hash }) {
				return verifyErr(ReasonSelectionMismatch, "signed selection %q has bank %s, which was not requested", got, g.Hash)
			}
		}
	}
	return nil
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func checkScheme(ak *AKPublic, sig *Signature, allowSHA1 bool) error {
	_, isRSA := ak.Key.(*rsa.PublicKey)
	switch {
	case isRSA && (sig.SigAlg == sigAlgRSASSA || sig.SigAlg == sigAlgRSAPSS):
	case !isRSA && sig.SigAlg == sigAlgECDSA:
	default:
		return verifyErr(ReasonSignatureScheme, "signature algorithm %s does not fit the %s attestation key", sigAlgName(sig.SigAlg), keyTypeName(ak.Public.Type))
	}
	if ak.SigAlg != 0 && (sig.SigAlg != ak.SigAlg || sig.Hash != ak.Hash) {
		return verifyErr(ReasonSignatureScheme, "signature scheme %s-%s differs from the attestation key's scheme %s-%s", sigAlgName(sig.SigAlg), sig.Hash, sigAlgName(ak.SigAlg), ak.Hash)
	}
	switch sig.Hash {
	case AlgSHA256, AlgSHA384, AlgSHA512:
	case AlgSHA1:
		if !allowSHA1 {
			return verifyErr(ReasonWeakHash, "signature digest is SHA-1: use an attestation key with a SHA-256 scheme, or allow SHA-1 explicitly")
		}
	default:
		return verifyErr(ReasonSignatureScheme, "signature hash %s is not supported", sig.Hash)
	}
	return nil
}

func verifySignature(ak *AKPublic, sig *Signature, digest []byte) error {
	switch k := ak.Key.(type) {
	case *rsa.PublicKey:
		var err error
		if sig.SigAlg == sigAlgRSAPSS {
			// The TPM uses a salt as long as the digest when it can, and
			// the maximum otherwise: auto-detect accepts both.
			err = rsa.VerifyPSS(k, HashFunc(sig.Hash), digest, sig.RSA, &rsa.PSSOptions{SaltLength: rsa.PSSSaltLengthAuto})
		} else {
			err = rsa.VerifyPKCS1v15(k, HashFunc(sig.Hash), digest, sig.RSA)
		}
		if err != nil {
			return verifyErrWrap(ReasonBadSignature, err, "%s signature does not verify under the attestation key", sigAlgName(sig.SigAlg))
		}
	case *ecdsa.PublicKey:
		r := new(big.Int).SetBytes(sig.R)
		s := new(big.Int).SetBytes(sig.S)
		if !ecdsa.Verify(k, digest, r, s) {
			return verifyErr(ReasonBadSignature, "ECDSA signature does not verify under the attestation key")
		}
	default:
		return verifyErr(ReasonAKKey, "attestation key type %T cannot verify signatures", ak.Key)
	}
	return nil
}

// CheckClock compares the clock of a quote with the previous verified quote
// of the same TPM. It rejects a reset counter that decreased, a restart
// counter that decreased within the same reset, and a clock that went
// backwards without a reset or restart. A higher ResetCount means the
// machine rebooted, which the caller may want to record.
func CheckClock(prev, cur ClockInfo) error {
	switch {
	case cur.ResetCount < prev.ResetCount:
		return verifyErr(ReasonClockRollback, "TPM resetCount went from %d to %d", prev.ResetCount, cur.ResetCount)
	case cur.ResetCount == prev.ResetCount && cur.RestartCount < prev.RestartCount:
		return verifyErr(ReasonClockRollback, "TPM restartCount went from %d to %d without a reset", prev.RestartCount, cur.RestartCount)
	case cur.ResetCount == prev.ResetCount && cur.RestartCount == prev.RestartCount && cur.Clock < prev.Clock:
		return verifyErr(ReasonClockRollback, "TPM clock went from %d ms to %d ms without a reset or restart", prev.Clock, cur.Clock)
	}
	return nil
}
