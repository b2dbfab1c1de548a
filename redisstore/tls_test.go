package redisstore_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/pimguard/pimguard/cache"
	"github.com/pimguard/pimguard/internal/redistest"
	"github.com/pimguard/pimguard/redisstore"
)

// testCA makes a CA and a server certificate for 127.0.0.1 signed by it,
// writes the server's certificate and key as PEM files in dir, and returns
// their paths and a pool holding the CA.
func testCA(t *testing.T, dir string) (certFile, keyFile string, roots *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "pimguard test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "server.crt"), filepath.Join(dir, "server.key")
	if err := os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o600); err != nil {
		t.Fatal(err)
	}
	roots = x509.NewCertPool()
	roots.AddCert(ca)
	return certFile, keyFile, roots
}

func TestTLS(t *testing.T) {
	certFile, keyFile, roots := testCA(t, t.TempDir())
	srv := redistest.StartTLS(t, certFile, keyFile)
	ctx := context.Background()
	load := func(context.Context) (cache.SharedEntry, error) {
		return cache.SharedEntry{Data: []byte("v"), Expires: time.Now().Add(time.Minute)}, nil
	}
	waitFor := func(s *redisstore.Store, want bool) bool {
		deadline := time.Now().Add(2 * time.Second)
		for s.Connected() != want && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		return s.Connected() == want
	}

	t.Run("verified by the configured roots", func(t *testing.T) {
		opts, err := redis.ParseURL(srv.URL())
		if err != nil {
			t.Fatal(err)
		}
		opts.TLSConfig.RootCAs = roots
		client := redis.NewClient(opts)
		defer client.Close()
		s, err := redisstore.New(redisstore.Config{Client: client, Key: testKey, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !waitFor(s, true) {
			t.Fatal("not connected over TLS")
		}
		if _, filled, err := s.Fetch(ctx, "k", load); err != nil || !filled {
			t.Fatalf("first Fetch: filled %v, err %v", filled, err)
		}
		if _, filled, err := s.Fetch(ctx, "k", load); err != nil || filled {
			t.Fatalf("second Fetch: filled %v, err %v; want the entry the first stored over TLS", filled, err)
		}
	})

	t.Run("rediss URL refuses an unknown CA", func(t *testing.T) {
		s, err := redisstore.New(redisstore.Config{URL: srv.URL(), Key: testKey, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		time.Sleep(200 * time.Millisecond)
		if s.Connected() {
			t.Fatal("connected to a server whose certificate no system root vouches for")
		}
		if _, filled, err := s.Fetch(ctx, "k2", load); err != nil || !filled {
			t.Fatalf("Fetch without Redis: filled %v, err %v; want a local load", filled, err)
		}
	})

	t.Run("plain redis to a TLS port fails closed to local", func(t *testing.T) {
		s, err := redisstore.New(redisstore.Config{URL: "redis://" + srv.Addr() + "/0", Key: testKey, Logger: quiet()})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		time.Sleep(200 * time.Millisecond)
		if s.Connected() {
			t.Fatal("a plaintext client reports a TLS-only server connected")
		}
	})
}
