package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/vouch-attest/vouch/api"
)

// clientFlags are the connection settings of the admin commands. Each comes
// from its flag, else its environment variable, else the config file.
type clientFlags struct {
	server      string
	tokenFile   string
	fingerprint string
	caFile      string
	config      string
	output      string
	// insecureHTTP allows an http:// server URL, over which the admin
	// token travels in clear.
	insecureHTTP bool
}

// clientConfigFile is the JSON config file of the admin commands.
type clientConfigFile struct {
	Server      string `json:"server"`
	Token       string `json:"token,omitempty"`
	TokenFile   string `json:"token_file,omitempty"`
	Fingerprint string `json:"server_fingerprint,omitempty"`
	CAFile      string `json:"ca_file,omitempty"`
}

func defaultClientConfigPath() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		return ""
	}
	return filepath.Join(dir, "vouch", "client.json")
}

func (f *clientFlags) register(cmd *cobra.Command) {
	pf := cmd.PersistentFlags()
	pf.StringVar(&f.server, "server", "", "verifier URL, such as https://verifier:8443 (env VOUCH_SERVER)")
	pf.StringVar(&f.tokenFile, "token-file", "", "file holding the admin token (env VOUCH_TOKEN holds the token itself)")
	pf.StringVar(&f.fingerprint, "server-fingerprint", "", "SHA-256 fingerprint of the verifier's CA certificate, as vouch server prints it (env VOUCH_SERVER_FINGERPRINT)")
	pf.StringVar(&f.caFile, "ca", "", "PEM file of the CA that signed the verifier's certificate")
	pf.StringVar(&f.config, "config", "", "client config file (JSON: server, token_file, server_fingerprint, ca_file; default "+defaultClientConfigPath()+")")
	pf.StringVarP(&f.output, "output", "o", "table", "output format: table or json")
	pf.BoolVar(&f.insecureHTTP, "insecure-http", false, "allow an http:// server URL (a server started with --insecure-http); the admin token then travels in clear")
}

// client builds the API client from flags, environment and config file.
func (f *clientFlags) client() (*api.Client, error) {
	if f.output != "table" && f.output != "json" {
		return nil, withExitCode(exitUsage, fmt.Errorf("invalid --output %q: use table or json", f.output))
	}
	var file clientConfigFile
	path := f.config
	if path == "" {
		path = os.Getenv("VOUCH_CONFIG")
	}
	explicit := path != ""
	if path == "" {
		path = defaultClientConfigPath()
	}
	if path != "" {
		data, err := os.ReadFile(path)
		switch {
		case errors.Is(err, fs.ErrNotExist) && !explicit:
		case err != nil:
			return nil, withExitCode(exitUsage, fmt.Errorf("read client config: %w", err))
		default:
			if err := json.Unmarshal(data, &file); err != nil {
				return nil, withExitCode(exitUsage, fmt.Errorf("client config %s: %w", path, err))
			}
			if file.Token != "" {
				if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
					return nil, withExitCode(exitUsage, fmt.Errorf("client config %s contains a token but is readable by others: chmod 600 it", path))
				}
			}
		}
	}
	server := first(f.server, os.Getenv("VOUCH_SERVER"), file.Server)
	if server == "" {
		return nil, withExitCode(exitUsage, errors.New("no verifier URL: give --server or set VOUCH_SERVER"))
	}
	if err := checkServerURL(server); err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	token := os.Getenv("VOUCH_TOKEN")
	tokenFile := first(f.tokenFile, file.TokenFile)
	if f.tokenFile != "" || token == "" {
		if tokenFile != "" {
			data, err := os.ReadFile(tokenFile)
			if err != nil {
				return nil, withExitCode(exitUsage, fmt.Errorf("read admin token: %w", err))
			}
			token = strings.TrimSpace(string(data))
		} else if token == "" {
			token = file.Token
		}
	}
	if token == "" {
		return nil, withExitCode(exitUsage, errors.New("no admin token: give --token-file, set VOUCH_TOKEN, or name token_file in the config file (the server writes the token to admin-token in its data directory)"))
	}
	fingerprint := first(f.fingerprint, os.Getenv("VOUCH_SERVER_FINGERPRINT"), file.Fingerprint)
	caFile := first(f.caFile, file.CAFile)
	if err := checkPlainHTTP(server, f.insecureHTTP, fingerprint != "" || caFile != ""); err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	tlsConfig, err := api.TLSConfig(fingerprint, caFile)
	if err != nil {
		return nil, withExitCode(exitUsage, err)
	}
	return &api.Client{
		BaseURL: server,
		Token:   token,
		HTTP: &http.Client{
			Timeout:   30 * time.Second,
			Transport: &http.Transport{TLSClientConfig: tlsConfig, Proxy: http.ProxyFromEnvironment},
		},
	}, nil
}

// checkServerURL rejects a verifier URL without an http or https scheme
// and a host, such as 127.0.0.1:8443, and one with a path, query or
// fragment: the API lives at the root of the verifier's address.
func checkServerURL(server string) error {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return fmt.Errorf("invalid --server %q: use https://HOST:PORT", server)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("invalid --server %q: give https://HOST:PORT without a path, query or user", server)
	}
	return nil
}

// checkPlainHTTP rejects an http:// server URL unless insecure is set, and
// always when a certificate pin is configured, which plain HTTP would
// silently skip. The admin token must not leave the machine in clear by a
// typo or an old config file.
func checkPlainHTTP(server string, insecure, pinned bool) error {
	u, err := url.Parse(server)
	if err != nil || u.Scheme != "http" {
		return nil
	}
	if pinned {
		return fmt.Errorf("--server %q is plain HTTP, so the configured --server-fingerprint or --ca would not be checked: use https://", server)
	}
	if !insecure {
		return fmt.Errorf("--server %q is plain HTTP, so requests would travel in clear and unauthenticated: use https://, or pass --insecure-http for a server started with --insecure-http", server)
	}
	return nil
}

func first(values ...string) string {
	for _, v := range values {
		if v != "" {
			return v
		}
	}
	return ""
}

// apiExit maps an API call's error to an exit code: the server returned
// an error (usage), or it could not be reached (unavailable). It adds the
// next step for the errors a wrong --server or token causes.
func apiExit(err error) error {
	if err == nil {
		return nil
	}
	var e *api.Error
	var dns *net.DNSError
	switch {
	case errors.As(err, &e):
		if e.Code == api.CodeUnauthorized {
			err = fmt.Errorf("%w: check --token-file or VOUCH_TOKEN", err)
		}
		return withExitCode(exitUsage, err)
	case errors.Is(err, syscall.ECONNREFUSED):
		err = fmt.Errorf("%w: is vouch server running at that address? check --server", err)
	case errors.As(err, &dns):
		err = fmt.Errorf("%w: check the host name in --server", err)
	}
	return withExitCode(exitUnavailable, err)
}
