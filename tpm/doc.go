// Package tpm sends the agent's commands to a TPM 2.0. It opens a
// transport (the Linux resource manager, a swtpm socket or the in-process
// reference simulator) and reads endorsement key certificates. It creates
// the endorsement and attestation keys, quotes, reads and extends PCRs,
// activates credentials and seals secrets to PCR policies.
//
// Every transient object and session the package creates is flushed before
// the function that created it returns, on every path, so a caller never
// has to track TPM handles. Key material leaves the TPM only as the blobs
// the TPM wraps with its own keys.
package tpm
