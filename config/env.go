package config

import (
	"fmt"
	"reflect"
	"strings"

	"github.com/caarlos0/env/v11"
)

// EnvPrefix starts every environment variable dpopgate reads.
const EnvPrefix = "DPOPGATE_"

// EnvConfigPath names the config file's path. The command reads it; Parse
// does not.
const EnvConfigPath = EnvPrefix + "CONFIG"

// envVar is one variable that overrides a key: an `env` tag in Config.
type envVar struct {
	name string // DPOPGATE_LISTEN
	path string // server.listen
}

// envVars are the overriding variables, found once from the env tags.
var envVars = findEnvVars(reflect.TypeFor[Config](), "")

// findEnvVars lists the env-tagged fields of t and of the structs it
// holds directly (not through lists, maps or pointers, which the
// environment does not reach).
func findEnvVars(t reflect.Type, path string) []envVar {
	var vars []envVar
	for f := range t.Fields() {
		key, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if !f.IsExported() || key == "" {
			continue
		}
		if name, _, _ := strings.Cut(f.Tag.Get("env"), ","); name != "" {
			vars = append(vars, envVar{EnvPrefix + name, child(path, key)})
		}
		if f.Type.Kind() == reflect.Struct && !reflect.PointerTo(f.Type).Implements(unmarshalerType) {
			vars = append(vars, findEnvVars(f.Type, child(path, key))...)
		}
	}
	return vars
}

// applyEnv replaces each key whose variable getenv gives a non-empty
// value, through caarlos0/env, and records the override in c.src so that
// a problem with the value names the variable.
func applyEnv(c *Config, getenv func(string) string) []*Error {
	environ := map[string]string{}
	for _, v := range envVars {
		if s := getenv(v.name); s != "" {
			environ[v.name] = s
			c.src.env[v.path] = v.name
		}
	}
	if len(environ) == 0 {
		return nil
	}
	if err := env.ParseWithOptions(c, env.Options{Prefix: EnvPrefix, Environment: environ}); err != nil {
		return []*Error{{File: c.src.name, Message: err.Error()}}
	}
	return nil
}

// resolveSecrets reads each introspection client_secret_env through
// getenv into ClientSecret. An empty variable is left for Validate to
// report; a file that writes both keys is reported here, since after
// resolution both are set by design.
func resolveSecrets(c *Config, getenv func(string) string) []problem {
	var p problems
	for i := range c.Issuers {
		in := c.Issuers[i].Introspection
		if in == nil || in.ClientSecretEnv == "" {
			continue
		}
		path := item("issuers", i) + ".introspection"
		if in.ClientSecret != "" {
			p.add(path+".client_secret_env", "cannot be used together with client_secret")
			continue
		}
		in.ClientSecret = getenv(in.ClientSecretEnv)
	}
	return p
}

// envName matches a portable environment variable name.
func envName(s string) error {
	for i, r := range s {
		if !(r == '_' || r >= 'A' && r <= 'Z' || r >= 'a' && r <= 'z' || i > 0 && r >= '0' && r <= '9') {
			return fmt.Errorf("%q is not an environment variable name", s)
		}
	}
	return nil
}
