package seal

import (
	"bytes"
	"crypto/subtle"
	"encoding/binary"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/tpm"
)

// Blob is a sealed secret as stored on disk: the TPM's sealed data object
// and what is needed to load it and satisfy its policy again.
//
// A Blob read by ParseBlob is consistent (its authPolicy matches its
// policy fields) but untrusted: only the TPM decides whether it unseals.
type Blob struct {
	Kind   PolicyKind
	Parent ParentKind

	// PCRs are the PCR values the object was sealed against. For
	// PolicyPCRValues they are the policy itself. For PolicyAuthorized
	// they are the values at seal time, kept so that a failed unseal can
	// name the PCRs that changed.
	PCRs PCRs

	// PolicyKey is the key whose approvals the object accepts
	// (PolicyAuthorized only).
	PolicyKey *tpm2.TPMTPublic
	// Counter is the NV index of the revocation counter that approvals
	// are checked against, or 0 when approvals cannot be revoked
	// (PolicyAuthorized only).
	Counter tpm2.TPMHandle

	// Public and Private are the sealed object as TPM2_Create returned it.
	Public  tpm2.TPM2BPublic
	Private tpm2.TPM2BPrivate
}

// AuthPolicy returns the policy digest the blob's object must carry,
// computed from the blob's policy fields.
func (b *Blob) AuthPolicy() ([]byte, error) {
	switch b.Kind {
	case PolicyPCRValues:
		return PCRPolicy(b.PCRs)
	case PolicyAuthorized:
		if b.PolicyKey == nil {
			return nil, fmt.Errorf("authorized sealed blob has no policy key")
		}
		return AuthorizePolicy(b.PolicyKey)
	}
	return nil, fmt.Errorf("unknown policy kind %d", b.Kind)
}

// Marshal encodes the blob in the version 1 format of docs/sealing.md.
func (b *Blob) Marshal() ([]byte, error) {
	if err := b.check(); err != nil {
		return nil, err
	}
	out := append([]byte(nil), blobMagic...)
	out = binary.BigEndian.AppendUint16(out, FormatVersion)
	out = append(out, byte(b.Kind), byte(b.Parent))
	out = appendPCRs(out, b.PCRs)
	if b.Kind == PolicyAuthorized {
		out = append(out, tpm2.Marshal(tpm2.New2B(*b.PolicyKey))...)
		out = binary.BigEndian.AppendUint32(out, uint32(b.Counter))
	}
	out = append(out, tpm2.Marshal(b.Public)...)
	out = append(out, tpm2.Marshal(b.Private)...)
	return out, nil
}

// ParseBlob decodes a sealed blob and checks that it is self-consistent:
//
//  1. the magic, version, policy kind, parent kind and PCR bank are known;
//  2. every length is within the file, and no bytes trail the last field;
//  3. the PCR values have the bank's digest size;
//  4. an authorized blob's policy key is an ECDSA P-256 key of the form
//     Vouch creates, and its counter index is 0 or in the owner NV range;
//  5. the sealed object is a keyed-hash object that cannot be duplicated
//     and has no authValue path to unseal;
//  6. the object's authPolicy equals the policy computed from the blob's
//     fields, so the PCR values a failed unseal reports are the ones
//     sealed to.
//
// It does not check that the object belongs to this TPM: loading it does.
func ParseBlob(data []byte) (*Blob, error) {
	r := newReader("sealed blob", data)
	r.header(blobMagic)

	b := &Blob{}
	kindAt := r.Off
	b.Kind = PolicyKind(r.U8("policy kind"))
	if !r.Failed() && b.Kind != PolicyPCRValues && b.Kind != PolicyAuthorized {
		r.Off = kindAt
		r.Failf("policy kind", "%d is unknown: expected 1 (pcr) or 2 (authorized)", uint8(b.Kind))
	}
	parentAt := r.Off
	b.Parent = ParentKind(r.U8("parent kind"))
	if !r.Failed() && b.Parent != ParentECCSRK {
		r.Off = parentAt
		r.Failf("parent kind", "%d is unknown: expected 1 (ECC P-256 SRK)", uint8(b.Parent))
	}
	b.PCRs = r.pcrs()

	if b.Kind == PolicyAuthorized {
		start := r.Off
		raw := r.sized("policy key")
		if pub := unmarshalTPM[tpm2.TPM2BPublic](r, "policy key", raw, start); pub != nil {
			key, err := publicContents(*pub)
			if err == nil {
				_, err = policyKeyECDSA(key)
			}
			if err != nil {
				r.Off = start
				r.Failf("policy key", "%v", err)
			}
			b.PolicyKey = key
		}
		counterAt := r.Off
		b.Counter = tpm2.TPMHandle(r.U32("counter index"))
		if !r.Failed() && b.Counter != 0 {
			if _, err := tpm.CounterPublic(b.Counter); err != nil {
				r.Off = counterAt
				r.Failf("counter index", "%v", err)
			}
		}
	}

	start := r.Off
	raw := r.sized("sealed object public area")
	if pub := unmarshalTPM[tpm2.TPM2BPublic](r, "sealed object public area", raw, start); pub != nil {
		b.Public = *pub
		if err := checkSealedPublic(b); err != nil {
			r.Off = start
			r.Failf("sealed object public area", "%v", err)
		}
	}
	start = r.Off
	raw = r.sized("sealed object private area")
	if priv := unmarshalTPM[tpm2.TPM2BPrivate](r, "sealed object private area", raw, start); priv != nil {
		b.Private = *priv
	}
	r.end()
	if r.Failed() {
		return nil, r.formatError()
	}
	return b, nil
}

// checkSealedPublic implements checks 5 and 6 of ParseBlob.
func checkSealedPublic(b *Blob) error {
	pub, err := publicContents(b.Public)
	if err != nil {
		return err
	}
	want, err := b.AuthPolicy()
	if err != nil {
		return err
	}
	if pub.Type != tpm2.TPMAlgKeyedHash || pub.NameAlg != policyHash {
		return fmt.Errorf("type 0x%04x with name algorithm 0x%04x is not a sealed data object named with SHA-256", uint16(pub.Type), uint16(pub.NameAlg))
	}
	attrs := pub.ObjectAttributes
	if !attrs.FixedTPM || !attrs.FixedParent || attrs.UserWithAuth || attrs.SignEncrypt || attrs.Decrypt || attrs.Restricted {
		return fmt.Errorf("object attributes allow duplication, unsealing without the policy, or use as a key")
	}
	if subtle.ConstantTimeCompare(pub.AuthPolicy.Buffer, want) != 1 {
		return fmt.Errorf("authPolicy %x differs from the %s policy %x computed from the blob: the blob was altered", pub.AuthPolicy.Buffer, b.Kind, want)
	}
	return nil
}

// check validates a Blob before Marshal writes it.
func (b *Blob) check() error {
	if b.Kind != PolicyPCRValues && b.Kind != PolicyAuthorized {
		return fmt.Errorf("unknown policy kind %d", b.Kind)
	}
	if b.Parent != ParentECCSRK {
		return fmt.Errorf("unknown parent kind %d", b.Parent)
	}
	if err := b.PCRs.Validate(); err != nil {
		return err
	}
	if b.Kind == PolicyAuthorized {
		if b.PolicyKey == nil {
			return fmt.Errorf("authorized sealed blob has no policy key")
		}
		if b.Counter != 0 {
			if _, err := tpm.CounterPublic(b.Counter); err != nil {
				return err
			}
		}
	}
	if len(b.Private.Buffer) == 0 {
		return fmt.Errorf("sealed object has no private area")
	}
	return checkSealedPublic(b)
}

// Equal reports whether two blobs encode the same bytes.
func (b *Blob) Equal(o *Blob) bool {
	x, err1 := b.Marshal()
	y, err2 := o.Marshal()
	return err1 == nil && err2 == nil && bytes.Equal(x, y)
}
