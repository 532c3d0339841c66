package reliability

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/spool-agent/spool-agent/internal/testkit"
	"github.com/spool-agent/spool-agent/spool"
)

// selfSigned writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files in dir and returns their paths and the certificate.
func selfSigned(t *testing.T, dir string) (certFile, keyFile string, cert *x509.Certificate) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "spool-agent test"},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err = x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile, cert
}

// TestTLSAndBasicAuth runs the agent with an exporter-toolkit web
// configuration file (TLS with a self-signed certificate made here, basic
// auth with a bcrypt hash) and checks that /metrics is served only over
// TLS 1.2+, only to the right user and password.
func TestTLSAndBasicAuth(t *testing.T) {
	base := t.TempDir()
	dir := filepath.Join(base, "spool")
	goodSpool(t, dir)
	certFile, keyFile, cert := selfSigned(t, base)
	const user, pass = "prometheus", "correct horse battery staple"
	hash, err := bcrypt.GenerateFromPassword([]byte(pass), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	webCfg := filepath.Join(base, "web.yml")
	os.WriteFile(webCfg, []byte("tls_server_config:\n  cert_file: "+certFile+"\n  key_file: "+keyFile+
		"\nbasic_auth_users:\n  "+user+": "+string(hash)+"\n"), 0o600)
	ag := newAgent(t, map[string]string{"s": dir}, "--web.config.file="+webCfg)
	ag.scheme, ag.user, ag.pass = "https", user, pass
	ag.startAndWait(t)

	pool := x509.NewCertPool()
	pool.AddCert(cert)
	get := func(cfg *tls.Config, scheme, user, pass string) (*http.Response, error) {
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
		req, _ := http.NewRequest(http.MethodGet, scheme+"://"+ag.addr+"/metrics", nil)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := c.Do(req)
		if err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
		}
		return resp, err
	}
	verified := &tls.Config{RootCAs: pool}

	// The right user and password over verified TLS: served.
	resp, err := get(verified, "https", user, pass)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("right credentials: %v %v", resp, err)
	}
	if resp.TLS == nil || resp.TLS.Version < tls.VersionTLS12 {
		t.Fatalf("not TLS 1.2+: %+v", resp.TLS)
	}
	m, err := ag.scrape()
	if err != nil {
		t.Fatal(err)
	}
	m.must(t, "spool_up", "spool", "s")
	// No, wrong or partial credentials: 401 with a challenge.
	for _, c := range []struct{ name, user, pass string }{
		{"none", "", ""}, {"wrong password", user, "wrong"}, {"wrong user", "root", pass},
		{"empty password", user, ""}, {"password as user", pass, user},
	} {
		resp, err := get(verified, "https", c.user, c.pass)
		if err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		if resp.StatusCode != http.StatusUnauthorized || !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
			t.Errorf("%s: status %d, WWW-Authenticate %q; want 401 with a Basic challenge", c.name, resp.StatusCode, resp.Header.Get("WWW-Authenticate"))
		}
	}
	// Plain HTTP to the TLS port: refused.
	if resp, err := get(nil, "http", user, pass); err == nil && resp.StatusCode == http.StatusOK {
		t.Error("plain HTTP was served")
	} else if err == nil {
		t.Logf("plain HTTP: %d", resp.StatusCode)
	}
	// A client that does not trust the certificate fails the handshake:
	// the endpoint really is TLS with this certificate.
	if _, err := get(&tls.Config{}, "https", user, pass); err == nil || !strings.Contains(err.Error(), "certificate") {
		t.Errorf("untrusted certificate: %v", err)
	}
	// TLS 1.1 and older are refused.
	if _, err := get(&tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS11}, "https", user, pass); err == nil {
		t.Error("a TLS 1.1 client was served")
	}
	// Other paths need the credentials too.
	if resp, err := get(verified, "https", "", ""); err == nil && resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("unauthenticated request: %d", resp.StatusCode)
	}
	// A short load through TLS and auth, from the load generator.
	needBinary(t, &bin.loadgen)
	out, errOut, code := runCmd(t, 30*time.Second, nil, nil, bin.loadgen, "-url", "https://"+ag.addr+"/metrics",
		"-duration", "2s", "-concurrency", "2", "-insecure", "-user", user, "-pass", pass, "-expect", "spool_up")
	if code != 0 {
		t.Fatalf("loadgen over TLS with auth: exit %d: %s %s", code, out, errOut)
	}
	t.Logf("loadgen over TLS and basic auth: %s", strings.TrimSpace(out))
	ag.signal(syscall.SIGTERM)
}

// otlpSink is an OTLP/HTTP receiver that keeps every request body
// (decompressed), so that a test can grep what the agent exports.
type otlpSink struct {
	srv    *httptest.Server
	mu     sync.Mutex
	bodies [][]byte
}

func newOTLPSink(t *testing.T) *otlpSink {
	s := &otlpSink{}
	s.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var rd io.Reader = r.Body
		if r.Header.Get("Content-Encoding") == "gzip" {
			if z, err := gzip.NewReader(r.Body); err == nil {
				rd = z
			}
		}
		b, _ := io.ReadAll(rd)
		s.mu.Lock()
		s.bodies = append(s.bodies, b)
		s.mu.Unlock()
		w.Header().Set("Content-Type", "application/x-protobuf")
		w.WriteHeader(http.StatusOK)
	}))
	t.Cleanup(s.srv.Close)
	return s
}

func (s *otlpSink) all() ([]byte, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return bytes.Join(s.bodies, []byte{'\n'}), len(s.bodies)
}

// TestPayloadNeverLogged puts an entry with a unique marker in its payload
// (and another in its metadata) into a spool, makes it a problem (a stuck
// checkout, so that the agent logs events about it), runs the agent with
// debug logs and every operator subcommand on it, and checks that the
// payload marker appears in no output, log, scrape or OTLP export, and the
// metadata marker only where showing metadata is the command's job (show).
func TestPayloadNeverLogged(t *testing.T) {
	needBinary(t, &bin.agent)
	base := t.TempDir()
	dir := filepath.Join(base, "spool")
	s, _ := goodSpool(t, dir)
	payloadMarker := "PAYLOAD-MARKER-" + randomHex(t)
	metaMarker := "METADATA-MARKER-" + randomHex(t)
	name, err := s.EnqueueBytes(context.Background(), "in", []byte("subject: "+metaMarker), []byte("secret body "+payloadMarker), spool.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A second entry, checked out by a "crashed" worker long ago.
	stuck, err := s.EnqueueBytes(context.Background(), "in", []byte(metaMarker+" stuck"), []byte(payloadMarker+" stuck"), spool.EnqueueOptions{})
	if err != nil {
		t.Fatal(err)
	}
	co := filepath.Join(dir, "in", spool.CheckoutDir, stuck)
	os.Rename(filepath.Join(dir, "in", stuck), co)
	old := time.Now().Add(-time.Hour)
	os.Chtimes(co, old, old)
	// A stray payload (orphaned) and a stray temporary file carry it too.
	os.WriteFile(filepath.Join(dir, spool.DataDir, "stray"), []byte(payloadMarker+" stray"), 0o644)
	os.WriteFile(filepath.Join(dir, spool.TmpDir, "stray.tmp"), []byte(payloadMarker+" tmp"), 0o644)
	os.Chtimes(filepath.Join(dir, spool.TmpDir, "stray.tmp"), old, old)

	sink := newOTLPSink(t)
	ag := newAgent(t, map[string]string{"secret": dir}, "--log.level=debug", "--alert-after-cycles=0", "--max-checked-out-age=1m")
	ag.env = []string{
		"OTEL_EXPORTER_OTLP_ENDPOINT=" + sink.srv.URL, "OTEL_EXPORTER_OTLP_PROTOCOL=http/protobuf",
		"OTEL_METRIC_EXPORT_INTERVAL=200", "OTEL_BLRP_SCHEDULE_DELAY=100",
	}
	ag.startAndWait(t)
	m := ag.waitMetric(t, 10*time.Second, "the stuck checkout alerting", func(m metrics) bool {
		v, _ := m.value("spool_problems", "spool", "secret", "kind", "too_old")
		return v >= 1
	})
	_, scrape, _ := ag.get(http.MethodGet, "/metrics")
	_ = m
	_, exported := sink.all()
	testkit.WaitFor(t, 10*time.Second, "two more OTLP exports", func() bool {
		_, n := sink.all()
		return n >= exported+2
	})

	type output struct{ what, text string }
	outs := []output{{"scrape", scrape}}
	run := func(args ...string) {
		o, e, _ := runCmd(t, 30*time.Second, nil, []string{"SPOOL_AGENT_LOG_LEVEL=debug"}, append([]string{bin.agent}, args...)...)
		outs = append(outs, output{strings.Join(args, " "), o + e})
	}
	run("ls", dir, "--all")
	run("ls", dir, "--all", "-o", "json")
	run("fsck", dir)
	run("fsck", dir, "-o", "json")
	run("shape", dir)
	run("shape", dir, "-o", "json")
	run("recover", dir, "--older-than", "1m")
	run("mv", dir, name, "--to", "out")
	run("rm", dir, stuck)
	var showOuts []output
	for _, args := range [][]string{{"show", dir, name}, {"show", dir, name, "-o", "json"}} {
		o, e, code := runCmd(t, 30*time.Second, nil, nil, append([]string{bin.agent}, args...)...)
		if code != 0 {
			t.Errorf("show: exit %d: %s", code, e)
		}
		showOuts = append(showOuts, output{strings.Join(args, " "), o + e})
	}
	ag.waitMetric(t, 10*time.Second, "the agent to see the changes", func(m metrics) bool {
		v, _ := m.value("spool_queue_entries", "spool", "secret", "queue", "out")
		return v == 1
	})
	ag.signal(syscall.SIGTERM)
	outs = append(outs, output{"agent log (debug)", ag.output()})
	otlp, n := sink.all()
	outs = append(outs, output{"OTLP export", string(otlp)})

	for _, o := range outs {
		if strings.Contains(o.text, payloadMarker) {
			t.Errorf("the payload marker appears in %s:\n%s", o.what, o.text)
		}
		if strings.Contains(o.text, metaMarker) {
			t.Errorf("the metadata marker appears in %s:\n%s", o.what, o.text)
		}
	}
	for _, o := range showOuts {
		if strings.Contains(o.text, payloadMarker) {
			t.Errorf("the payload marker appears in %s:\n%s", o.what, o.text)
		}
		if !strings.Contains(o.text, metaMarker) && !strings.Contains(o.text, "subject: ") {
			t.Errorf("%s does not show the metadata: %s", o.what, o.text)
		}
	}
	if !strings.Contains(ag.output(), "level=DEBUG") && !strings.Contains(ag.output(), `"level":"DEBUG"`) {
		t.Errorf("the agent wrote no debug log line: the test would prove little")
	}
	t.Logf("checked %d outputs (%d bytes of agent log, %d OTLP requests) for the payload marker", len(outs)+len(showOuts), len(ag.output()), n)
}

// randomHex returns 16 random hex digits.
func randomHex(t *testing.T) string {
	t.Helper()
	b := make([]byte, 8)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	const hexd = "0123456789abcdef"
	out := make([]byte, 16)
	for i, c := range b {
		out[2*i], out[2*i+1] = hexd[c>>4], hexd[c&15]
	}
	return string(out)
}
