package tpm

import (
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/attest"
)

// ErrPolicyMismatch is returned by Unseal when the TPM refuses the policy:
// the PCRs no longer hold the values the secret was sealed to, or the
// signed policy does not authorize them.
var ErrPolicyMismatch = errors.New("unseal policy rejected by the TPM: the PCR values differ from the sealed or approved ones")

// maxSealSize is the largest secret a sealed data object holds
// (MAX_SYM_DATA on common TPMs).
const maxSealSize = 128

// Sealed is a secret sealed to PCR values by the TPM's storage root key.
// Only the same TPM can unseal it.
type Sealed struct {
	// Public and Private are the sealed data object's TPM2B contents.
	Public  []byte
	Private []byte
	// Selection names the PCRs of the policy.
	Selection attest.Selection
	// AuthorizingKey, when set, is the TPMT_PUBLIC of the key whose
	// signature authorizes PCR policies (PolicyAuthorize), and PolicyRef
	// is the reference the signature covers.
	AuthorizingKey []byte
	PolicyRef      []byte
}

// PCRPolicyDigest computes the SHA-256 policy digest of
// TPM2_PolicyPCR(selection, values) from an empty policy, in software
// (TPM 2.0 Part 3, section 23.7): the digest a sealed object must carry to
// be unsealed when the PCRs hold the given values.
func PCRPolicyDigest(sel attest.Selection, values attest.PCRValues) ([]byte, error) {
	sel, err := sel.Normalize()
	if err != nil {
		return nil, err
	}
	if len(sel) == 0 {
		return nil, errors.New("PCR policy: the selection is empty")
	}
	pcrHash := sha256.New()
	for _, b := range sel {
		for _, i := range b.PCRs {
			d, ok := attest.GetPCR(values, b.Hash, i)
			if !ok {
				return nil, fmt.Errorf("PCR policy: no value for %s PCR %d", b.Hash, i)
			}
			pcrHash.Write(d)
		}
	}
	h := sha256.New()
	h.Write(make([]byte, sha256.Size))
	h.Write(binary.BigEndian.AppendUint32(nil, uint32(tpm2.TPMCCPolicyPCR)))
	h.Write(tpm2.Marshal(toTPML(sel)))
	h.Write(pcrHash.Sum(nil))
	return h.Sum(nil), nil
}

func sealTemplate(policy []byte) tpm2.TPMTPublic {
	return tpm2.TPMTPublic{
		Type:    tpm2.TPMAlgKeyedHash,
		NameAlg: tpm2.TPMAlgSHA256,
		ObjectAttributes: tpm2.TPMAObject{
			FixedTPM:    true,
			FixedParent: true,
			// No userWithAuth: only the policy opens the object.
			NoDA: true,
		},
		AuthPolicy: tpm2.TPM2BDigest{Buffer: policy},
		Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgKeyedHash, &tpm2.TPMSKeyedHashParms{
			Scheme: tpm2.TPMTKeyedHashScheme{Scheme: tpm2.TPMAlgNull},
		}),
	}
}

// Seal seals secret to the current values of the selected PCRs.
func (t *TPM) Seal(secret []byte, sel attest.Selection) (*Sealed, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	values, err := t.readPCRs(sel)
	if err != nil {
		return nil, err
	}
	return t.sealTo(secret, sel, values)
}

// SealToValues seals secret to given PCR values, such as values predicted
// for the next boot.
func (t *TPM) SealToValues(secret []byte, sel attest.Selection, values attest.PCRValues) (*Sealed, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	return t.sealTo(secret, sel, values)
}

func (t *TPM) sealTo(secret []byte, sel attest.Selection, values attest.PCRValues) (*Sealed, error) {
	sel, err := sel.Normalize()
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	policy, err := PCRPolicyDigest(sel, values)
	if err != nil {
		return nil, fmt.Errorf("seal: %w", err)
	}
	s, err := t.createSealed(secret, policy)
	if err != nil {
		return nil, err
	}
	s.Selection = sel
	return s, nil
}

// createSRK creates the TCG default ECC P-256 storage root key as a
// transient primary key. The caller flushes it.
func (t *TPM) createSRK() (tpm2.NamedHandle, error) {
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.AuthHandle{Handle: tpm2.TPMRHOwner, Auth: tpm2.PasswordAuth(nil)},
		InPublic:      tpm2.New2B(tpm2.ECCSRKTemplate),
	}.Execute(t.t)
	if err != nil {
		return tpm2.NamedHandle{}, fmt.Errorf("creating the storage root key: %w", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

func (t *TPM) createSealed(secret, policy []byte) (s *Sealed, err error) {
	if len(secret) == 0 || len(secret) > maxSealSize {
		return nil, fmt.Errorf("seal: secret of %d bytes: seal 1 to %d bytes (seal a key, not a file)", len(secret), maxSealSize)
	}
	srk, err := t.createSRK()
	if err != nil {
		return nil, err
	}
	defer t.flush(srk.Handle, &err)
	rsp, err := tpm2.Create{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InSensitive: tpm2.TPM2BSensitiveCreate{Sensitive: &tpm2.TPMSSensitiveCreate{
			Data: tpm2.NewTPMUSensitiveCreate(&tpm2.TPM2BSensitiveData{Buffer: secret}),
		}},
		InPublic: tpm2.New2B(sealTemplate(policy)),
	}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("seal: creating the sealed object: %w", err)
	}
	return &Sealed{Public: rsp.OutPublic.Bytes(), Private: rsp.OutPrivate.Buffer}, nil
}

// Unseal returns the secret if the PCRs hold the sealed values. It returns
// an error wrapping ErrPolicyMismatch when they do not.
func (t *TPM) Unseal(s *Sealed) ([]byte, error) {
	if s == nil || len(s.AuthorizingKey) != 0 {
		return nil, errors.New("unseal: the blob needs a signed policy: use UnsealAuthorized")
	}
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	return t.unseal(s, func(sess tpm2.Session) error {
		_, err := tpm2.PolicyPCR{PolicySession: sess.Handle(), Pcrs: toTPML(s.Selection)}.Execute(t.t)
		return err
	})
}

// CheckSealed loads s and flushes it again, without unsealing. Callers use
// it to distinguish a blob that this TPM cannot load from one whose policy
// fails. Loading fails when another TPM sealed the blob, this TPM was
// cleared since, or the blob was altered (TPM_RC_INTEGRITY on swtpm and
// the reference simulator).
func (t *TPM) CheckSealed(s *Sealed) (err error) {
	if err := t.lock(); err != nil {
		return err
	}
	defer t.unlock()
	obj, err := t.loadSealed(s)
	if err != nil {
		return err
	}
	t.flush(obj.Handle, &err)
	return err
}

// loadSealed loads s under a transient SRK, which it flushes again. The
// caller flushes the returned handle.
func (t *TPM) loadSealed(s *Sealed) (obj tpm2.NamedHandle, err error) {
	srk, err := t.createSRK()
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	rsp, err := tpm2.Load{
		ParentHandle: tpm2.AuthHandle{Handle: srk.Handle, Name: srk.Name, Auth: tpm2.PasswordAuth(nil)},
		InPrivate:    tpm2.TPM2BPrivate{Buffer: s.Private},
		InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](s.Public),
	}.Execute(t.t)
	t.flush(srk.Handle, &err)
	if err != nil {
		if rsp != nil {
			t.flush(rsp.ObjectHandle, &err)
		}
		return tpm2.NamedHandle{}, fmt.Errorf("unseal: loading the sealed object: %w (was it sealed by this TPM?)", err)
	}
	return tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}, nil
}

// unseal loads the sealed object under the SRK and unseals it in a policy
// session that satisfy prepares.
func (t *TPM) unseal(s *Sealed, satisfy func(tpm2.Session) error) (secret []byte, err error) {
	obj, err := t.loadSealed(s)
	if err != nil {
		return nil, err
	}
	defer t.flush(obj.Handle, &err)

	sess, closeSession, err := tpm2.PolicySession(t.t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return nil, fmt.Errorf("unseal: starting a policy session: %w", err)
	}
	defer func() {
		if cerr := closeSession(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("flushing the unseal policy session: %w", cerr))
		}
	}()
	if err := satisfy(sess); err != nil {
		if isPolicyFailure(err) {
			return nil, fmt.Errorf("unseal: %w: %w", ErrPolicyMismatch, err)
		}
		return nil, fmt.Errorf("unseal: running the policy: %w", err)
	}
	out, err := tpm2.Unseal{ItemHandle: tpm2.AuthHandle{Handle: obj.Handle, Name: obj.Name, Auth: sess}}.Execute(t.t)
	if err != nil {
		if isPolicyFailure(err) {
			return nil, fmt.Errorf("unseal: %w: %w", ErrPolicyMismatch, err)
		}
		return nil, fmt.Errorf("unseal: %w", err)
	}
	return out.OutData.Buffer, nil
}

// isPolicyFailure reports whether err is a TPM response code of a policy
// check that did not hold. TPM_RC_POLICY is what TPM2_PolicyNV returns when
// its comparison fails.
func isPolicyFailure(err error) bool {
	return errors.Is(err, tpm2.TPMRCPolicyFail) || errors.Is(err, tpm2.TPMRCValue) || errors.Is(err, tpm2.TPMRCSignature) || errors.Is(err, tpm2.TPMRCPolicy)
}

// sealedFile is the JSON form of a Sealed.
type sealedFile struct {
	Format         string               `json:"format"`
	Public         string               `json:"public"`
	Private        string               `json:"private"`
	Selection      attest.SelectionJSON `json:"selection"`
	AuthorizingKey string               `json:"authorizing_key,omitempty"`
	PolicyRef      attest.HexBytes      `json:"policy_ref,omitempty"`
}

const sealedFormat = "vouch-sealed-v1"

// MarshalBinary encodes the sealed blob as JSON. The blob is encrypted by
// the TPM, yet store it 0600 like any secret-bearing file.
func (s *Sealed) MarshalBinary() ([]byte, error) {
	f := sealedFile{
		Format:    sealedFormat,
		Public:    base64.StdEncoding.EncodeToString(s.Public),
		Private:   base64.StdEncoding.EncodeToString(s.Private),
		Selection: attest.SelectionJSON(s.Selection),
		PolicyRef: s.PolicyRef,
	}
	if len(s.AuthorizingKey) > 0 {
		f.AuthorizingKey = base64.StdEncoding.EncodeToString(s.AuthorizingKey)
	}
	return json.MarshalIndent(f, "", "  ")
}

// UnmarshalSealed decodes a blob that MarshalBinary encoded.
func UnmarshalSealed(b []byte) (*Sealed, error) {
	var f sealedFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decoding sealed blob: %w", err)
	}
	if f.Format != sealedFormat {
		return nil, fmt.Errorf("decoding sealed blob: format %q, want %q", f.Format, sealedFormat)
	}
	s := &Sealed{Selection: attest.Selection(f.Selection), PolicyRef: f.PolicyRef}
	var err error
	if s.Public, err = base64.StdEncoding.DecodeString(f.Public); err != nil {
		return nil, fmt.Errorf("decoding sealed blob public part: %w", err)
	}
	if s.Private, err = base64.StdEncoding.DecodeString(f.Private); err != nil {
		return nil, fmt.Errorf("decoding sealed blob private part: %w", err)
	}
	if f.AuthorizingKey != "" {
		if s.AuthorizingKey, err = base64.StdEncoding.DecodeString(f.AuthorizingKey); err != nil {
			return nil, fmt.Errorf("decoding sealed blob authorizing key: %w", err)
		}
	}
	if len(s.Public) == 0 || len(s.Private) == 0 {
		return nil, errors.New("decoding sealed blob: public or private part is empty")
	}
	return s, nil
}
