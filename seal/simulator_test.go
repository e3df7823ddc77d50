package seal

import (
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
