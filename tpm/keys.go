package tpm

import (
	"crypto"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/google/go-tpm/tpm2"
)

// KeyType selects an RSA 2048 or an ECC NIST P-256 key.
type KeyType string

// Key types.
const (
	RSA KeyType = "rsa"
	ECC KeyType = "ecc"
)

// ParseKeyType parses "rsa" or "ecc".
func ParseKeyType(s string) (KeyType, error) {
	switch KeyType(s) {
	case RSA, ECC:
		return KeyType(s), nil
	}
	return "", fmt.Errorf("invalid key type %q: use rsa or ecc", s)
}

// NV indexes of the TCG EK Credential Profile (version 2.5, section 2.2.1).
const (
	nvRSAEKCert     = 0x01c00002
	nvRSAEKNonce    = 0x01c00003
	nvRSAEKTemplate = 0x01c00004
	nvECCEKCert     = 0x01c0000a
	nvECCEKNonce    = 0x01c0000b
	nvECCEKTemplate = 0x01c0000c
)

// EKCertificateIndex names an NV index that may hold an EK certificate.
type EKCertificateIndex struct {
	Index uint32
	Name  string
}

// EKCertificateIndexes lists the EK certificate NV indexes the TCG EK
// Credential Profile defines: the low range for the default templates and
// the high range for the other key types.
var EKCertificateIndexes = []EKCertificateIndex{
	{nvRSAEKCert, "RSA 2048 (low range)"},
	{nvECCEKCert, "ECC NIST P-256 (low range)"},
	{0x01c00012, "RSA 2048 (high range)"},
	{0x01c00014, "ECC NIST P-256 (high range)"},
	{0x01c00016, "ECC NIST P-384 (high range)"},
	{0x01c00018, "ECC NIST P-521 (high range)"},
	{0x01c0001a, "ECC SM2 P-256 (high range)"},
	{0x01c0001c, "RSA 3072 (high range)"},
	{0x01c0001e, "RSA 4096 (high range)"},
}

// EK is an endorsement key's public part and, when the TPM stores one, its
// certificate.
type EK struct {
	Type KeyType
	// Public is the EK's TPMT_PUBLIC.
	Public []byte
	Key    crypto.PublicKey
	// Certificate is the DER certificate read from NV, trimmed of the
	// padding some TPMs store after it; nil when the TPM has none.
	Certificate []byte
	// CertificateIndex is the NV index Certificate was read from.
	CertificateIndex uint32
}

// EK returns the endorsement key of the given type, creating it from the
// TCG default template (or the template the TPM stores in NV) and reading
// its certificate from NV when present.
func (t *TPM) EK(kt KeyType) (ek *EK, err error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	h, pub, err := t.createEK(kt)
	if err != nil {
		return nil, err
	}
	defer t.flush(h.Handle, &err)

	key, err := tpm2.Pub(*pub)
	if err != nil {
		return nil, fmt.Errorf("decoding the %s EK public key: %w", kt, err)
	}
	ek = &EK{Type: kt, Public: tpm2.Marshal(pub), Key: key}
	index := uint32(nvRSAEKCert)
	if kt == ECC {
		index = nvECCEKCert
	}
	cert, err := t.readNV(index)
	switch {
	case errors.Is(err, errNVMissing):
		t.log.Debug("no EK certificate in NV", "index", fmt.Sprintf("0x%08x", index))
	case err != nil:
		return nil, fmt.Errorf("reading the %s EK certificate: %w", kt, err)
	default:
		ek.Certificate = trimDER(cert)
		ek.CertificateIndex = index
	}
	return ek, nil
}

// EKCertificates reads every EK certificate the TPM stores, keyed by NV
// index.
func (t *TPM) EKCertificates() (map[uint32][]byte, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	out := make(map[uint32][]byte)
	for _, ix := range EKCertificateIndexes {
		cert, err := t.readNV(ix.Index)
		if errors.Is(err, errNVMissing) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("reading the %s EK certificate at 0x%08x: %w", ix.Name, ix.Index, err)
		}
		out[ix.Index] = trimDER(cert)
	}
	return out, nil
}

// trimDER cuts a certificate at the end of its outer DER SEQUENCE: some
// TPMs pad the NV index after the certificate.
func trimDER(b []byte) []byte {
	var raw asn1.RawValue
	rest, err := asn1.Unmarshal(b, &raw)
	if err != nil || len(rest) == 0 {
		return b
	}
	return b[:len(b)-len(rest)]
}

// ekTemplate returns the template for the EK of the given type: the one
// stored in NV if the TPM has one, else the TCG default, with the NV nonce
// applied when present (TCG EK Credential Profile, section 2.2.1.5).
func (t *TPM) ekTemplate(kt KeyType) (tpm2.TPMTPublic, error) {
	tmpl, nonceIx, templateIx := tpm2.RSAEKTemplate, uint32(nvRSAEKNonce), uint32(nvRSAEKTemplate)
	if kt == ECC {
		tmpl, nonceIx, templateIx = tpm2.ECCEKTemplate, nvECCEKNonce, nvECCEKTemplate
	} else if kt != RSA {
		return tpm2.TPMTPublic{}, fmt.Errorf("invalid EK type %q: use rsa or ecc", kt)
	}
	stored, err := t.readNV(templateIx)
	switch {
	case errors.Is(err, errNVMissing):
	case err != nil:
		return tmpl, fmt.Errorf("reading the EK template at NV 0x%08x: %w", templateIx, err)
	default:
		p, err := tpm2.Unmarshal[tpm2.TPMTPublic](stored)
		if err != nil {
			return tmpl, fmt.Errorf("decoding the EK template at NV 0x%08x: %w", templateIx, err)
		}
		tmpl = *p
	}
	nonce, err := t.readNV(nonceIx)
	switch {
	case errors.Is(err, errNVMissing):
		return tmpl, nil
	case err != nil:
		return tmpl, fmt.Errorf("reading the EK nonce at NV 0x%08x: %w", nonceIx, err)
	}
	switch kt {
	case RSA:
		unique := make([]byte, 256)
		copy(unique, nonce)
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{Buffer: unique})
	case ECC:
		x := make([]byte, 32)
		copy(x, nonce)
		tmpl.Unique = tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{
			X: tpm2.TPM2BECCParameter{Buffer: x},
			Y: tpm2.TPM2BECCParameter{Buffer: make([]byte, 32)},
		})
	}
	return tmpl, nil
}

// createEK creates the EK as a transient primary key. The caller flushes
// the returned handle.
func (t *TPM) createEK(kt KeyType) (tpm2.NamedHandle, *tpm2.TPMTPublic, error) {
	tmpl, err := t.ekTemplate(kt)
	if err != nil {
		return tpm2.NamedHandle{}, nil, err
	}
	rsp, err := tpm2.CreatePrimary{
		PrimaryHandle: tpm2.TPMRHEndorsement,
		InPublic:      tpm2.New2B(tmpl),
	}.Execute(t.t)
	if err != nil {
		return tpm2.NamedHandle{}, nil, fmt.Errorf("creating the %s EK: %w", kt, err)
	}
	h := tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		var ferr error
		t.flush(h.Handle, &ferr)
		return tpm2.NamedHandle{}, nil, errors.Join(fmt.Errorf("decoding the %s EK public area: %w", kt, err), ferr)
	}
	return h, pub, nil
}

// ekSession runs fn with a policy session that satisfies the default EK
// policy, PolicySecret(TPM_RH_ENDORSEMENT), and flushes the session.
func (t *TPM) ekSession(fn func(tpm2.Session) error) (err error) {
	sess, closeSession, err := tpm2.PolicySession(t.t, tpm2.TPMAlgSHA256, 16)
	if err != nil {
		return fmt.Errorf("starting the EK policy session: %w", err)
	}
	defer func() {
		if cerr := closeSession(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("flushing the EK policy session: %w", cerr))
		}
	}()
	_, err = tpm2.PolicySecret{
		AuthHandle:    tpm2.AuthHandle{Handle: tpm2.TPMRHEndorsement, Auth: tpm2.PasswordAuth(nil)},
		PolicySession: sess.Handle(),
		NonceTPM:      sess.NonceTPM(),
	}.Execute(t.t)
	if err != nil {
		return fmt.Errorf("satisfying the EK policy (PolicySecret endorsement): %w", err)
	}
	return fn(sess)
}

// AKOptions configures CreateAK.
type AKOptions struct {
	// Type is the AK's key type; the default is ECC (NIST P-256, ECDSA
	// with SHA-256). RSA creates an RSA 2048 key signing RSASSA SHA-256.
	Type KeyType
	// Parent is the type of the EK the AK is created under. The default is
	// RSA because TPMs most often carry a certificate for the RSA EK.
	Parent KeyType
}

// AK is an attestation key: a restricted signing key created under an EK.
// Its private part is wrapped by the TPM and useless elsewhere.
type AK struct {
	Type   KeyType
	Parent KeyType
	// Public is the AK's TPMT_PUBLIC, to send to the verifier.
	Public []byte
	// private is the TPM2B_PRIVATE contents, wrapped by the parent EK.
	private []byte
}

func akTemplate(kt KeyType) (tpm2.TPMTPublic, error) {
	attrs := tpm2.TPMAObject{
		FixedTPM:            true,
		FixedParent:         true,
		SensitiveDataOrigin: true,
		UserWithAuth:        true,
		NoDA:                true,
		Restricted:          true,
		SignEncrypt:         true,
	}
	switch kt {
	case ECC, "":
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgECC,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgECC, &tpm2.TPMSECCParms{
				Scheme: tpm2.TPMTECCScheme{
					Scheme:  tpm2.TPMAlgECDSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgECDSA, &tpm2.TPMSSigSchemeECDSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				CurveID: tpm2.TPMECCNistP256,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgECC, &tpm2.TPMSECCPoint{}),
		}, nil
	case RSA:
		return tpm2.TPMTPublic{
			Type:             tpm2.TPMAlgRSA,
			NameAlg:          tpm2.TPMAlgSHA256,
			ObjectAttributes: attrs,
			Parameters: tpm2.NewTPMUPublicParms(tpm2.TPMAlgRSA, &tpm2.TPMSRSAParms{
				Scheme: tpm2.TPMTRSAScheme{
					Scheme:  tpm2.TPMAlgRSASSA,
					Details: tpm2.NewTPMUAsymScheme(tpm2.TPMAlgRSASSA, &tpm2.TPMSSigSchemeRSASSA{HashAlg: tpm2.TPMAlgSHA256}),
				},
				KeyBits: 2048,
			}),
			Unique: tpm2.NewTPMUPublicID(tpm2.TPMAlgRSA, &tpm2.TPM2BPublicKeyRSA{}),
		}, nil
	}
	return tpm2.TPMTPublic{}, fmt.Errorf("invalid AK type %q: use rsa or ecc", kt)
}

// CreateAK creates an attestation key under the EK that opts.Parent
// names. Save it with (*AK).Save or MarshalBinary to reuse it.
func (t *TPM) CreateAK(opts AKOptions) (ak *AK, err error) {
	if opts.Type == "" {
		opts.Type = ECC
	}
	if opts.Parent == "" {
		opts.Parent = RSA
	}
	tmpl, err := akTemplate(opts.Type)
	if err != nil {
		return nil, err
	}
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	ek, _, err := t.createEK(opts.Parent)
	if err != nil {
		return nil, err
	}
	defer t.flush(ek.Handle, &err)

	var rsp *tpm2.CreateResponse
	err = t.ekSession(func(s tpm2.Session) error {
		var cerr error
		rsp, cerr = tpm2.Create{
			ParentHandle: tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: s},
			InPublic:     tpm2.New2B(tmpl),
		}.Execute(t.t)
		return cerr
	})
	if err != nil {
		return nil, fmt.Errorf("creating the %s AK under the %s EK: %w", opts.Type, opts.Parent, err)
	}
	pub, err := rsp.OutPublic.Contents()
	if err != nil {
		return nil, fmt.Errorf("decoding the AK public area: %w", err)
	}
	return &AK{Type: opts.Type, Parent: opts.Parent, Public: tpm2.Marshal(pub), private: rsp.OutPrivate.Buffer}, nil
}

// loadAK loads the AK under a fresh EK and flushes the EK. The caller
// flushes the returned handle.
func (t *TPM) loadAK(ak *AK) (tpm2.NamedHandle, error) {
	if ak == nil || len(ak.Public) == 0 || len(ak.private) == 0 {
		return tpm2.NamedHandle{}, errors.New("the AK is empty: create it with CreateAK or load it with LoadAK")
	}
	ek, _, err := t.createEK(ak.Parent)
	if err != nil {
		return tpm2.NamedHandle{}, err
	}
	var h tpm2.NamedHandle
	err = t.ekSession(func(s tpm2.Session) error {
		rsp, lerr := tpm2.Load{
			ParentHandle: tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: s},
			InPrivate:    tpm2.TPM2BPrivate{Buffer: ak.private},
			InPublic:     tpm2.BytesAs2B[tpm2.TPMTPublic](ak.Public),
		}.Execute(t.t)
		if lerr != nil {
			return lerr
		}
		h = tpm2.NamedHandle{Handle: rsp.ObjectHandle, Name: rsp.Name}
		return nil
	})
	t.flush(ek.Handle, &err)
	if err != nil {
		if h.Handle != 0 {
			t.flush(h.Handle, &err)
		}
		return tpm2.NamedHandle{}, fmt.Errorf("loading the AK under the %s EK: %w (was it created in this TPM?)", ak.Parent, err)
	}
	return h, nil
}

// akFile is the on-disk form of an AK.
type akFile struct {
	Format  string  `json:"format"`
	Type    KeyType `json:"type"`
	Parent  KeyType `json:"parent"`
	Public  string  `json:"public"`
	Private string  `json:"private"`
}

const akFormat = "vouch-ak-v1"

// MarshalBinary encodes the AK for storage. The private part is wrapped by
// the TPM, but the file still identifies the machine's key: store it 0600.
func (ak *AK) MarshalBinary() ([]byte, error) {
	return json.MarshalIndent(akFile{
		Format:  akFormat,
		Type:    ak.Type,
		Parent:  ak.Parent,
		Public:  base64.StdEncoding.EncodeToString(ak.Public),
		Private: base64.StdEncoding.EncodeToString(ak.private),
	}, "", "  ")
}

// UnmarshalAK decodes an AK that MarshalBinary encoded.
func UnmarshalAK(b []byte) (*AK, error) {
	var f akFile
	if err := json.Unmarshal(b, &f); err != nil {
		return nil, fmt.Errorf("decoding AK: %w", err)
	}
	if f.Format != akFormat {
		return nil, fmt.Errorf("decoding AK: format %q, want %q", f.Format, akFormat)
	}
	if _, err := ParseKeyType(string(f.Type)); err != nil {
		return nil, fmt.Errorf("decoding AK: %w", err)
	}
	if _, err := ParseKeyType(string(f.Parent)); err != nil {
		return nil, fmt.Errorf("decoding AK parent: %w", err)
	}
	pub, err := base64.StdEncoding.DecodeString(f.Public)
	if err != nil {
		return nil, fmt.Errorf("decoding AK public area: %w", err)
	}
	priv, err := base64.StdEncoding.DecodeString(f.Private)
	if err != nil {
		return nil, fmt.Errorf("decoding AK private blob: %w", err)
	}
	if len(pub) == 0 || len(priv) == 0 {
		return nil, errors.New("decoding AK: public or private part is empty")
	}
	return &AK{Type: f.Type, Parent: f.Parent, Public: pub, private: priv}, nil
}

// Save writes the AK to path with mode 0600, replacing the file atomically.
func (ak *AK) Save(path string) error {
	b, err := ak.MarshalBinary()
	if err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".ak-*")
	if err != nil {
		return fmt.Errorf("saving AK: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err != nil {
		tmp.Close()
		return fmt.Errorf("saving AK: %w", err)
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		return fmt.Errorf("saving AK to %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("saving AK to %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("saving AK to %s: %w", path, err)
	}
	return nil
}

// MaxAKFileSize bounds an AK file that LoadAKFile reads. Save writes a
// JSON object with the base64 public area and private blob of one key:
// about 1.5 KiB for an RSA 2048 AK and 400 bytes for an ECC P-256 AK.
const MaxAKFileSize = 64 << 10

// LoadAKFile reads an AK that Save wrote. It stops at MaxAKFileSize, so a
// device or an endless pipe given as path fails instead of being read
// forever.
func LoadAKFile(path string) (*AK, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("reading AK: %w", err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, MaxAKFileSize+1))
	if err != nil {
		return nil, fmt.Errorf("reading AK %s: %w", path, err)
	}
	if len(b) > MaxAKFileSize {
		return nil, fmt.Errorf("AK file %s is larger than the %d-byte limit: give the file that vouch agent or vouch tpm quote --ak wrote", path, MaxAKFileSize)
	}
	ak, err := UnmarshalAK(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return ak, nil
}

// ActivateCredential recovers the secret of a credential activation
// challenge made for ak and the EK it was created under.
func (t *TPM) ActivateCredential(ak *AK, credentialBlob, encryptedSecret []byte) (secret []byte, err error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	akh, err := t.loadAK(ak)
	if err != nil {
		return nil, err
	}
	defer t.flush(akh.Handle, &err)
	ek, _, err := t.createEK(ak.Parent)
	if err != nil {
		return nil, err
	}
	defer t.flush(ek.Handle, &err)

	err = t.ekSession(func(s tpm2.Session) error {
		rsp, aerr := tpm2.ActivateCredential{
			ActivateHandle: tpm2.AuthHandle{Handle: akh.Handle, Name: akh.Name, Auth: tpm2.PasswordAuth(nil)},
			KeyHandle:      tpm2.AuthHandle{Handle: ek.Handle, Name: ek.Name, Auth: s},
			CredentialBlob: tpm2.TPM2BIDObject{Buffer: credentialBlob},
			Secret:         tpm2.TPM2BEncryptedSecret{Buffer: encryptedSecret},
		}.Execute(t.t)
		if aerr != nil {
			return aerr
		}
		secret = rsp.CertInfo.Buffer
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("activating credential: %w", err)
	}
	return secret, nil
}

// CheckAK loads ak and flushes it, to find out at start whether the AK
// still belongs to this TPM. AKNotInTPM reports the error of an AK that
// does not.
func (t *TPM) CheckAK(ak *AK) (err error) {
	if err := t.lock(); err != nil {
		return err
	}
	defer t.unlock()
	h, err := t.loadAK(ak)
	if err != nil {
		return err
	}
	t.flush(h.Handle, &err)
	return err
}

// AKNotInTPM reports whether err is the TPM's rejection of an AK blob that
// another TPM wrapped (TPM_RC_INTEGRITY): the AK was created in another
// TPM, or this TPM was cleared, re-manufactured or restarted as a fresh
// simulator.
func AKNotInTPM(err error) bool { return errors.Is(err, tpm2.TPMRCIntegrity) }
