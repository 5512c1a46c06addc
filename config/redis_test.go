package config

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/dpopgate/dpopgate/replay/redistest"
)

func TestRedisUniversalOptions(t *testing.T) {
	const timeout = 150 * time.Millisecond
	for _, tt := range []struct {
		name  string
		in    Redis
		check func(o *redis.UniversalOptions) string
	}{
		{"ok/url", Redis{URL: "redis://user:pw@cache:6380/2"}, func(o *redis.UniversalOptions) string {
			return same("Addrs", strings.Join(o.Addrs, ","), "cache:6380") + same("Username", o.Username, "user") + same("Password", o.Password, "pw") +
				same("DB", o.DB, 2) + same("TLSConfig == nil", o.TLSConfig == nil, true) + same("IsClusterMode", o.IsClusterMode, false) + same("MasterName", o.MasterName, "")
		}},
		{"ok/url-username-key", Redis{URL: "redis://cache:6380/2", Username: "dpopgate", Password: "pw"}, func(o *redis.UniversalOptions) string {
			// Else go-redis logs in as default, which may take any
			// password, and the gateway runs with its rights.
			return same("Username", o.Username, "dpopgate") + same("Password", o.Password, "pw") + same("DB", o.DB, 2)
		}},
		{"ok/url-username-key-over-url", Redis{URL: "redis://other:x@cache:6380/2", Username: "dpopgate"}, func(o *redis.UniversalOptions) string {
			return same("Username", o.Username, "dpopgate") + same("Password", o.Password, "x")
		}},
		{"ok/url-default-port", Redis{URL: "redis://cache"}, func(o *redis.UniversalOptions) string {
			return same("Addrs", strings.Join(o.Addrs, ","), "cache:6379") + same("DB", o.DB, 0)
		}},
		{"ok/rediss-keeps-tls", Redis{URL: "rediss://default:pw@redis.example.com:6380/1"}, func(o *redis.UniversalOptions) string {
			if o.TLSConfig == nil {
				return "TLSConfig: got nil, want the URL's TLS config; "
			}
			return same("TLSConfig.ServerName", o.TLSConfig.ServerName, "redis.example.com") + same("TLSConfig.MinVersion", o.TLSConfig.MinVersion, uint16(tls.VersionTLS12)) +
				same("Username", o.Username, "default") + same("Password", o.Password, "pw") + same("DB", o.DB, 1)
		}},
		{"ok/password-field-overrides-url", Redis{URL: "redis://u:from-url@cache:6379", Password: "from-env"}, func(o *redis.UniversalOptions) string {
			return same("Username", o.Username, "u") + same("Password", o.Password, "from-env")
		}},
		{"ok/empty-password-field-keeps-url", Redis{URL: "redis://:from-url@cache:6379"}, func(o *redis.UniversalOptions) string {
			return same("Password", o.Password, "from-url")
		}},
		{"ok/url-pool-size", Redis{URL: "redis://cache?pool_size=7"}, func(o *redis.UniversalOptions) string {
			return same("PoolSize", o.PoolSize, 7)
		}},
		{"ok/pool-size-field-overrides-url", Redis{URL: "redis://cache?pool_size=7", PoolSize: 3}, func(o *redis.UniversalOptions) string {
			return same("PoolSize", o.PoolSize, 3)
		}},
		{"ok/timeout-overrides-url", Redis{URL: "redis://cache?read_timeout=9s&dial_timeout=9s&max_retries=5"}, func(o *redis.UniversalOptions) string {
			return same("ReadTimeout", o.ReadTimeout, timeout) + same("DialTimeout", o.DialTimeout, timeout) + same("MaxRetries", o.MaxRetries, -1)
		}},
		{"ok/addrs-single", Redis{Addrs: []string{"r:6379"}, Mode: RedisSingle, Username: "u", Password: "p", DB: 4, PoolSize: 5},
			func(o *redis.UniversalOptions) string {
				return same("Addrs", strings.Join(o.Addrs, ","), "r:6379") + same("Username", o.Username, "u") + same("Password", o.Password, "p") +
					same("DB", o.DB, 4) + same("PoolSize", o.PoolSize, 5) + same("IsClusterMode", o.IsClusterMode, false) + same("MasterName", o.MasterName, "")
			}},
		{"ok/addrs-cluster", Redis{Addrs: []string{"a:1", "b:2", "c:3"}, Mode: RedisCluster, Password: "p"}, func(o *redis.UniversalOptions) string {
			return same("Addrs", strings.Join(o.Addrs, ","), "a:1,b:2,c:3") + same("IsClusterMode", o.IsClusterMode, true) + same("Password", o.Password, "p")
		}},
		{"ok/addrs-sentinel", Redis{Addrs: []string{"s1:26379", "s2:26379"}, Mode: RedisSentinel, MasterName: "mymaster", DB: 1},
			func(o *redis.UniversalOptions) string {
				return same("MasterName", o.MasterName, "mymaster") + same("IsClusterMode", o.IsClusterMode, false) + same("DB", o.DB, 1) +
					same("SentinelPassword", o.SentinelPassword, "")
			}},
		{"ok/addrs-sentinel-auth", Redis{Addrs: []string{"s1:26379"}, Mode: RedisSentinel, MasterName: "m", Username: "u", Password: "p",
			SentinelUsername: "su", SentinelPassword: "sp"},
			func(o *redis.UniversalOptions) string {
				return same("Username", o.Username, "u") + same("Password", o.Password, "p") +
					same("SentinelUsername", o.SentinelUsername, "su") + same("SentinelPassword", o.SentinelPassword, "sp")
			}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Timeout = Duration(timeout)
			o, err := tt.in.UniversalOptions()
			if err != nil {
				t.Fatalf("UniversalOptions: %v", err)
			}
			got := tt.check(o) +
				same("DialTimeout", o.DialTimeout, timeout) + same("ReadTimeout", o.ReadTimeout, timeout) + same("WriteTimeout", o.WriteTimeout, timeout) +
				same("PoolTimeout", o.PoolTimeout, timeout) + same("ContextTimeoutEnabled", o.ContextTimeoutEnabled, true) + same("MaxRetries", o.MaxRetries, -1)
			if got != "" {
				t.Error(got)
			}
		})
	}
}

// TestRedisTLSOptions: redis.tls's CA replaces the system's roots, its
// certificate is presented, and addrs get TLS from tls.enabled alone.
func TestRedisTLSOptions(t *testing.T) {
	f := redistest.NewTLSFiles(t, t.TempDir())
	ca, err := os.ReadFile(f.CA)
	if err != nil {
		t.Fatal(err)
	}
	block, _ := pem.Decode(ca)
	caCert, err := x509.ParseCertificate(block.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	trusts := func(c *tls.Config) bool {
		_, err := caCert.Verify(x509.VerifyOptions{Roots: c.RootCAs})
		return c.RootCAs != nil && err == nil
	}
	for _, tt := range []struct {
		name  string
		in    Redis
		check func(c *tls.Config) string
	}{
		{"ok/rediss-with-ca-and-client-cert", Redis{URL: "rediss://redis.internal:6380", TLS: RedisTLS{CAFile: f.CA, CertFile: f.ClientCert, KeyFile: f.ClientKey}},
			func(c *tls.Config) string {
				return same("ServerName", c.ServerName, "redis.internal") + same("MinVersion", c.MinVersion, uint16(tls.VersionTLS12)) +
					same("trusts the CA", trusts(c), true) + same("a client certificate", c.GetClientCertificate != nil, true)
			}},
		{"ok/rediss-system-roots", Redis{URL: "rediss://redis.internal:6380"}, func(c *tls.Config) string {
			return same("RootCAs == nil (the system's)", c.RootCAs == nil, true) + same("a client certificate", c.GetClientCertificate != nil, false)
		}},
		{"ok/sentinel-server-name", Redis{Addrs: []string{"10.0.0.1:26379"}, Mode: RedisSentinel, MasterName: "m", TLS: RedisTLS{Enabled: true, ServerName: "redis.internal"}},
			func(c *tls.Config) string {
				return same("ServerName", c.ServerName, "redis.internal")
			}},
		{"ok/addrs-enabled", Redis{Addrs: []string{"a:1", "b:2"}, Mode: RedisCluster, TLS: RedisTLS{Enabled: true, CAFile: f.CA}}, func(c *tls.Config) string {
			// No ServerName: each node is verified for the host dialled.
			return same("ServerName", c.ServerName, "") + same("MinVersion", c.MinVersion, uint16(tls.VersionTLS12)) + same("trusts the CA", trusts(c), true)
		}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tt.in.Timeout = Duration(time.Second)
			o, err := tt.in.UniversalOptions()
			if err != nil {
				t.Fatalf("UniversalOptions: %v", err)
			}
			if o.TLSConfig == nil {
				t.Fatalf("TLSConfig: got nil, want TLS")
			}
			if got := tt.check(o.TLSConfig); got != "" {
				t.Error(got)
			}
		})
	}
	o, err := Redis{Addrs: []string{"a:1"}, Timeout: Duration(time.Second)}.UniversalOptions()
	if err != nil || o.TLSConfig != nil {
		t.Errorf("addrs without tls.enabled: got TLSConfig %v, %v, want none", o.TLSConfig, err)
	}
}

// TestRedisTLSClientCertRenewed: a client certificate renewed in place is
// the one the next connection presents.
func TestRedisTLSClientCertRenewed(t *testing.T) {
	dir := t.TempDir()
	old, renewed := redistest.NewTLSFiles(t, t.TempDir()), redistest.NewTLSFiles(t, t.TempDir())
	certFile, keyFile := filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	install := func(f redistest.TLSFiles) {
		for from, to := range map[string]string{f.ClientCert: certFile, f.ClientKey: keyFile} {
			b, err := os.ReadFile(from)
			if err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(to, b, 0o600); err != nil {
				t.Fatal(err)
			}
		}
	}
	leaf := func(f redistest.TLSFiles) []byte {
		c, err := tls.LoadX509KeyPair(f.ClientCert, f.ClientKey)
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	install(old)
	o, err := Redis{URL: "rediss://cache", Timeout: Duration(time.Second), TLS: RedisTLS{CertFile: certFile, KeyFile: keyFile}}.UniversalOptions()
	if err != nil {
		t.Fatal(err)
	}
	presented := func() []byte {
		c, err := o.TLSConfig.GetClientCertificate(&tls.CertificateRequestInfo{})
		if err != nil {
			t.Fatal(err)
		}
		return c.Certificate[0]
	}
	if !bytes.Equal(presented(), leaf(old)) {
		t.Fatalf("before the renewal: another certificate than the one installed")
	}
	install(renewed)
	if !bytes.Equal(presented(), leaf(renewed)) {
		t.Errorf("after the renewal: the old certificate, want the renewed one")
	}
}

func TestRedisUniversalOptionsErrors(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   Redis
		want string
	}{
		{"fail/neither-url-nor-addrs", Redis{Timeout: Duration(time.Second)}, "neither url nor addrs"},
		{"fail/bad-url-password-not-shown", Redis{URL: "redis://:hunter2@cache:6379/x", Timeout: Duration(time.Second)}, "invalid database number"},
		{"fail/no-timeout", Redis{URL: "redis://cache"}, "redis.timeout"},
		{"fail/ca-file-not-pem", Redis{URL: "rediss://cache", Timeout: Duration(time.Second), TLS: RedisTLS{CAFile: "redis_test.go"}}, "redis.tls.ca_file: \"redis_test.go\" holds no PEM certificate"},
		{"fail/client-cert-missing", Redis{URL: "rediss://cache", Timeout: Duration(time.Second), TLS: RedisTLS{CertFile: "nope.pem", KeyFile: "nope-key.pem"}}, "redis.tls.cert_file, key_file: open nope.pem"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := tt.in.UniversalOptions()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
			if strings.Contains(err.Error(), "hunter2") {
				t.Errorf("the error shows the password: %v", err)
			}
		})
	}
}

// TestRedisClientKind: the options from a parsed file make the client the
// mode names (no connection is made).
func TestRedisClientKind(t *testing.T) {
	for _, tt := range []struct {
		name, yaml string
		want       string
	}{
		{"ok/url", "replay: {backend: redis}\nredis: {url: \"redis://cache:6379/0\"}\n", "*redis.Client"},
		{"ok/one-cluster-seed", "replay: {backend: redis}\nredis: {addrs: [\"cfg.example.com:6379\"], mode: cluster}\n", "*redis.ClusterClient"},
		{"ok/sentinel", "replay: {backend: redis}\nredis: {addrs: [\"s1:26379\", \"s2:26379\"], mode: sentinel, master_name: m}\n", "*redis.Client"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Parse("t.yaml", []byte(tt.yaml), func(string) string { return "" })
			if err != nil {
				t.Fatal(err)
			}
			o, err := c.Redis.UniversalOptions()
			if err != nil {
				t.Fatal(err)
			}
			client := redis.NewUniversalClient(o)
			defer client.Close()
			if got := typeName(client); got != tt.want {
				t.Errorf("client: got %s, want %s", got, tt.want)
			}
		})
	}
}

func typeName(v any) string {
	switch v.(type) {
	case *redis.Client:
		return "*redis.Client"
	case *redis.ClusterClient:
		return "*redis.ClusterClient"
	default:
		return "other"
	}
}

// same reports got != want for the field named what, in the style of expect.
func same[T comparable](what string, got, want T) string {
	if got != want {
		return fmt.Sprintf("%s: got %v, want %v; ", what, got, want)
	}
	return ""
}
