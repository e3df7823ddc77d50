package tpm

import (
	"bytes"
	"errors"
	"fmt"

	"github.com/google/go-tpm/tpm2"

	"github.com/vouch-attest/vouch/attest"
)

// toTPML converts a selection to a TPML_PCR_SELECTION.
func toTPML(sel attest.Selection) tpm2.TPMLPCRSelection {
	var out tpm2.TPMLPCRSelection
	for _, b := range sel {
		bitmap := make([]byte, 3)
		for _, p := range b.PCRs {
			for p/8 >= len(bitmap) {
				bitmap = append(bitmap, 0)
			}
			bitmap[p/8] |= 1 << (p % 8)
		}
		out.PCRSelections = append(out.PCRSelections, tpm2.TPMSPCRSelection{Hash: tpm2.TPMIAlgHash(b.Hash), PCRSelect: bitmap})
	}
	return out
}

// SelectAllBanks returns a selection of the given PCRs in every active
// bank.
func (t *TPM) SelectAllBanks(pcrs []int) (attest.Selection, error) {
	banks, err := t.ActiveBanks()
	if err != nil {
		return nil, err
	}
	sel := make(attest.Selection, 0, len(banks))
	for _, b := range banks {
		sel = append(sel, attest.BankSelection{Hash: b.Hash, PCRs: pcrs})
	}
	return sel.Normalize()
}

// ReadPCRs reads the selected PCRs. A nil selection reads every PCR of
// every active bank.
func (t *TPM) ReadPCRs(sel attest.Selection) (attest.PCRValues, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	return t.readPCRs(sel)
}

func (t *TPM) readPCRs(sel attest.Selection) (attest.PCRValues, error) {
	var err error
	if sel == nil {
		if sel, err = t.activeBanks(); err != nil {
			return nil, err
		}
	}
	if sel, err = sel.Normalize(); err != nil {
		return nil, err
	}
	out := make(attest.PCRValues)
	// TPM2_PCR_Read returns at most 8 digests per call: ask for the rest
	// until every selected PCR has a value.
	for _, bank := range sel {
		pending := bank.PCRs
		for len(pending) > 0 {
			rsp, err := tpm2.PCRRead{PCRSelectionIn: toTPML(attest.Selection{{Hash: bank.Hash, PCRs: pending}})}.Execute(t.t)
			if err != nil {
				return nil, fmt.Errorf("reading %s PCRs %s: %w", bank.Hash, attest.FormatPCRList(pending), err)
			}
			var got []int
			for _, s := range rsp.PCRSelectionOut.PCRSelections {
				if attest.Algorithm(s.Hash) != bank.Hash {
					continue
				}
				for i, b := range s.PCRSelect {
					for bit := range 8 {
						if b&(1<<bit) != 0 {
							got = append(got, i*8+bit)
						}
					}
				}
			}
			if len(got) == 0 || len(got) != len(rsp.PCRValues.Digests) {
				return nil, fmt.Errorf("reading %s PCRs %s: the TPM returned %d digests for %d PCRs (is the bank active?)", bank.Hash, attest.FormatPCRList(pending), len(rsp.PCRValues.Digests), len(got))
			}
			for i, p := range got {
				attest.SetPCR(out, bank.Hash, p, rsp.PCRValues.Digests[i].Buffer)
			}
			var rest []int
			for _, p := range pending {
				if _, ok := attest.GetPCR(out, bank.Hash, p); !ok {
					rest = append(rest, p)
				}
			}
			if len(rest) == len(pending) {
				return nil, fmt.Errorf("reading %s PCRs %s: the TPM returned none of them", bank.Hash, attest.FormatPCRList(pending))
			}
			pending = rest
		}
	}
	return out, nil
}

// ExtendPCR extends one PCR in each bank named in digests. Banks not named
// are left unchanged.
func (t *TPM) ExtendPCR(index int, digests map[attest.Algorithm][]byte) error {
	if index < 0 || index >= attest.MaxPCRs {
		return fmt.Errorf("invalid PCR index %d: use 0 to %d", index, attest.MaxPCRs-1)
	}
	if len(digests) == 0 {
		return errors.New("extend PCR: no digest given")
	}
	var list tpm2.TPMLDigestValues
	for alg, d := range digests {
		if alg.Size() == 0 || len(d) != alg.Size() {
			return fmt.Errorf("extend PCR %d: %s digest has %d bytes, want %d", index, alg, len(d), alg.Size())
		}
		list.Digests = append(list.Digests, tpm2.TPMTHA{HashAlg: tpm2.TPMIAlgHash(alg), Digest: d})
	}
	if err := t.lock(); err != nil {
		return err
	}
	defer t.unlock()
	_, err := tpm2.PCRExtend{
		PCRHandle: tpm2.AuthHandle{Handle: tpm2.TPMHandle(index), Auth: tpm2.PasswordAuth(nil)},
		Digests:   list,
	}.Execute(t.t)
	if err != nil {
		return fmt.Errorf("extending PCR %d: %w", index, err)
	}
	return nil
}

// Quote signs the selected PCRs and the nonce with ak. The result holds
// TPMS_ATTEST and TPMT_SIGNATURE exactly as the TPM returned them.
func (t *TPM) Quote(ak *AK, nonce []byte, sel attest.Selection) (*attest.Quote, error) {
	if err := t.lock(); err != nil {
		return nil, err
	}
	defer t.unlock()
	return t.quote(ak, nonce, sel)
}

func (t *TPM) quote(ak *AK, nonce []byte, sel attest.Selection) (q *attest.Quote, err error) {
	if len(nonce) > 64 {
		return nil, fmt.Errorf("quote: nonce of %d bytes exceeds the 64 a TPM accepts", len(nonce))
	}
	sel, err = sel.Normalize()
	if err != nil {
		return nil, fmt.Errorf("quote: %w", err)
	}
	if len(sel) == 0 {
		return nil, errors.New("quote: the PCR selection is empty")
	}
	h, err := t.loadAK(ak)
	if err != nil {
		return nil, err
	}
	defer t.flush(h.Handle, &err)
	rsp, err := tpm2.Quote{
		SignHandle:     tpm2.AuthHandle{Handle: h.Handle, Name: h.Name, Auth: tpm2.PasswordAuth(nil)},
		QualifyingData: tpm2.TPM2BData{Buffer: nonce},
		InScheme:       tpm2.TPMTSigScheme{Scheme: tpm2.TPMAlgNull},
		PCRSelect:      toTPML(sel),
	}.Execute(t.t)
	if err != nil {
		return nil, fmt.Errorf("quoting PCRs %s: %w", sel, err)
	}
	return &attest.Quote{Attest: rsp.Quoted.Bytes(), Signature: tpm2.Marshal(rsp.Signature)}, nil
}

// QuoteWithPCRs quotes the selection and reads the quoted PCR values, and
// repeats both (at most three times) when a PCR changed in between, so the
// values match the quote's pcrDigest. It compares the values themselves:
// the PCR update counter does not count extends of PCRs that the platform
// exempts (TPM_PT_PCR_NO_INCREMENT, PCR 16 and 21 to 23 on PC Client TPMs).
func (t *TPM) QuoteWithPCRs(ak *AK, nonce []byte, sel attest.Selection) (*attest.Quote, attest.PCRValues, error) {
	if err := t.lock(); err != nil {
		return nil, nil, err
	}
	defer t.unlock()
	for range 3 {
		before, err := t.readPCRs(sel)
		if err != nil {
			return nil, nil, err
		}
		q, err := t.quote(ak, nonce, sel)
		if err != nil {
			return nil, nil, err
		}
		after, err := t.readPCRs(sel)
		if err != nil {
			return nil, nil, err
		}
		if equalPCRValues(before, after) {
			return q, after, nil
		}
		t.log.Debug("PCRs changed while quoting, retrying")
	}
	return nil, nil, errors.New("quote: PCRs kept changing while quoting: retry later")
}

func equalPCRValues(a, b attest.PCRValues) bool {
	if len(a) != len(b) {
		return false
	}
	for alg, bank := range a {
		other := b[alg]
		if len(other) != len(bank) {
			return false
		}
		for i, d := range bank {
			if !bytes.Equal(d, other[i]) {
				return false
			}
		}
	}
	return true
}
