// Package attest verifies TPM 2.0 evidence without a TPM. It parses and
// checks quotes (TPMS_ATTEST and TPMT_SIGNATURE) and checks attestation key
// public areas. It creates credential-activation challenges for an
// endorsement key in software, and validates endorsement key certificates
// against explicitly configured vendor roots.
//
// The package never opens a TPM device: the verifier imports only this
// package, and a test asserts that it does not depend on the device side
// (package tpm) or any TPM transport.
//
// Values an attacker controls (the quote bytes, the PCR values an agent
// reports, an EK certificate) are untrusted until a function of this package
// has checked them. Only [VerifyQuote] produces PCR values marked verified,
// and only for the PCRs that the signed quote covers.
package attest
