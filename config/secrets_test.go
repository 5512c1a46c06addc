package config

import (
	"strings"
	"testing"
)

// TestProblemsNeverQuoteASecret: a config written slightly wrong must be
// refused without its secrets in the message (check-config and serve print
// it on stderr, a reload logs it): a Redis password, the nonce secret, an
// introspection client secret.
func TestProblemsNeverQuoteASecret(t *testing.T) {
	const secret = "1234/Hunter2-Hunter2"
	const word = "Hunter2-Hunter2"
	for _, tc := range []struct {
		name, in string
		env      map[string]string
	}{
		// A password with '/', '?' or '#' not percent-encoded: the URL
		// parses, but the password lands in the host, path or query.
		{name: "fail/redis-url-password-slash", in: "replay: {backend: redis}\nredis:\n  url: redis://:" + secret + "@redis:6379\n"},
		{name: "fail/redis-url-user-password-slash", in: "replay: {backend: redis}\nredis:\n  url: redis://default:6379/" + word + "@redis:6379/0\n"},
		{name: "fail/redis-url-password-question-mark", in: "replay: {backend: redis}\nredis:\n  url: redis://:1234?" + word + "@redis:6379\n"},
		{name: "fail/redis-url-env", in: "replay: {backend: redis}\n", env: map[string]string{"DPOPGATE_REDIS_URL": "redis://:" + secret + "@redis:6379"}},
		// A password that lost its colon: the URL names it as the user.
		{name: "fail/redis-url-password-as-user", in: "replay: {backend: redis}\nredis:\n  url: redis://" + word + "@redis:6379/0\n"},
		// A URL in addrs, which takes host:port.
		{name: "fail/redis-url-in-addrs", in: "replay: {backend: redis}\nredis:\n  addrs: [\"redis://:" + word + "@redis:6379\"]\n"},
		// A value one level too high.
		{name: "fail/redis-url-for-redis", in: "replay: {backend: redis}\nredis: redis://:" + word + "@redis:6379\n"},
		{name: "fail/secret-for-nonce", in: "dpop:\n  nonce: " + word + word + word + "\n"},
		{name: "fail/secret-for-introspection", in: "issuers:\n  - issuer: https://a.example\n    audiences: [x]\n    introspection: " + word + "\n"},
		// The secret itself where the name of its variable belongs.
		{name: "fail/secret-for-client-secret-env", in: "issuers:\n  - issuer: https://a.example\n    audiences: [x]\n    introspection: {client_id: g, client_secret_env: \"" + secret + "\"}\n"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse("t.yaml", []byte(tc.in), func(k string) string { return tc.env[k] })
			if err == nil {
				t.Fatal("accepted")
			}
			if msg := err.Error(); strings.Contains(msg, word) || strings.Contains(msg, strings.ToLower(word)) {
				t.Errorf("the problem quotes the secret:\n%s", msg)
			}
		})
	}
}
