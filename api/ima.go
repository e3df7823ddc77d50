package api

// IMAReport is the IMA part of a verdict: what one round verified and
// what the file policy found.
type IMAReport struct {
	// Missing is the agent's explanation when it has no IMA list.
	Missing string `json:"missing,omitempty"`
	// Offset is the first entry the round carried; Entries the number of
	// entries verified in this boot after the round.
	Offset  int64 `json:"offset"`
	Entries int64 `json:"entries"`
	// Verified counts the entries this round verified and Pending the
	// entries after them that the quote did not cover yet.
	Verified int `json:"verified"`
	Pending  int `json:"pending"`
	// Violations counts the violation entries verified in this boot.
	Violations int `json:"violations"`
	// Restarted is set when the round started the boot's list over.
	Restarted bool `json:"restarted,omitempty"`
	// Schemes names, per bank, the extend scheme that matched.
	Schemes map[string]string `json:"schemes,omitempty"`
	// BootAggregate describes the boot_aggregate check of this round.
	BootAggregate string `json:"boot_aggregate,omitempty"`
	// Policy is "off" when no file policy is configured, else "on".
	Policy string `json:"policy"`
	// Checked, Accepted and Excluded count this round's entries that the
	// file policy judged.
	Checked  int `json:"checked,omitempty"`
	Accepted int `json:"accepted,omitempty"`
	Excluded int `json:"excluded,omitempty"`
	// Warnings are findings of warn rules: reported, not fatal.
	Warnings []Reason `json:"warnings,omitempty"`
}
