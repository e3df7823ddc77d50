package seal

import (
	"bytes"
	"crypto/ecdsa"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"
)

// MaxSecretSize is the largest secret a sealed data object holds
// (MAX_SYM_DATA in TPM 2.0 Part 2, 128 bytes on every TPM Vouch knows).
const MaxSecretSize = 128

// Request says what to seal a secret to.
type Request struct {
	// PCRs are the values to seal against: the current values, or values
	// expected after the next boot. For an authorized seal they are only
	// recorded, to explain a later failed unseal.
	PCRs PCRs
	// PolicyKey, when set, seals with TPM2_PolicyAuthorize so the secret
	// unseals under any PCR policy this key approves.
	PolicyKey *ecdsa.PublicKey
	// Counter is the NV index of the revocation counter approvals are
	// checked against (authorized seals only; 0 for none). It must exist:
	// see EnsureCounter.
	Counter tpm2.TPMHandle
}

// Seal creates a sealed data object holding secret under the storage root
// key of the owner hierarchy and returns it as a Blob. The owner
// hierarchy's authorization must be empty.
func Seal(t transport.TPM, secret []byte, req Request) (*Blob, error) {
	if len(secret) == 0 || len(secret) > MaxSecretSize {
		return nil, fmt.Errorf("secret is %d bytes: a TPM seals 1 to %d bytes", len(secret), MaxSecretSize)
	}
	b := &Blob{Kind: PolicyPCRValues, Parent: ParentECCSRK, PCRs: req.PCRs}
	if req.PolicyKey != nil {
		pub, err := PolicyKeyPublic(req.PolicyKey)
		if err != nil {
			return nil, err
		}
		b.Kind, b.PolicyKey, b.Counter = PolicyAuthorized, pub, req.Counter
	} else if req.Counter != 0 {
		return nil, fmt.Errorf("a revocation counter needs a policy key: approvals are what it revokes")
	}
	if err := req.PCRs.Validate(); err != nil {
		return nil, err
	}
	policy, err := b.AuthPolicy()
	if err != nil {
		return nil, err
	}

	srk, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, srk.Handle, &err)

	rsp, err := tpm2.Create{
		ParentHandle: srk,
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(SealedTemplate(policy)),
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("create sealed object: %w", err)
	}
	b.Public, b.Private = rsp.OutPublic, rsp.OutPrivate
	if err := b.check(); err != nil {
		return nil, fmt.Errorf("sealed object the TPM returned: %w", err)
	}
	return b, nil
}

// Unseal returns the secret of b. The TPM checks the policy:
//
//   - a PolicyPCRValues blob unseals while the PCRs hold b.PCRs;
//   - a PolicyAuthorized blob unseals under the first approval whose PCR
//     values equal the current ones, whose signature the TPM verifies with
//     the blob's policy key and, with a revocation counter, whose
//     generation is at least the counter's value.
//
// A refusal is a *VerificationError naming the PCRs that differ from the
// values sealed against; other failures are operational errors.
func Unseal(t transport.TPM, b *Blob, approvals []*Approval) ([]byte, error) {
	current, err := ReadPCRs(t, b.PCRs.Bank, b.PCRs.Selection())
	if err != nil {
		return nil, err
	}
	changed := b.PCRs.Changed(current)

	switch b.Kind {
	case PolicyPCRValues:
		if len(changed) > 0 {
			return nil, &VerificationError{Reason: fmt.Sprintf("pcrs %s of bank %s changed since sealing: the boot differs from the one sealed to", formatList(changed), b.PCRs.Bank), Changed: changed}
		}
		return unsealWith(t, b, changed, func(s tpm2.Session) error {
			_, err := pcrPolicyCommand(b.PCRs).withSession(s).Execute(t)
			return err
		})
	case PolicyAuthorized:
		return unsealAuthorized(t, b, approvals, changed)
	}
	return nil, fmt.Errorf("unknown policy kind %d", b.Kind)
}

// unsealAuthorized picks the approval matching the current PCRs and runs
// PolicyPCR, PolicyNV and PolicyAuthorize with it.
func unsealAuthorized(t transport.TPM, b *Blob, approvals []*Approval, changed []int) ([]byte, error) {
	if len(approvals) == 0 {
		return nil, &VerificationError{Reason: "no approvals given: an authorized blob unseals only under a policy signed with its policy key (vouch seal authorize)", Changed: changed}
	}
	var (
		reasons []string
		chosen  *Approval
	)
	for i, a := range approvals {
		if err := a.VerifyFor(b); err != nil {
			reasons = append(reasons, fmt.Sprintf("approval %d: %v", i+1, err))
			continue
		}
		now, err := ReadPCRs(t, a.PCRs.Bank, a.PCRs.Selection())
		if err != nil {
			return nil, err
		}
		if diff := a.PCRs.Changed(now); len(diff) > 0 {
			reasons = append(reasons, fmt.Sprintf("approval %d: pcrs %s differ", i+1, formatList(diff)))
			continue
		}
		if a.Counter != 0 {
			value, err := ReadCounter(t, a.Counter)
			if err != nil {
				return nil, err
			}
			if value > a.Generation {
				reasons = append(reasons, fmt.Sprintf("approval %d: generation %d is revoked, the counter is at %d", i+1, a.Generation, value))
				continue
			}
		}
		chosen = a
		break
	}
	if chosen == nil {
		msg := "no approval matches this boot"
		if len(changed) > 0 {
			msg += fmt.Sprintf(" (pcrs %s of bank %s changed since sealing)", formatList(changed), b.PCRs.Bank)
		}
		return nil, &VerificationError{Reason: msg + ": " + joinReasons(reasons), Changed: changed}
	}

	approved, err := chosen.Policy()
	if err != nil {
		return nil, err
	}
	return unsealWith(t, b, changed, func(s tpm2.Session) error {
		if _, err := pcrPolicyCommand(chosen.PCRs).withSession(s).Execute(t); err != nil {
			return fmt.Errorf("PolicyPCR: %w", err)
		}
		if chosen.Counter != 0 {
			cmd, err := counterPolicyCommand(chosen.Counter, chosen.Generation)
			if err != nil {
				return err
			}
			nv := cmd.NVIndex.(tpm2.NamedHandle)
			cmd.AuthHandle = tpm2.AuthHandle{Handle: nv.Handle, Name: nv.Name, Auth: tpm2.PasswordAuth(nil)}
			cmd.PolicySession = s.Handle()
			if _, err := cmd.Execute(t); err != nil {
				return fmt.Errorf("PolicyNV on revocation counter 0x%08x: %w", uint32(chosen.Counter), err)
			}
		}
		ticket, err := verifyApproval(t, b.PolicyKey, approved, chosen.Signature)
		if err != nil {
			return err
		}
		_, err = tpm2.PolicyAuthorize{
			PolicySession:  s.Handle(),
			ApprovedPolicy: tpm2.TPM2BDigest{Buffer: approved},
			KeySign:        chosen.KeyName,
			CheckTicket:    *ticket,
		}.Execute(t)
		if err != nil {
			return fmt.Errorf("PolicyAuthorize: %w", err)
		}
		return nil
	})
}

// verifyApproval has the TPM check the approval signature and returns the
// ticket PolicyAuthorize needs. The key is loaded in the owner hierarchy:
// a key in the null hierarchy yields a null ticket, which PolicyAuthorize
// rejects.
func verifyApproval(t transport.TPM, key *tpm2.TPMTPublic, approved []byte, sig tpm2.TPMTSignature) (ticket *tpm2.TPMTTKVerified, err error) {
	loaded, err := tpm2.LoadExternal{InPublic: tpm2.New2B(*key), Hierarchy: tpm2.TPMRHOwner}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("load policy key: %w", err)
	}
	defer flush(t, loaded.ObjectHandle, &err)
	rsp, err := tpm2.VerifySignature{
		KeyHandle: loaded.ObjectHandle,
		Digest:    tpm2.TPM2BDigest{Buffer: signedDigest(approved)},
		Signature: sig,
	}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("TPM rejected the approval signature: %w", err)
	}
	return &rsp.Validation, nil
}

// unsealWith loads b under a fresh SRK, runs policy in a new policy session
// and unseals. A policy command or unseal refused for policy reasons
// becomes a *VerificationError.
func unsealWith(t transport.TPM, b *Blob, changed []int, policy func(tpm2.Session) error) (secret []byte, err error) {
	srk, err := createSRK(t)
	if err != nil {
		return nil, err
	}
	defer flush(t, srk.Handle, &err)
	loaded, err := tpm2.Load{ParentHandle: srk, InPrivate: b.Private, InPublic: b.Public}.Execute(t)
	if err != nil {
		return nil, fmt.Errorf("load sealed object (was it sealed on another TPM, or was the TPM cleared?): %w", err)
	}
	defer flush(t, loaded.ObjectHandle, &err)

	sess, closeSession, err := tpm2.PolicySession(t, policyHash, 16)
	if err != nil {
		return nil, fmt.Errorf("start policy session: %w", err)
	}
	defer func() {
		if cerr := closeSession(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("flush policy session: %w", cerr))
		}
	}()

	if err := policy(sess); err != nil {
		return nil, refusal(err, changed)
	}
	rsp, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: loaded.ObjectHandle, Name: loaded.Name, Auth: sess}}.Execute(t)
	if err != nil {
		return nil, refusal(fmt.Errorf("unseal: %w", err), changed)
	}
	return rsp.OutData.Buffer, nil
}

// refusal turns TPM policy failures into a *VerificationError.
func refusal(err error, changed []int) error {
	for _, rc := range []tpm2.TPMRC{tpm2.TPMRCPolicyFail, tpm2.TPMRCValue, tpm2.TPMRCPolicy, tpm2.TPMRCSignature} {
		if errors.Is(err, rc) {
			reason := "the TPM refused to unseal"
			if len(changed) > 0 {
				reason += fmt.Sprintf(": pcrs %s changed since sealing", formatList(changed))
			}
			return &VerificationError{Reason: reason, Changed: changed, Err: err}
		}
	}
	return err
}

// withSession returns the command with its policy session handle set.
func (p pcrPolicy) withSession(s tpm2.Session) tpm2.PolicyPCR {
	cmd := tpm2.PolicyPCR(p)
	cmd.PolicySession = s.Handle()
	return cmd
}

type pcrPolicy tpm2.PolicyPCR

// createSRK creates the ECC P-256 storage root key of ParentECCSRK. It is
// derived from the owner seed, so every call returns the same key.
func createSRK(t transport.TPM) (tpm2.AuthHandle, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHOwner,
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t)
	if err != nil {
		return tpm2.AuthHandle{}, fmt.Errorf("create storage root key in the owner hierarchy (is an owner password set?): %w", err)
	}
	return tpm2.AuthHandle{Handle: rsp.ObjectHandle, Name: rsp.Name, Auth: tpm2.PasswordAuth(nil)}, nil
}

// flush flushes a transient handle and joins a failure into *errp.
func flush(t transport.TPM, h tpm2.TPMHandle, errp *error) {
	if _, err := (tpm2.FlushContext{FlushHandle: h}).Execute(t); err != nil {
		*errp = errors.Join(*errp, fmt.Errorf("flush handle 0x%08x: %w", uint32(h), err))
	}
}

// ReadPCRs reads the selected PCRs of one bank.
func ReadPCRs(t transport.TPM, bank Bank, sel Selection) (PCRs, error) {
	out := PCRs{Bank: bank, Values: make(map[int][]byte, sel.Len())}
	pending := sel
	// TPM2_PCR_Read returns at most 8 digests per call.
	for pending != 0 {
		rsp, err := tpm2.PCRRead{PCRSelectionIn: pending.TPML(bank)}.Execute(t)
		if err != nil {
			return PCRs{}, fmt.Errorf("read %s pcrs %s: %w", bank, pending, err)
		}
		got := 0
		for _, s := range rsp.PCRSelectionOut.PCRSelections {
			if Bank(s.Hash) != bank {
				continue
			}
			for i := range min(len(s.PCRSelect)*8, MaxPCR) {
				if s.PCRSelect[i/8]&(1<<(i%8)) == 0 {
					continue
				}
				if got >= len(rsp.PCRValues.Digests) {
					return PCRs{}, fmt.Errorf("read %s pcrs: the TPM returned fewer digests than selected", bank)
				}
				out.Values[i] = bytes.Clone(rsp.PCRValues.Digests[got].Buffer)
				pending &^= SelectionOf(i)
				got++
			}
		}
		if got == 0 {
			return PCRs{}, fmt.Errorf("read %s pcrs %s: the TPM returned none (is the %s bank active?)", bank, pending, bank)
		}
	}
	if err := out.Validate(); err != nil {
		return PCRs{}, fmt.Errorf("pcr values the TPM returned: %w", err)
	}
	return out, nil
}

// EnsureCounter defines the revocation counter at index unless it exists,
// increments it once so it can be read, and returns its value. An existing
// index with other attributes is an error, never overwritten. Defining and
// incrementing need an empty owner authorization.
func EnsureCounter(t transport.TPM, index tpm2.TPMHandle) (uint64, error) {
	want, err := CounterPublic(index)
	if err != nil {
		return 0, err
	}
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	switch {
	case err == nil:
		got, cerr := rsp.NVPublic.Contents()
		if cerr != nil {
			return 0, cerr
		}
		if !bytes.Equal(tpm2.Marshal(got), tpm2.Marshal(&want)) {
			return 0, fmt.Errorf("nv index 0x%08x exists with other attributes: it is not a vouch revocation counter, choose another index with --counter", uint32(index))
		}
		return ReadCounter(t, index)
	case errors.Is(err, tpm2.TPMRCHandle):
	default:
		return 0, fmt.Errorf("read public area of nv index 0x%08x: %w", uint32(index), err)
	}

	define := want
	define.Attributes.Written = false
	if _, err := (tpm2.NVDefineSpace{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		PublicInfo: tpm2.New2B(define),
	}).Execute(t); err != nil {
		return 0, fmt.Errorf("define revocation counter at nv index 0x%08x: %w", uint32(index), err)
	}
	return IncrementCounter(t, index)
}

// ReadCounter returns the value of the revocation counter at index.
func ReadCounter(t transport.TPM, index tpm2.TPMHandle) (uint64, error) {
	name, err := CounterName(index)
	if err != nil {
		return 0, err
	}
	rsp, err := tpm2.NVRead{
		AuthHandle: tpm2.AuthHandle{Handle: index, Name: name, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: name},
		Size:       8,
	}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("read revocation counter at nv index 0x%08x (create it with vouch seal --policy-key): %w", uint32(index), err)
	}
	if len(rsp.Data.Buffer) != 8 {
		return 0, fmt.Errorf("revocation counter at nv index 0x%08x returned %d bytes: expected 8", uint32(index), len(rsp.Data.Buffer))
	}
	return binary.BigEndian.Uint64(rsp.Data.Buffer), nil
}

// IncrementCounter adds one to the revocation counter at index, revoking
// every approval whose generation is below the new value, and returns the
// new value. It needs an empty owner authorization.
func IncrementCounter(t transport.TPM, index tpm2.TPMHandle) (uint64, error) {
	if _, err := CounterPublic(index); err != nil {
		return 0, err
	}
	// Before the first increment the index is not yet written, which
	// changes its name.
	rsp, err := tpm2.NVReadPublic{NVIndex: index}.Execute(t)
	if err != nil {
		return 0, fmt.Errorf("read public area of nv index 0x%08x: %w", uint32(index), err)
	}
	if _, err := (tpm2.NVIncrement{
		AuthHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		NVIndex:    tpm2.NamedHandle{Handle: index, Name: rsp.NVName},
	}).Execute(t); err != nil {
		return 0, fmt.Errorf("increment revocation counter at nv index 0x%08x: %w", uint32(index), err)
	}
	return ReadCounter(t, index)
}

func formatList(pcrs []int) string {
	return SelectionOf(pcrs...).String()
}

func joinReasons(reasons []string) string {
	var b bytes.Buffer
	for i, r := range reasons {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(r)
	}
	return b.String()
}
