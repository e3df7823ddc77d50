package tpm

import (
	"crypto/rand"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/vouch-attest/vouch/attest"
)

// provisionSwtpm runs swtpm_setup on the state directory so the TPM holds
// EK certificates, as a manufactured TPM does. The local CA lives in a
// temporary directory, not in swtpm's system-wide /var/lib/swtpm-localca.
// It returns the CA's root and issuer certificate paths.
func provisionSwtpm(t *testing.T, stateDir string) (root, issuer string) {
	t.Helper()
	if _, err := exec.LookPath("swtpm_setup"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("swtpm_setup is not installed, and CI must run the swtpm tests: install Debian's swtpm-tools package")
		}
		t.Skip("swtpm_setup is not installed: apt-get install swtpm-tools to run this test")
	}
	dir := t.TempDir()
	caDir := filepath.Join(dir, "ca")
	if err := os.Mkdir(caDir, 0o700); err != nil {
		t.Fatal(err)
	}
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caConf := write("swtpm-localca.conf", "statedir = "+caDir+"\n"+
		"signingkey = "+filepath.Join(caDir, "signkey.pem")+"\n"+
		"issuercert = "+filepath.Join(caDir, "issuercert.pem")+"\n"+
		"certserial = "+filepath.Join(caDir, "certserial")+"\n")
	caOpts := write("swtpm-localca.options", "--platform-manufacturer vouch\n--platform-version 1\n--platform-model test\n")
	setupConf := write("swtpm_setup.conf", "create_certs_tool = /usr/bin/swtpm_localca\n"+
		"create_certs_tool_config = "+caConf+"\n"+
		"create_certs_tool_options = "+caOpts+"\n")
	cmd := exec.Command("swtpm_setup", "--tpm2", "--tpmstate", stateDir, "--config", setupConf,
		"--create-ek-cert", "--pcr-banks", "sha1,sha256", "--overwrite")
	cmd.Env = append(os.Environ(), "XDG_CONFIG_HOME="+dir, "HOME="+dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("swtpm_setup: %v\n%s", err, out)
	}
	return filepath.Join(caDir, "swtpm-localca-rootca-cert.pem"), filepath.Join(caDir, "issuercert.pem")
}

// TestSwtpmEKCertificate reads the EK certificates a provisioned swtpm
// stores in NV, checks them against the local CA, and activates a
// credential made from the certificate's key alone, as a verifier that
// has only the certificate does.
func TestSwtpmEKCertificate(t *testing.T) {
	if _, err := exec.LookPath("swtpm"); err != nil && os.Getenv("CI") != "true" {
		t.Skip("swtpm is not installed: apt-get install swtpm swtpm-tools to run this test")
	}
	dir := t.TempDir()
	p := &swtpmProcess{t: t, stateDir: filepath.Join(dir, "state"), sock: filepath.Join(dir, "tpm.sock")}
	if err := os.Mkdir(p.stateDir, 0o700); err != nil {
		t.Fatal(err)
	}
	rootPath, issuerPath := provisionSwtpm(t, p.stateDir)
	p.start()
	t.Cleanup(p.stop)
	tp := p.open()
	defer closeChecked(t, tp)

	ek, err := tp.EK(RSA)
	if err != nil {
		t.Fatalf("EK(rsa): %v", err)
	}
	if ek.Certificate == nil || ek.CertificateIndex != nvRSAEKCert {
		t.Fatalf("no RSA EK certificate read from NV 0x%08x", nvRSAEKCert)
	}
	certs, err := tp.EKCertificates()
	if err != nil {
		t.Fatalf("EKCertificates: %v", err)
	}
	if _, ok := certs[0x01c00016]; !ok {
		t.Errorf("EKCertificates lacks the ECC P-384 certificate at 0x01c00016: got indexes %v", keys(certs))
	}

	roots, err := attest.LoadCertificates(rootPath)
	if err != nil {
		t.Fatal(err)
	}
	inter, err := attest.LoadCertificates(issuerPath)
	if err != nil {
		t.Fatal(err)
	}
	c, err := attest.VerifyEKCertificate(ek.Certificate, ek.Key, attest.EKCertificateOptions{
		Roots: roots, Intermediates: inter, CurrentTime: time.Now(),
	})
	if err != nil {
		t.Fatalf("VerifyEKCertificate: %v", err)
	}
	if c.Manufacturer != "id:00001014" {
		t.Errorf("manufacturer %q, want id:00001014 (IBM, swtpm)", c.Manufacturer)
	}

	// The verifier rebuilds the EK public area from the certificate.
	ekPub, err := attest.EKPublicFromKey(c.PublicKey)
	if err != nil {
		t.Fatalf("EKPublicFromKey: %v", err)
	}
	ak, err := tp.CreateAK(AKOptions{Type: ECC, Parent: RSA})
	if err != nil {
		t.Fatal(err)
	}
	akPub, err := attest.ParseAKPublic(ak.Public)
	if err != nil {
		t.Fatal(err)
	}
	act, err := attest.NewActivation(rand.Reader, ekPub, akPub)
	if err != nil {
		t.Fatal(err)
	}
	secret, err := tp.ActivateCredential(ak, act.CredentialBlob, act.EncryptedSecret)
	if err != nil {
		t.Fatalf("ActivateCredential: %v", err)
	}
	if err := act.Check(secret); err != nil {
		t.Fatal(err)
	}
}

func keys(m map[uint32][]byte) []uint32 {
	var out []uint32
	for k := range m {
		out = append(out, k)
	}
	return out
}
