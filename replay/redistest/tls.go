package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// TLSFiles are the PEM files of a test PKI: a CA, a certificate for
// 127.0.0.1 and localhost signed by it for the server, and one for a
// client.
type TLSFiles struct {
	CA                    string // the CA's certificate
	ServerCert, ServerKey string
	ClientCert, ClientKey string
	pool                  *x509.CertPool
	client                tls.Certificate
}

// NewTLSFiles makes a fresh CA and two certificates signed by it (P-256,
// valid for an hour) and writes them into dir.
func NewTLSFiles(t testing.TB, dir string) TLSFiles {
	t.Helper()
	write := func(name, typ string, der []byte) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	caKey := newKey()
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "redistest CA"},
		NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	f := TLSFiles{CA: write("ca.pem", "CERTIFICATE", caDER), pool: x509.NewCertPool()}
	f.pool.AddCert(ca)
	issue := func(serial int64, name string, usage x509.ExtKeyUsage) (certPath, keyPath string) {
		key := newKey()
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: now.Add(-time.Minute), NotAfter: now.Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, err := x509.MarshalPKCS8PrivateKey(key)
		if err != nil {
			t.Fatal(err)
		}
		return write(name+".pem", "CERTIFICATE", der), write(name+"-key.pem", "PRIVATE KEY", keyDER)
	}
	f.ServerCert, f.ServerKey = issue(2, "server", x509.ExtKeyUsageServerAuth)
	f.ClientCert, f.ClientKey = issue(3, "client", x509.ExtKeyUsageClientAuth)
	if f.client, err = tls.LoadX509KeyPair(f.ClientCert, f.ClientKey); err != nil {
		t.Fatal(err)
	}
	return f
}

// StartTLS starts a redis-server that listens with TLS only, on the
// certificates of a fresh NewTLSFiles, and requires a client certificate
// signed by its CA. It is stopped when the test ends.
func StartTLS(t testing.TB) (*Server, TLSFiles) {
	t.Helper()
	dir := t.TempDir()
	f := NewTLSFiles(t, dir)
	tc := &tls.Config{MinVersion: tls.VersionTLS12, RootCAs: f.pool, Certificates: []tls.Certificate{f.client}}
	s := startServer(t, &Server{dir: dir, tls: tc, args: []string{
		"--tls-cert-file", f.ServerCert, "--tls-key-file", f.ServerKey,
		"--tls-ca-cert-file", f.CA, "--tls-auth-clients", "yes"}})
	return s, f
}
