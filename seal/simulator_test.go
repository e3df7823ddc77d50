package seal

import (
	"errors"
	"math/rand/v2"
	"testing"

	"github.com/vouch-attest/vouch/tpm"
	"github.com/vouch-attest/vouch/tpm/tpmtest"
)

func TestSimulator(t *testing.T) {
	if !tpm.SimulatorAvailable {
		t.Skip("this build has no simulator (CGO_ENABLED=0)")
	}
	tp, err := tpm.Open(tpm.Config{Transport: tpm.TransportSimulator})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	testTPM(t, tp)
}

func TestSwtpm(t *testing.T) {
	tp, err := tpm.Open(tpm.Config{Transport: tpmtest.Swtpm(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer tp.Close()
	testTPM(t, tp)
}

// TestUnsealOnAnotherTPM: a blob sealed by one TPM and unsealed on another
// whose PCRs differ fails as a blob the TPM rejects, not as changed PCRs,
// because no boot of the second machine would unseal it.
func TestUnsealOnAnotherTPM(t *testing.T) {
	sealer, err := tpm.Open(tpm.Config{Transport: tpmtest.Swtpm(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer sealer.Close()
	other, err := tpm.Open(tpm.Config{Transport: tpmtest.Swtpm(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	extend(t, other, 7, "another machine's secure boot database")

	key := testKey(t, 21)
	pcrBlob, err := Seal(sealer, []byte("pcr secret"), Request{PCRs: currentPCRs(t, sealer)})
	if err != nil {
		t.Fatal(err)
	}
	authorizedBlob, err := Seal(sealer, []byte("authorized secret"), Request{PCRs: currentPCRs(t, sealer), PolicyKey: &key.PublicKey})
	if err != nil {
		t.Fatal(err)
	}
	approval, err := Approve(rand.NewChaCha8([32]byte{5}), key, currentPCRs(t, sealer), 0, 0)
	if err != nil {
		t.Fatal(err)
	}

	for _, tt := range []struct {
		name      string
		blob      *Blob
		approvals []*Approval
	}{
		{"pcr policy", pcrBlob, nil},
		{"authorized policy", authorizedBlob, []*Approval{approval}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Unseal(other, roundTrip(t, tt.blob), tt.approvals)
			if got != nil {
				t.Errorf("Unseal on another TPM returned a secret")
			}
			if !errors.Is(err, ErrBlobRejected) {
				t.Errorf("Unseal on another TPM = %v, want ErrBlobRejected", err)
			}
			var ve *VerificationError
			if errors.As(err, &ve) {
				t.Errorf("Unseal on another TPM reports a policy refusal: %v", err)
			}
		})
	}

	// On the sealing TPM, changed PCRs are still reported as such.
	extend(t, sealer, 7, "a new secure boot database")
	got, err := Unseal(sealer, pcrBlob, nil)
	expectRejected(t, got, err, 7)
	handles, err := other.TransientHandles()
	if err != nil {
		t.Fatal(err)
	}
	if len(handles) != 0 {
		t.Errorf("transient handles left loaded on the other TPM: %#x", handles)
	}
}
