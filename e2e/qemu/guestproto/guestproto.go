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
	// ModeExec reports like ModeProbe, then runs Config.Exec (normally
	// `vouch agent`), then powers off.
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
	// HarnessURL is the test harness's base URL. In both modes the guest
	// posts its Report to HarnessURL/probe. In exec mode it then reads its
	// Machine from HarnessURL/machine before running Exec, and puts the
	// files of StateDir to HarnessURL/state whenever they change.
	HarnessURL string `json:"harness_url,omitempty"`
	// Exec is the command run in exec mode.
	Exec []string `json:"exec,omitempty"`
	// StateDir is the directory kept across reboots in exec mode: the
	// initramfs is the guest's only disk, so the harness stores it.
	StateDir string `json:"state_dir,omitempty"`
}

// Machine is the per-machine settings that the harness sends to an
// exec-mode guest at boot. They cannot be in the initramfs, because every
// machine boots the same one.
type Machine struct {
	Hostname string `json:"hostname"`
	// Env is added to the environment of Config.Exec.
	Env []string `json:"env,omitempty"`
	// State maps file paths relative to Config.StateDir to their content.
	State map[string][]byte `json:"state,omitempty"`
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
