package predict

// efiActions lists the EV_EFI_ACTION strings that the TCG PC Client
// Platform Firmware Profile fixes, with the PCR each is logged in. The event
// digest is the hash of the string without a NUL.
var efiActions = []struct {
	pcr  int
	text string
}{
	{4, "Calling EFI Application from Boot Option"},
	{4, "Returning from EFI Application from Boot Option"},
	{5, "Exit Boot Services Invocation"},
	{5, "Exit Boot Services Returned with Success"},
	{5, "Exit Boot Services Returned with Failure"},
}

// FirmwareConstants predicts the events whose data no artifact decides:
// the EV_SEPARATOR in each of PCRs 0 to 7 (four zero bytes, as UEFI
// firmware logs it) and the fixed EV_EFI_ACTION strings.
func FirmwareConstants(banks []Bank) ([]Reference, error) {
	var refs []Reference
	sep, err := hashBytes(banks, []byte{0, 0, 0, 0})
	if err != nil {
		return nil, err
	}
	for pcr := 0; pcr <= 7; pcr++ {
		refs = append(refs, Reference{Kind: KindSeparator, PCR: pcr, EventType: EventSeparator, Component: "separator", Digests: sep})
	}
	for _, a := range efiActions {
		d, err := hashBytes(banks, []byte(a.text))
		if err != nil {
			return nil, err
		}
		refs = append(refs, Reference{Kind: KindEFIAction, PCR: a.pcr, EventType: EventEFIAction, Component: "firmware", Event: a.text, Digests: d})
	}
	return refs, nil
}
