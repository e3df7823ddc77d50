package verifier

import (
	"strings"
	"testing"
)

func ev(index, pcr int, typ, sha256 string) MeasuredEvent {
	return MeasuredEvent{Index: index, PCR: pcr, Type: typ, Digests: map[string]string{"sha1": "11", "sha256": sha256}}
}

func TestFirstBootPolicyMatches(t *testing.T) {
	boot := []MeasuredEvent{ev(1, 0, "EV_S_CRTM_VERSION", "aa"), ev(2, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "bb"), ev(3, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "cc")}
	ref, err := FirstBootPolicy{}.Learn(&Boot{Events: boot})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(ref), `"bank":"sha256"`) {
		t.Errorf("reference %s is not kept in sha256", ref)
	}
	out, err := FirstBootPolicy{}.Evaluate(ref, &Boot{Events: boot})
	reasons := out.Reasons
	if err != nil || len(reasons) != 0 {
		t.Errorf("same boot: %v %v", reasons, err)
	}
}

func TestFirstBootPolicyReportsEachDifference(t *testing.T) {
	ref, _ := FirstBootPolicy{}.Learn(&Boot{Events: []MeasuredEvent{
		ev(1, 0, "EV_S_CRTM_VERSION", "aa"),
		ev(2, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "bb"),
		ev(3, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "cc"),
		ev(4, 7, "EV_EFI_VARIABLE_DRIVER_CONFIG", "dd"),
	}})
	later := []MeasuredEvent{
		ev(1, 0, "EV_S_CRTM_VERSION", "aa"),
		ev(2, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "bb"),
		ev(3, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "ee"), // replaced kernel
		ev(5, 4, "EV_EFI_BOOT_SERVICES_APPLICATION", "ff"), // extra
		// PCR 7's event is missing
	}
	out, err := FirstBootPolicy{}.Evaluate(ref, &Boot{Events: later})
	if err != nil {
		t.Fatal(err)
	}
	reasons := out.Reasons
	if len(reasons) != 3 {
		t.Fatalf("reasons = %+v, want 3", reasons)
	}
	r := reasons[0]
	if r.Code != ReasonEventUnexpected || *r.PCR != 4 || *r.Event != 3 || r.Digest != "ee" || len(r.Expected) != 1 || r.Expected[0] != "cc" {
		t.Errorf("first reason = %+v", r)
	}
	r = reasons[1]
	if r.Code != ReasonEventUnexpected || *r.Event != 5 || r.Expected != nil || !strings.Contains(r.Message, "no event at this position") {
		t.Errorf("second reason = %+v", r)
	}
	r = reasons[2]
	if r.Code != ReasonEventMissing || *r.PCR != 7 || r.Digest != "dd" {
		t.Errorf("third reason = %+v", r)
	}
}

func TestFirstBootPolicyReportsOrder(t *testing.T) {
	ref, _ := FirstBootPolicy{}.Learn(&Boot{Events: []MeasuredEvent{ev(1, 4, "A", "bb"), ev(2, 4, "B", "cc")}})
	out, _ := FirstBootPolicy{}.Evaluate(ref, &Boot{Events: []MeasuredEvent{ev(1, 4, "B", "cc"), ev(2, 4, "A", "bb")}})
	reasons := out.Reasons
	if len(reasons) != 1 || !strings.Contains(reasons[0].Message, "out of order") {
		t.Errorf("reordered events: %+v", reasons)
	}
}

func TestFirstBootPolicyRejectsEmptyBoot(t *testing.T) {
	if _, err := (FirstBootPolicy{}).Learn(&Boot{}); err == nil {
		t.Error("learned reference values from no events")
	}
	if _, err := (FirstBootPolicy{}).Evaluate([]byte("{"), &Boot{}); err == nil {
		t.Error("evaluated against unreadable reference values")
	}
}
