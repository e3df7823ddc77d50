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
}

// NewDeviceTPM reads the EK and loads the AK saved in stateDir, creating
// and saving one on first use. The AK lives under the RSA EK, the EK type
// TPMs most often carry a certificate for.
func NewDeviceTPM(t *tpm.TPM, stateDir string) (*DeviceTPM, error) {
	ek, err := t.EK(tpm.RSA)
	if err != nil {
		return nil, fmt.Errorf("read EK: %w", err)
	}
	path := filepath.Join(stateDir, akFile)
	ak, err := tpm.LoadAKFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		ak, err = t.CreateAK(tpm.AKOptions{Parent: tpm.RSA})
		if err != nil {
			return nil, fmt.Errorf("create AK: %w", err)
		}
		if err := ak.Save(path); err != nil {
			return nil, err
		}
	} else if err != nil {
		return nil, err
	}
	return &DeviceTPM{t: t, ek: ek, ak: ak}, nil
}

// EK implements TPM.
func (d *DeviceTPM) EK() ([]byte, []byte, error) { return d.ek.Public, d.ek.Certificate, nil }

// AKPublic implements TPM.
func (d *DeviceTPM) AKPublic() []byte { return d.ak.Public }

// ActivateCredential implements TPM.
func (d *DeviceTPM) ActivateCredential(credential, encryptedSecret []byte) ([]byte, error) {
	return d.t.ActivateCredential(d.ak, credential, encryptedSecret)
}

// Quote implements TPM.
func (d *DeviceTPM) Quote(nonce []byte, pcrs []int) ([]byte, []byte, []api.PCRBank, error) {
	sel, err := d.t.SelectAllBanks(pcrs)
	if err != nil {
		return nil, nil, nil, err
	}
	q, values, err := d.t.QuoteWithPCRs(d.ak, nonce, sel)
	if err != nil {
		return nil, nil, nil, err
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
// active; it returns the banks it extended.
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
