package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/vouch-attest/vouch/api"
	"github.com/vouch-attest/vouch/attest"
	"github.com/vouch-attest/vouch/tpm"
)

// akFile is the AK's wrapped key blob in the state directory.
const akFile = "ak.bin"

// DeviceTPM adapts a tpm.TPM to the agent: it keeps the AK in the state
// directory so the machine's identity survives restarts.
type DeviceTPM struct {
	t  *tpm.TPM
	ek *tpm.EK
	ak *tpm.AK
	// akPath is the AK file. unsaved is set for a new AK, which is written
	// there only once the TPM has activated a credential for it.
	akPath  string
	unsaved bool
}

// AKNotInTPMError is an AK file that the TPM rejects: the AK was made by
// another TPM, or this TPM was cleared, re-manufactured or is a simulator
// that restarted. Retrying cannot help.
type AKNotInTPMError struct {
	Path string
	// Machine is the machine's name at the verifier, if known.
	Machine string
	Err     error
}

func (e *AKNotInTPMError) Error() string {
	name := e.Machine
	if name == "" {
		name = "NAME"
	}
	return fmt.Sprintf("the AK in %s does not load in this TPM (%v): the TPM was cleared, re-manufactured or is a restarted simulator; "+
		"to enroll this machine as new, remove the state directory %s and, if the verifier knows the machine, run 'vouch hosts forget %s' there first",
		e.Path, e.Err, filepath.Dir(e.Path), name)
}

func (e *AKNotInTPMError) Unwrap() error { return e.Err }

// NewDeviceTPM reads the EK and loads the AK saved in stateDir, checking
// that it belongs to this TPM (else an *AKNotInTPMError). Without a saved
// AK it creates one, which ActivateCredential saves once the verifier has
// sent a credential challenge for it. The
// AK lives under the RSA EK, the EK type TPMs most often carry a
// certificate for.
func NewDeviceTPM(t *tpm.TPM, stateDir string) (*DeviceTPM, error) {
	ek, err := t.EK(tpm.RSA)
	if err != nil {
		return nil, fmt.Errorf("read EK: %w", err)
	}
	path := filepath.Join(stateDir, akFile)
	ak, err := tpm.LoadAKFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		ak, err = t.CreateAK(tpm.AKOptions{Parent: tpm.RSA})
		if err != nil {
			return nil, fmt.Errorf("create AK: %w", err)
		}
		return &DeviceTPM{t: t, ek: ek, ak: ak, akPath: path, unsaved: true}, nil
	case err != nil:
		return nil, err
	}
	if err := t.CheckAK(ak); err != nil {
		return nil, akError(path, err)
	}
	return &DeviceTPM{t: t, ek: ek, ak: ak, akPath: path}, nil
}

// akError marks an AK the TPM rejects as an *AKNotInTPMError, which stops
// the agent.
func akError(path string, err error) error {
	if tpm.AKNotInTPM(err) {
		return &PermanentError{Err: &AKNotInTPMError{Path: path, Err: err}}
	}
	return err
}

// saveAK writes a new AK to the state directory. It does nothing for an
// AK loaded from there.
func (d *DeviceTPM) saveAK() error {
	if !d.unsaved {
		return nil
	}
	if err := d.ak.Save(d.akPath); err != nil {
		return err
	}
	d.unsaved = false
	return nil
}

// EK implements TPM.
func (d *DeviceTPM) EK() ([]byte, []byte, error) { return d.ek.Public, d.ek.Certificate, nil }

// AKPublic implements TPM.
func (d *DeviceTPM) AKPublic() []byte { return d.ak.Public }

// ActivateCredential implements TPM. On success it saves a new AK to the
// state directory.
func (d *DeviceTPM) ActivateCredential(credential, encryptedSecret []byte) ([]byte, error) {
	secret, err := d.t.ActivateCredential(d.ak, credential, encryptedSecret)
	if err != nil {
		return nil, akError(d.akPath, err)
	}
	// The verifier trusts the EK, since it sent this challenge, and the
	// TPM holds the AK: save a new AK now, so a lost activation response
	// is retried with the same key.
	if err := d.saveAK(); err != nil {
		return nil, err
	}
	return secret, nil
}

// Quote implements TPM.
func (d *DeviceTPM) Quote(nonce []byte, pcrs []int) ([]byte, []byte, []api.PCRBank, error) {
	sel, err := d.t.SelectAllBanks(pcrs)
	if err != nil {
		return nil, nil, nil, err
	}
	q, values, err := d.t.QuoteWithPCRs(d.ak, nonce, sel)
	if err != nil {
		return nil, nil, nil, akError(d.akPath, err)
	}
	var banks []api.PCRBank
	for _, b := range sel {
		bank := api.PCRBank{Alg: uint16(b.Hash), Values: map[int][]byte{}}
		for _, i := range b.PCRs {
			if v, ok := attest.GetPCR(values, b.Hash, i); ok {
				bank.Values[i] = v
			}
		}
		banks = append(banks, bank)
	}
	return q.Attest, q.Signature, banks, nil
}

// Extend extends one PCR in every bank named in digests that the TPM has
// active, and returns the banks it extended.
func (d *DeviceTPM) Extend(index int, digests map[attest.Algorithm][]byte) ([]attest.Algorithm, error) {
	active, err := d.t.ActiveBanks()
	if err != nil {
		return nil, err
	}
	use := map[attest.Algorithm][]byte{}
	var banks []attest.Algorithm
	for _, b := range active {
		if d, ok := digests[b.Hash]; ok {
			use[b.Hash] = d
			banks = append(banks, b.Hash)
		}
	}
	if len(use) == 0 {
		return nil, nil
	}
	return banks, d.t.ExtendPCR(index, use)
}

// PCR reads one PCR of one bank.
func (d *DeviceTPM) PCR(alg attest.Algorithm, index int) ([]byte, error) {
	vals, err := d.t.ReadPCRs(attest.Selection{{Hash: alg, PCRs: []int{index}}})
	if err != nil {
		return nil, err
	}
	v, ok := attest.GetPCR(vals, alg, index)
	if !ok {
		return nil, fmt.Errorf("PCR %d of bank %s not returned", index, alg)
	}
	return v, nil
}
