// Package guestproto holds what the end-to-end test guest and the host
// harness share: the guest's configuration file and its probe report.
package guestproto

// ConsolePrefix starts every line the guest init prints on the serial
// console, so that the host can pick them out of the kernel's messages.
const ConsolePrefix = "vouch-guest: "

// Modes of the guest init.
const (
	// ModeProbe reports the event log, PCRs and TPM clock, then powers off.
	ModeProbe = "probe"
	// ModeExec runs Config.Exec (normally `vouch agent`), then powers off.
	ModeExec = "exec"
)

// Config is /etc/vouch-guest.json in the initramfs.
type Config struct {
	Mode string `json:"mode"`
	// Modules are kernel modules loaded in this order, by path.
	Modules []string `json:"modules,omitempty"`
	// Interface gets Address (IPv4 CIDR) and is brought up.
	Interface string `json:"interface,omitempty"`
	Address   string `json:"address,omitempty"`
	// ProbeURL receives the Report as JSON in probe mode.
	ProbeURL string `json:"probe_url,omitempty"`
	// Exec is the command run in exec mode, with Env added to its
	// environment.
	Exec []string `json:"exec,omitempty"`
	Env  []string `json:"env,omitempty"`
}

// Report is what a probe-mode guest observed. Every field comes from an
// unverified guest: tests compare it with what they expect, nothing more.
type Report struct {
	// EventLog is binary_bios_measurements, or empty with EventLogError
	// saying why it could not be read.
	EventLog      []byte `json:"event_log,omitempty"`
	EventLogError string `json:"event_log_error,omitempty"`
	// PCRs maps a bank name ("sha1", "sha256") to PCR index to hex value,
	// read with TPM2_PCRRead.
	PCRs         map[string]map[int]string `json:"pcrs,omitempty"`
	ResetCount   uint32                    `json:"reset_count"`
	RestartCount uint32                    `json:"restart_count"`
	TPMError     string                    `json:"tpm_error,omitempty"`
	// SecureBoot is "on", "off" or "unknown", from the SecureBoot EFI
	// variable.
	SecureBoot  string  `json:"secure_boot"`
	CmdLine     string  `json:"cmdline"`
	InitSeconds float64 `json:"init_seconds"`
}
