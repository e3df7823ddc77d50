package policy

import (
	"strings"
	"unicode"

	"github.com/vouch-attest/vouch/bundle"
)

// Prefixes GRUB 2.04 and later put before the strings it measures into
// PCR 8. Debian's GRUB 2.06 writes these.
const (
	grubCommandPrefix = "grub_cmd: "
	grubCmdlinePrefix = "kernel_cmdline: "
	grubModulePrefix  = "module_cmdline: "
)

// Classify returns the event kind an event is taken to be, from its type,
// PCR and, for EV_IPL, its text. The text is not trusted, but a wrong guess
// changes only the explanation: matching compares PCR and digests.
func Classify(ev *Event) bundle.Kind {
	switch ev.Type {
	case "EV_EFI_PLATFORM_FIRMWARE_BLOB", "EV_EFI_PLATFORM_FIRMWARE_BLOB2", "EV_POST_CODE", "EV_POST_CODE2":
		return bundle.KindFirmwareBlob
	case "EV_S_CRTM_VERSION", "EV_S_CRTM_CONTENTS", "EV_EFI_HCRTM_EVENT":
		return bundle.KindCRTMVersion
	case "EV_EFI_HANDOFF_TABLES", "EV_EFI_HANDOFF_TABLES2", "EV_TABLE_OF_DEVICES",
		"EV_PLATFORM_CONFIG_FLAGS", "EV_NONHOST_CONFIG", "EV_NONHOST_INFO", "EV_NONHOST_CODE":
		return bundle.KindFirmwareConfig
	case "EV_EFI_VARIABLE_BOOT", "EV_EFI_VARIABLE_BOOT2":
		return bundle.KindBootVariable
	case "EV_EFI_VARIABLE_DRIVER_CONFIG":
		if ev.PCR == 14 || isShimVariable(ev) {
			return bundle.KindShimVariable
		}
		return bundle.KindSecureBootVar
	case "EV_EFI_VARIABLE_AUTHORITY":
		if isShimVariable(ev) && ev.Variable.Name == "SbatLevel" {
			return bundle.KindShimVariable
		}
		return bundle.KindAuthority
	case "EV_EFI_BOOT_SERVICES_APPLICATION":
		return bundle.KindBootApplication
	case "EV_EFI_BOOT_SERVICES_DRIVER", "EV_EFI_RUNTIME_SERVICES_DRIVER":
		return bundle.KindDriver
	case "EV_EFI_GPT_EVENT", "EV_EFI_GPT_EVENT2":
		return bundle.KindGPT
	case "EV_ACTION", "EV_EFI_ACTION", "EV_OMIT_BOOT_DEVICE_EVENTS":
		return bundle.KindAction
	case "EV_SEPARATOR":
		return bundle.KindSeparator
	case "EV_IPL", "EV_EVENT_TAG":
		return classifyIPL(ev)
	}
	return bundle.KindOther
}

func classifyIPL(ev *Event) bundle.Kind {
	switch ev.PCR {
	case 8:
		if strings.HasPrefix(ev.Text, grubCmdlinePrefix) || strings.HasPrefix(ev.Text, grubModulePrefix) {
			return bundle.KindKernelCmdline
		}
		return bundle.KindGRUBCommand
	case 9:
		return bundle.KindGRUBFile
	case 11:
		return bundle.KindUKISection
	case 12:
		return bundle.KindKernelCmdline
	case 14:
		return bundle.KindShimVariable
	}
	return bundle.KindOther
}

func isShimVariable(ev *Event) bool {
	if ev.Variable == nil {
		return false
	}
	switch ev.Variable.Name {
	case "MokList", "MokListX", "MokListTrusted", "SbatLevel":
		return true
	}
	return false
}

// ComponentName returns the name a verdict gives the component an event
// is taken to be: the file name of a boot application, the path GRUB
// read, the variable name, or the measured text. The name comes from
// event data that may be untrusted, so it is a label, never evidence.
func ComponentName(ev *Event) string {
	var name string
	switch {
	case ev.ImagePath != "":
		name = baseName(ev.ImagePath)
	case ev.Label != "":
		name = ev.Label
	case ev.Variable != nil && ev.Variable.Name != "":
		name = ev.Variable.Name
	case ev.Text != "" && Classify(ev) == bundle.KindGRUBFile:
		name = baseName(ev.Text)
	default:
		name = ev.Text
	}
	if name = label(name); name == "" {
		name = strings.ToLower(strings.TrimPrefix(ev.Type, "EV_"))
	}
	return name
}

// maxLabel bounds the characters of a name taken from event text.
const maxLabel = 60

// label turns measured text into a one-line name: control characters and
// runs of spaces become one space, and text longer than maxLabel
// characters is cut with an ellipsis.
func label(text string) string {
	var b strings.Builder
	n := 0
	space := false
	for _, r := range text {
		if unicode.IsSpace(r) || !unicode.IsPrint(r) {
			space = true
			continue
		}
		if space && b.Len() > 0 {
			b.WriteByte(' ')
			n++
		}
		space = false
		if n >= maxLabel {
			b.WriteString("…")
			break
		}
		b.WriteRune(r)
		n++
	}
	return b.String()
}

// baseName returns the last element of a UEFI (backslash) or POSIX path.
func baseName(p string) string {
	if i := strings.LastIndexAny(p, `\/`); i >= 0 && i < len(p)-1 {
		return p[i+1:]
	}
	return p
}

// labelEvents names boot applications that have no file path: GRUB's
// linuxefi loads the kernel from a memory buffer, so firmware logs no path,
// but GRUB logged the file it read into PCR 9 just before.
func labelEvents(events []Event) {
	lastFile := ""
	for i := range events {
		e := &events[i]
		switch {
		case Classify(e) == bundle.KindGRUBFile && e.Text != "":
			lastFile = baseName(e.Text)
		case e.Type == "EV_EFI_BOOT_SERVICES_APPLICATION" && e.ImagePath == "" && lastFile != "":
			e.Label = lastFile
		}
	}
}
