package deploy

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/dpopgate/dpopgate/config"
)

// deploymentEnv is the environment a deployment gives dpopgate: the keys of
// kubernetes/shared/secret.yaml, with values of the right shape.
var deploymentEnv = map[string]string{
	"DPOPGATE_DPOP_NONCE_SECRET": "0123456789abcdef0123456789abcdef-placeholder",
	"DPOPGATE_REDIS_PASSWORD":    "placeholder",
}

// TestExampleConfigs checks every file in examples/ as
// "dpopgate check-config --config FILE" does (config.Load), with the
// secrets a deployment provides in the environment.
func TestExampleConfigs(t *testing.T) {
	files, err := filepath.Glob("examples/*.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"quickstart.yaml", "shared-redis.yaml", "forward-auth.yaml", "sidecar.yaml"} {
		if !slices.Contains(files, "examples/"+want) {
			t.Errorf("examples/%s is missing", want)
		}
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			cfg, err := config.Load(f, func(k string) string { return deploymentEnv[k] })
			if err != nil {
				t.Fatalf("dpopgate check-config --config %s:\n%v", f, err)
			}
			if filepath.Base(f) == "quickstart.yaml" && (cfg.Replay.Backend != config.BackendMemory || cfg.RateLimits.Backend != config.BackendLocal) {
				t.Errorf("got backends %s/%s, want memory/local for the quickstart", cfg.Replay.Backend, cfg.RateLimits.Backend)
			}
			if filepath.Base(f) == "forward-auth.yaml" && (!cfg.ForwardAuth.Enabled || len(cfg.Server.TrustedProxies) == 0) {
				t.Errorf("got forward_auth %+v and trusted_proxies %v, want forward auth on behind trusted proxies", cfg.ForwardAuth, cfg.Server.TrustedProxies)
			}
		})
	}
}

// buildLine finds the one line of a file that runs "go build" and returns
// its words without the output flag (-o PATH) and a leading RUN.
func buildLine(t *testing.T, path string) []string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var found []string
	for _, line := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(line), "#") || !strings.Contains(line, "go build") {
			continue
		}
		if found != nil {
			t.Fatalf("%s runs go build more than once", path)
		}
		words := shellWords(strings.TrimSpace(line))
		if len(words) > 0 && words[0] == "RUN" {
			words = words[1:]
		}
		if i := slices.Index(words, "-o"); i >= 0 && i+1 < len(words) {
			words = slices.Delete(words, i, i+2)
		}
		found = words
	}
	if found == nil {
		t.Fatalf("%s runs no go build", path)
	}
	return found
}

// shellWords splits a command line on spaces outside double quotes, as
// far as these two files need.
func shellWords(s string) []string {
	var words []string
	var cur strings.Builder
	quoted, any := false, false
	for _, c := range s {
		switch {
		case c == '"':
			quoted, any = !quoted, true
		case c == ' ' && !quoted:
			if any {
				words = append(words, cur.String())
			}
			cur.Reset()
			any = false
		default:
			cur.WriteRune(c)
			any = true
		}
	}
	if any {
		words = append(words, cur.String())
	}
	return words
}

// TestDockerfile: the image is built exactly as .ci/run builds the binary
// (so CI exercises the image's build step on a machine without a container
// engine), is static, runs as a non-root user, and starts
// "dpopgate serve --config /etc/dpopgate/config.yaml".
func TestDockerfile(t *testing.T) {
	image, ci := buildLine(t, "Dockerfile"), buildLine(t, "../.ci/run")
	if !slices.Equal(image, ci) {
		t.Fatalf("deploy/Dockerfile builds with %q, .ci/run with %q: keep them the same", image, ci)
	}
	want := []string{"CGO_ENABLED=0", "go", "build", "-trimpath", "-ldflags", "-s -w -X main.version=${VERSION} -X main.commit=${COMMIT}", "./cmd/dpopgate"}
	if !slices.Equal(image, want) {
		t.Fatalf("got build %q, want %q", image, want)
	}

	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	text := string(b)
	var stages []string
	for _, m := range regexp.MustCompile(`(?m)^FROM\s+(\S+)`).FindAllStringSubmatch(text, -1) {
		stages = append(stages, m[1])
	}
	if len(stages) < 2 {
		t.Fatalf("got stages %q, want a multi-stage build", stages)
	}
	if final := stages[len(stages)-1]; !strings.HasPrefix(final, "gcr.io/distroless/static") && final != "scratch" {
		t.Errorf("got final stage %s, want distroless static or scratch", final)
	}
	user := regexp.MustCompile(`(?m)^USER\s+(\S+)`).FindAllStringSubmatch(text, -1)
	if len(user) == 0 {
		t.Errorf("no USER: the image would run as root")
	} else if u := user[len(user)-1][1]; !regexp.MustCompile(`^[1-9][0-9]*(:[1-9][0-9]*)?$`).MatchString(u) {
		// Numeric, so that Kubernetes' runAsNonRoot can verify it.
		t.Errorf("got USER %s, want a numeric non-root user", u)
	}
	if !regexp.MustCompile(`(?m)^EXPOSE\s+8080\b`).MatchString(text) {
		t.Errorf("no EXPOSE 8080")
	}
	if !strings.Contains(text, `ENTRYPOINT ["/usr/local/bin/dpopgate", "serve", "--config", "/etc/dpopgate/config.yaml"]`) {
		t.Errorf("the ENTRYPOINT is not dpopgate serve --config /etc/dpopgate/config.yaml")
	}
	// Files copied from the build context exist.
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 3 || f[0] != "COPY" || strings.HasPrefix(f[1], "--from") {
			continue
		}
		for _, src := range f[1 : len(f)-1] {
			if _, err := os.Stat(filepath.Join("..", src)); src != "." && err != nil {
				t.Errorf("COPY %s: %v", src, err)
			}
		}
	}
}

// TestImageVersion builds the binary with the Dockerfile's build line, its
// ARGs set as docker build --build-arg would set them, and shows that
// "dpopgate version" then names that version and commit: the image's
// build context has no .git for Go to read them from.
func TestImageVersion(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary")
	}
	words := buildLine(t, "Dockerfile")
	args := map[string]string{"VERSION": "v1.2.3", "COMMIT": "0123456789abcdef0123456789abcdef01234567"}
	var env []string
	for len(words) > 0 && strings.Contains(words[0], "=") {
		env, words = append(env, words[0]), words[1:]
	}
	for k, v := range args {
		env = append(env, k+"="+v)
	}
	bin := filepath.Join(t.TempDir(), "dpopgate")
	argv := append(slices.Clone(words[2:len(words)-1]), "-o", bin, words[len(words)-1])
	for i := range argv {
		argv[i] = os.Expand(argv[i], func(k string) string { return args[k] })
	}
	build := exec.Command("go", append([]string{"build"}, argv...)...)
	build.Dir, build.Env = "..", append(os.Environ(), env...)
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("%v: %v\n%s", build.Args, err, out)
	}
	out, err := exec.Command(bin, "version").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := "dpopgate v1.2.3 (commit 0123456789abcdef0123456789abcdef01234567, go"
	if !strings.HasPrefix(string(out), want) {
		t.Fatalf("dpopgate version says %q, want %q…", out, want)
	}
}
