package config

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// UniversalOptions turns the redis section into options for
// redis.NewUniversalClient: one server, a Redis Cluster or a Sentinel-managed
// primary, as configured. r must have passed Validate.
//
//   - url: parsed by redis.ParseURL, so rediss:// keeps its TLS config
//     (server name from the URL, TLS 1.2 at least), and the URL's user,
//     password, db and pool query parameters apply; a non-empty username
//     key replaces the URL's user, and a non-empty password key (or
//     DPOPGATE_REDIS_PASSWORD) the URL's password.
//   - addrs: mode cluster sets IsClusterMode (so even one seed address is
//     a cluster), mode sentinel sets MasterName and the Sentinels' own
//     sentinel_username and sentinel_password; username, password and db
//     apply (to the servers, not to the Sentinels).
//   - tls: on with a rediss:// url or tls.enabled, at TLS 1.2 or later,
//     verifying the server's certificate for the host dialled (or
//     server_name) against ca_file if set (else the system's roots), and
//     presenting cert_file/key_file if set, read again for each new
//     connection. With Sentinel, the Sentinels and the
//     primary are all dialled with it.
//
// The request path waits on Redis for at most timeout per call, so timeout
// becomes the dial, read, write and pool-wait timeouts (overriding any in
// the URL), contexts' deadlines are honoured, and nothing is retried: a
// dead Redis fails in one timeout, not several, and a claim or a token
// taken by a command whose reply was lost is never taken twice. pool_size,
// when set, overrides the URL's and the library's default (10 per CPU).
//
// The returned options hold the password; never log them.
func (r Redis) UniversalOptions() (*redis.UniversalOptions, error) {
	o := &redis.UniversalOptions{}
	switch {
	case r.URL != "":
		u, err := redis.ParseURL(r.URL)
		if err != nil {
			// ParseURL's errors do not quote the URL, but say where it came from.
			return nil, errors.New("redis.url " + shownURL(r.URL) + ": " + err.Error())
		}
		o.Addrs = []string{u.Addr}
		o.ClientName = u.ClientName
		o.Protocol = u.Protocol
		o.Username, o.Password = u.Username, u.Password
		o.DB = u.DB
		o.TLSConfig = u.TLSConfig
		o.PoolFIFO = u.PoolFIFO
		o.PoolSize = u.PoolSize
		o.MinIdleConns, o.MaxIdleConns, o.MaxActiveConns = u.MinIdleConns, u.MaxIdleConns, u.MaxActiveConns
		o.ConnMaxIdleTime, o.ConnMaxLifetime = u.ConnMaxIdleTime, u.ConnMaxLifetime
		if r.Username != "" {
			o.Username = r.Username
		}
		if r.Password != "" {
			o.Password = r.Password
		}
	case len(r.Addrs) > 0:
		o.Addrs = append([]string(nil), r.Addrs...)
		o.Username, o.Password = r.Username, r.Password
		o.DB = r.DB
		switch r.Mode {
		case RedisCluster:
			o.IsClusterMode = true
		case RedisSentinel:
			o.MasterName = r.MasterName
			o.SentinelUsername, o.SentinelPassword = r.SentinelUsername, r.SentinelPassword
		}
	default:
		return nil, errors.New("redis: neither url nor addrs is set")
	}
	if r.tlsOn() {
		var err error
		if o.TLSConfig, err = r.TLS.config(o.TLSConfig); err != nil {
			return nil, err
		}
	}
	if r.PoolSize > 0 {
		o.PoolSize = r.PoolSize
	}
	t := time.Duration(r.Timeout)
	if t <= 0 {
		return nil, errors.New("redis.timeout: must be positive")
	}
	o.DialTimeout, o.ReadTimeout, o.WriteTimeout, o.PoolTimeout = t, t, t, t
	o.ContextTimeoutEnabled = true
	o.MaxRetries = -1 // -1 is none: 0 means the library's default of 3
	// A Cluster client still tries a call again after some failures, up to
	// MaxRedirects times, which it needs to follow MOVED and ASK; it would
	// sleep between tries (10ms and more, doubling), not heeding the
	// deadline of a call whose time is up, so no sleep: a try after the
	// deadline fails at once.
	o.MinRetryBackoff = -1
	// One dial per attempt. After pool_size failed dials in a row the pool
	// fails calls at once and probes the server once a second by itself.
	o.DialerRetries = 1
	return o, nil
}

// tlsOn reports whether the connections to Redis use TLS.
func (r Redis) tlsOn() bool {
	return r.TLS.Enabled || strings.HasPrefix(r.URL, "rediss://")
}

// config is base (the url's TLS config, or nil for addrs) with the CAs and
// the client certificate of t.
func (t RedisTLS) config(base *tls.Config) (*tls.Config, error) {
	c := &tls.Config{MinVersion: tls.VersionTLS12}
	if base != nil {
		c = base.Clone()
	}
	if t.CAFile != "" {
		pool, err := caPool(t.CAFile)
		if err != nil {
			return nil, fmt.Errorf("redis.tls.ca_file: %w", err)
		}
		c.RootCAs = pool
	}
	if t.ServerName != "" {
		c.ServerName = t.ServerName
	}
	if t.CertFile != "" || t.KeyFile != "" {
		if _, err := tls.LoadX509KeyPair(t.CertFile, t.KeyFile); err != nil {
			return nil, fmt.Errorf("redis.tls.cert_file, key_file: %w", err)
		}
		// Read at each new connection, so that a certificate renewed in
		// place (a mounted Secret) is used without a restart; connections
		// are pooled, so that is seldom.
		certFile, keyFile := t.CertFile, t.KeyFile
		c.GetClientCertificate = func(*tls.CertificateRequestInfo) (*tls.Certificate, error) {
			cert, err := tls.LoadX509KeyPair(certFile, keyFile)
			if err != nil {
				return nil, fmt.Errorf("redis.tls.cert_file, key_file: %w", err)
			}
			return &cert, nil
		}
	}
	return c, nil
}

// caPool reads the PEM certificates of file into a pool.
func caPool(file string) (*x509.CertPool, error) {
	pem, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, fmt.Errorf("%q holds no PEM certificate", file)
	}
	return pool, nil
}
