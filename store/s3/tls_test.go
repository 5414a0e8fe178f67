package s3

import (
	"encoding/pem"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/seedship/seedship/store"
)

// TestCABundle checks AWS_CA_BUNDLE handling: a bundle that holds the
// server's CA makes TLS work, an absent file is ignored, a file without a
// certificate is an error, and an untrusted certificate is a permanent error
// that names the fix.
func TestCABundle(t *testing.T) {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	defer srv.Close()
	dir := t.TempDir()
	bundle := filepath.Join(dir, "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(bundle, pemBytes, 0o644); err != nil {
		t.Fatal(err)
	}
	get := func(cfg Config) error {
		tr, err := newTransport(cfg, true)
		if err != nil {
			return err
		}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr}).Get(srv.URL)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
	if err := get(Config{CABundle: bundle}); err != nil {
		t.Errorf("with the CA bundle: %v", err)
	}
	err := get(Config{CABundle: filepath.Join(dir, "absent.pem")})
	if err == nil {
		t.Fatal("without the CA: no error")
	}
	if terr := translateError("open", "s3://b", err); !errors.Is(terr, store.ErrPermanent) || !strings.Contains(terr.Error(), "AWS_CA_BUNDLE") {
		t.Errorf("untrusted certificate: %v; want a permanent error naming AWS_CA_BUNDLE", terr)
	}
	empty := filepath.Join(dir, "empty.pem")
	if err := os.WriteFile(empty, []byte("not a certificate\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := newTransport(Config{CABundle: empty}, true); err == nil {
		t.Error("a CA bundle without certificates: no error")
	}
	if _, err := newTransport(Config{CABundle: empty}, false); err != nil {
		t.Errorf("plain HTTP does not read the CA bundle, but: %v", err)
	}
}
