// Package ima parses Linux IMA runtime measurement lists, replays them into
// PCR values, verifies them against quoted PCRs round after round, and
// applies a file policy to the verified entries.
//
// Parse, ParseBinary and ParseASCII read the lists the kernel exposes
// under /sys/kernel/security/ima, and NewDecoder reads them one entry at a
// time. Every parsed value is untrusted: an
// entry is only as good as a replay that reproduces PCR values from a
// verified quote. Verify performs that replay incrementally, keeping a
// State per machine and boot, and returns the entries it verified; Policy
// then judges them against allowlists and signing keys. ReplayEntries and
// CheckBootAggregate are the building blocks for offline tools.
//
// The package uses only the standard library and package eventlog's PCR
// types; building allowlists from packages lives in ima/allowlist.
package ima
