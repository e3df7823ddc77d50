//go:build linux

package main

import (
	"encoding/hex"
	"fmt"
	"os"
	"strings"

	"github.com/google/go-tpm/tpm2"
	"github.com/google/go-tpm/tpm2/transport"

	"github.com/vouch-attest/vouch/e2e/qemu/guestproto"
	"github.com/vouch-attest/vouch/tpm"
)

const (
	eventLogPath = "/sys/kernel/security/tpm0/binary_bios_measurements"
	// SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c: 4 attribute bytes,
	// then one byte of value.
	secureBootVar = "/sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c"
)

func collect() guestproto.Report {
	rep := guestproto.Report{SecureBoot: "unknown"}
	if b, err := os.ReadFile(eventLogPath); err != nil {
		rep.EventLogError = err.Error()
	} else {
		rep.EventLog = b
	}
	if b, err := os.ReadFile("/proc/cmdline"); err == nil {
		rep.CmdLine = strings.TrimSpace(string(b))
	}
	if b, err := os.ReadFile(secureBootVar); err == nil && len(b) == 5 {
		rep.SecureBoot = map[byte]string{0: "off", 1: "on"}[b[4]]
	}
	if err := readTPM(&rep); err != nil {
		rep.TPMError = err.Error()
	}
	return rep
}

func readTPM(rep *guestproto.Report) error {
	dev, err := tpm.Open(tpm.Config{Transport: "device:/dev/tpmrm0"})
	if err != nil {
		return err
	}
	defer dev.Close()
	t := dev.Transport()
	rep.PCRs = map[string]map[int]string{}
	for name, alg := range map[string]tpm2.TPMAlgID{"sha1": tpm2.TPMAlgSHA1, "sha256": tpm2.TPMAlgSHA256} {
		vals, err := readBank(t, alg)
		if err != nil {
			return fmt.Errorf("read %s bank: %w", name, err)
		}
		rep.PCRs[name] = vals
	}
	clock, err := tpm2.ReadClock{}.Execute(t)
	if err != nil {
		return fmt.Errorf("read clock: %w", err)
	}
	rep.ResetCount = clock.CurrentTime.ClockInfo.ResetCount
	rep.RestartCount = clock.CurrentTime.ClockInfo.RestartCount
	return nil
}

// readBank reads PCRs 0-23 of one bank. A TPM returns at most eight
// digests per TPM2_PCRRead, so it reads again what is still missing.
func readBank(t transport.TPM, alg tpm2.TPMAlgID) (map[int]string, error) {
	out := map[int]string{}
	for attempt := 0; attempt < 8 && len(out) < 24; attempt++ {
		var want []uint
		for i := uint(0); i < 24; i++ {
			if _, ok := out[int(i)]; !ok {
				want = append(want, i)
			}
		}
		rsp, err := tpm2.PCRRead{PCRSelectionIn: tpm2.TPMLPCRSelection{
			PCRSelections: []tpm2.TPMSPCRSelection{{Hash: alg, PCRSelect: tpm2.PCClientCompatible.PCRs(want...)}},
		}}.Execute(t)
		if err != nil {
			return nil, err
		}
		var got []int
		for _, sel := range rsp.PCRSelectionOut.PCRSelections {
			for byteIdx, b := range sel.PCRSelect {
				for bit := 0; bit < 8; bit++ {
					if b&(1<<bit) != 0 {
						got = append(got, byteIdx*8+bit)
					}
				}
			}
		}
		if len(got) != len(rsp.PCRValues.Digests) {
			return nil, fmt.Errorf("TPM returned %d digests for %d selected PCRs", len(rsp.PCRValues.Digests), len(got))
		}
		if len(got) == 0 {
			break
		}
		for i, idx := range got {
			out[idx] = hex.EncodeToString(rsp.PCRValues.Digests[i].Buffer)
		}
	}
	if len(out) != 24 {
		return nil, fmt.Errorf("read only %d of 24 PCRs", len(out))
	}
	return out, nil
}
