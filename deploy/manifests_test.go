package deploy

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	yamlv3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	networkingv1 "k8s.io/api/networking/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/validation"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"

	"github.com/dpopgate/dpopgate/config"
)

// identityHeaders are what the gateway answers a forward-auth call with
// (gateway/forwardauth.go), for each ingress to copy upstream.
var identityHeaders = []string{"X-Auth-Subject", "X-Auth-Client-Id", "X-Auth-Scope", "X-Auth-Tier", "X-Auth-Issuer", "X-Auth-Jkt"}

// traefikMiddleware is the part of Traefik's Middleware CRD
// (traefik.io/v1alpha1) the manifests use. Traefik's Go types pull in most
// of Traefik, so the CRD is checked against this mirror of its forwardAuth
// fields instead: strict decoding still refuses a misspelt field.
type traefikMiddleware struct {
	metav1.TypeMeta   `json:",inline"`
	metav1.ObjectMeta `json:"metadata"`
	Spec              struct {
		ForwardAuth *struct {
			Address                  string   `json:"address"`
			TrustForwardHeader       bool     `json:"trustForwardHeader"`
			AuthResponseHeaders      []string `json:"authResponseHeaders"`
			AuthResponseHeadersRegex string   `json:"authResponseHeadersRegex"`
			AuthRequestHeaders       []string `json:"authRequestHeaders"`
			AddAuthCookiesToResponse []string `json:"addAuthCookiesToResponse"`
			HeaderField              string   `json:"headerField"`
			ForwardBody              bool     `json:"forwardBody"`
			PreserveRequestMethod    bool     `json:"preserveRequestMethod"`
		} `json:"forwardAuth"`
	} `json:"spec"`
}

// kinds maps apiVersion/kind to a new value of its Go type.
var kinds = map[string]func() any{
	"v1/Namespace":                   func() any { return new(corev1.Namespace) },
	"v1/ConfigMap":                   func() any { return new(corev1.ConfigMap) },
	"v1/Secret":                      func() any { return new(corev1.Secret) },
	"v1/Service":                     func() any { return new(corev1.Service) },
	"apps/v1/Deployment":             func() any { return new(appsv1.Deployment) },
	"policy/v1/PodDisruptionBudget":  func() any { return new(policyv1.PodDisruptionBudget) },
	"networking.k8s.io/v1/Ingress":   func() any { return new(networkingv1.Ingress) },
	"traefik.io/v1alpha1/Middleware": func() any { return new(traefikMiddleware) },
}

// manifests are the decoded documents of one directory.
type manifests struct {
	dir         string
	objects     []any
	deployments []*appsv1.Deployment
	services    []*corev1.Service
	configMaps  []*corev1.ConfigMap
	secrets     []*corev1.Secret
	pdbs        []*policyv1.PodDisruptionBudget
	ingresses   []*networkingv1.Ingress
	middlewares []*traefikMiddleware
}

// load decodes every YAML document of every file in dir into its API type,
// strictly: an unknown or duplicate field is an error.
func load(t *testing.T, dir string) *manifests {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.yaml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in %s (%v)", dir, err)
	}
	m := &manifests{dir: dir}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		r := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for i := 0; ; i++ {
			doc, err := r.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				t.Fatalf("%s: document %d: %v", f, i, err)
			}
			if len(bytes.TrimSpace(stripComments(doc))) == 0 {
				continue
			}
			obj, err := decode(doc)
			if err != nil {
				t.Errorf("%s: document %d: %v", f, i, err)
				continue
			}
			m.add(obj)
		}
	}
	return m
}

func stripComments(doc []byte) []byte {
	var out []byte
	for _, line := range bytes.Split(doc, []byte("\n")) {
		if t := bytes.TrimSpace(line); len(t) > 0 && t[0] != '#' {
			out = append(append(out, line...), '\n')
		}
	}
	return out
}

func decode(doc []byte) (any, error) {
	var tm metav1.TypeMeta
	if err := yaml.Unmarshal(doc, &tm); err != nil {
		return nil, err
	}
	newObj := kinds[tm.APIVersion+"/"+tm.Kind]
	if newObj == nil {
		return nil, fmt.Errorf("apiVersion %q kind %q: not a type these tests know", tm.APIVersion, tm.Kind)
	}
	obj := newObj()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		return nil, fmt.Errorf("%s %s: %w", tm.APIVersion, tm.Kind, err)
	}
	meta := obj.(metav1.Object)
	if errs := validation.IsDNS1123Subdomain(meta.GetName()); len(errs) > 0 {
		return nil, fmt.Errorf("%s name %q: %s", tm.Kind, meta.GetName(), strings.Join(errs, "; "))
	}
	return obj, nil
}

func (m *manifests) add(obj any) {
	m.objects = append(m.objects, obj)
	switch o := obj.(type) {
	case *appsv1.Deployment:
		m.deployments = append(m.deployments, o)
	case *corev1.Service:
		m.services = append(m.services, o)
	case *corev1.ConfigMap:
		m.configMaps = append(m.configMaps, o)
	case *corev1.Secret:
		m.secrets = append(m.secrets, o)
	case *policyv1.PodDisruptionBudget:
		m.pdbs = append(m.pdbs, o)
	case *networkingv1.Ingress:
		m.ingresses = append(m.ingresses, o)
	case *traefikMiddleware:
		m.middlewares = append(m.middlewares, o)
	}
}

func (m *manifests) configMap(ns, name string) *corev1.ConfigMap {
	for _, c := range m.configMaps {
		if c.Name == name && c.Namespace == ns {
			return c
		}
	}
	return nil
}

func (m *manifests) secret(ns, name string) *corev1.Secret {
	for _, s := range m.secrets {
		if s.Name == name && s.Namespace == ns {
			return s
		}
	}
	return nil
}

// env is what the Secrets of the directory put in a container's environment.
func (m *manifests) env() func(string) string {
	return func(k string) string {
		for _, s := range m.secrets {
			if v, ok := s.StringData[k]; ok {
				return v
			}
		}
		return ""
	}
}

// dpopgateConfig parses the config.yaml of a ConfigMap as check-config
// would, with the directory's Secrets as the environment.
func (m *manifests) dpopgateConfig(t *testing.T, cm *corev1.ConfigMap) *config.Config {
	t.Helper()
	text, ok := cm.Data["config.yaml"]
	if !ok {
		t.Fatalf("ConfigMap %s has no config.yaml", cm.Name)
	}
	cfg, err := config.Parse(m.dir+"/ConfigMap/"+cm.Name+"/config.yaml", []byte(text), m.env())
	if err != nil {
		t.Fatalf("dpopgate check-config on ConfigMap %s:\n%v", cm.Name, err)
	}
	return cfg
}

// checkDeployments checks what the API server would not: that selectors
// select, that references resolve, that probes reach declared ports, that
// pods run as non-root; and, for each dpopgate container, that its config
// is valid and its ports and readiness probe match the config.
func (m *manifests) checkDeployments(t *testing.T) map[string]*config.Config {
	t.Helper()
	configs := map[string]*config.Config{}
	for _, d := range m.deployments {
		sel, err := metav1.LabelSelectorAsSelector(d.Spec.Selector)
		if err != nil || sel.Empty() || !sel.Matches(labels.Set(d.Spec.Template.Labels)) {
			t.Errorf("Deployment %s: selector %v does not select its own pods %v (%v)", d.Name, d.Spec.Selector, d.Spec.Template.Labels, err)
		}
		pod := d.Spec.Template.Spec
		mounts := map[string]*corev1.ConfigMap{}
		for _, v := range pod.Volumes {
			if v.ConfigMap != nil {
				cm := m.configMap(d.Namespace, v.ConfigMap.Name)
				if cm == nil {
					t.Errorf("Deployment %s: volume %s: no ConfigMap %s in %s", d.Name, v.Name, v.ConfigMap.Name, m.dir)
				}
				mounts[v.Name] = cm
			}
		}
		for _, c := range pod.Containers {
			where := fmt.Sprintf("Deployment %s container %s", d.Name, c.Name)
			if !nonRoot(pod.SecurityContext, c.SecurityContext) {
				t.Errorf("%s: not runAsNonRoot", where)
			}
			if sc := c.SecurityContext; sc == nil || sc.AllowPrivilegeEscalation == nil || *sc.AllowPrivilegeEscalation {
				t.Errorf("%s: allowPrivilegeEscalation is not false", where)
			}
			for _, ef := range c.EnvFrom {
				if ef.SecretRef != nil && m.secret(d.Namespace, ef.SecretRef.Name) == nil {
					t.Errorf("%s: envFrom: no Secret %s in %s", where, ef.SecretRef.Name, m.dir)
				}
			}
			for _, e := range c.Env {
				if r := e.ValueFrom; r != nil && r.SecretKeyRef != nil {
					s := m.secret(d.Namespace, r.SecretKeyRef.Name)
					if _, ok := s.StringData[r.SecretKeyRef.Key]; s == nil || !ok {
						t.Errorf("%s: env %s: no key %s in a Secret %s", where, e.Name, r.SecretKeyRef.Key, r.SecretKeyRef.Name)
					}
				}
			}
			for _, p := range []*corev1.Probe{c.ReadinessProbe, c.LivenessProbe} {
				if p == nil {
					continue
				}
				var target string
				switch {
				case p.HTTPGet != nil:
					target = p.HTTPGet.Port.String()
				case p.TCPSocket != nil:
					target = p.TCPSocket.Port.String()
				default:
					continue
				}
				if !probeReaches(pod, c, target) {
					t.Errorf("%s: probe on port %s, which the kubelet cannot resolve", where, target)
				}
			}
			if !strings.Contains(c.Image, "dpopgate:") {
				continue
			}
			// A dpopgate container: its config, ports and readiness.
			var cfg *config.Config
			for _, vm := range c.VolumeMounts {
				if cm := mounts[vm.Name]; cm != nil && vm.MountPath == "/etc/dpopgate" {
					cfg = m.dpopgateConfig(t, cm)
				}
			}
			if cfg == nil {
				t.Errorf("%s: no ConfigMap mounted at /etc/dpopgate, where the image's ENTRYPOINT reads config.yaml", where)
				continue
			}
			if len(c.Command) > 0 || len(c.Args) > 0 {
				t.Errorf("%s: command/args would replace or extend the image's ENTRYPOINT", where)
			}
			configs[d.Name] = cfg
			if got, want := port(c, "gateway"), listenPort(cfg.Server.Listen); got != want {
				t.Errorf("%s: port gateway is %d, server.listen says %d", where, got, want)
			}
			if got, want := port(c, "admin"), listenPort(cfg.Server.AdminListen); got != want {
				t.Errorf("%s: port admin is %d, server.admin_listen %q says %d", where, got, cfg.Server.AdminListen, want)
			}
			if host, _, _ := net.SplitHostPort(cfg.Server.AdminListen); host == "127.0.0.1" || host == "localhost" {
				t.Errorf("%s: admin_listen %s is out of the kubelet's reach", where, cfg.Server.AdminListen)
			}
			if rp := c.ReadinessProbe; rp == nil || rp.HTTPGet == nil || rp.HTTPGet.Path != "/readyz" || rp.HTTPGet.Port.String() != "admin" {
				t.Errorf("%s: readiness is not GET /readyz on the admin port", where)
			}
		}
	}
	return configs
}

// nonRoot reports whether a container runs as non-root by its own or its
// pod's security context.
func nonRoot(pod *corev1.PodSecurityContext, c *corev1.SecurityContext) bool {
	if c != nil && c.RunAsNonRoot != nil {
		return *c.RunAsNonRoot
	}
	return pod != nil && pod.RunAsNonRoot != nil && *pod.RunAsNonRoot
}

// port is the number of a container's port by name or number, or 0.
func port(c corev1.Container, nameOrNumber string) int {
	for _, p := range c.Ports {
		if p.Name == nameOrNumber || strconv.Itoa(int(p.ContainerPort)) == nameOrNumber {
			return int(p.ContainerPort)
		}
	}
	return 0
}

// probeReaches reports whether the kubelet can probe target for container
// c: a named port must be one of c's own (the kubelet looks nowhere else); a
// number must be a port of some container of the pod, which shares one
// network namespace.
func probeReaches(pod corev1.PodSpec, c corev1.Container, target string) bool {
	if _, err := strconv.Atoi(target); err != nil {
		return port(c, target) > 0
	}
	for _, o := range pod.Containers {
		if port(o, target) > 0 {
			return true
		}
	}
	return false
}

func listenPort(addr string) int {
	_, p, _ := net.SplitHostPort(addr)
	n, _ := strconv.Atoi(p)
	return n
}

// checkServices: each Service selects the pods of a Deployment of the
// directory, on a port their containers declare.
func (m *manifests) checkServices(t *testing.T) {
	t.Helper()
	for _, s := range m.services {
		var pods *appsv1.Deployment
		for _, d := range m.deployments {
			if d.Namespace == s.Namespace && labels.SelectorFromSet(s.Spec.Selector).Matches(labels.Set(d.Spec.Template.Labels)) {
				pods = d
			}
		}
		if len(s.Spec.Selector) == 0 || pods == nil {
			t.Errorf("Service %s selects no Deployment's pods", s.Name)
			continue
		}
		for _, sp := range s.Spec.Ports {
			found := false
			for _, c := range pods.Spec.Template.Spec.Containers {
				found = found || port(c, sp.TargetPort.String()) > 0
			}
			if !found {
				t.Errorf("Service %s: targetPort %s is no port of Deployment %s", s.Name, sp.TargetPort.String(), pods.Name)
			}
		}
	}
	for _, b := range m.pdbs {
		sel, err := metav1.LabelSelectorAsSelector(b.Spec.Selector)
		var target *appsv1.Deployment
		for _, d := range m.deployments {
			if err == nil && d.Namespace == b.Namespace && sel.Matches(labels.Set(d.Spec.Template.Labels)) {
				target = d
			}
		}
		if target == nil {
			t.Errorf("PodDisruptionBudget %s selects no Deployment's pods", b.Name)
			continue
		}
		if b.Spec.MinAvailable == nil || target.Spec.Replicas == nil || b.Spec.MinAvailable.IntValue() >= int(*target.Spec.Replicas) {
			t.Errorf("PodDisruptionBudget %s: minAvailable %v leaves no disruption to %d replicas", b.Name, b.Spec.MinAvailable, *target.Spec.Replicas)
		}
	}
}

// TestSidecarManifests: dpopgate in front of an existing Deployment, the
// application reachable on loopback only.
func TestSidecarManifests(t *testing.T) {
	m := load(t, "kubernetes/sidecar")
	configs := m.checkDeployments(t)
	m.checkServices(t)
	if len(m.deployments) != 1 || configs[m.deployments[0].Name] == nil {
		t.Fatalf("want one Deployment with a dpopgate sidecar, got %d", len(m.deployments))
	}
	d := m.deployments[0]
	cfg := configs[d.Name]
	for _, rt := range cfg.Routes {
		if !strings.HasPrefix(rt.Upstream, "http://127.0.0.1:") {
			t.Errorf("route %s: upstream %s is not the pod's loopback", rt.Name, rt.Upstream)
		}
	}
	for _, c := range d.Spec.Template.Spec.Containers {
		if strings.Contains(c.Image, "dpopgate:") {
			continue
		}
		if len(c.Ports) > 0 {
			t.Errorf("container %s declares ports %v: the application must be reachable through dpopgate only", c.Name, c.Ports)
		}
		loopback := false
		for _, e := range c.Env {
			loopback = loopback || strings.HasPrefix(e.Value, "127.0.0.1:")
		}
		if !loopback {
			t.Errorf("container %s is not told to listen on 127.0.0.1", c.Name)
		}
	}
	for _, s := range m.services {
		for _, p := range s.Spec.Ports {
			if p.TargetPort.String() != "gateway" {
				t.Errorf("Service %s targets %s, not dpopgate's port", s.Name, p.TargetPort.String())
			}
		}
	}
}

// TestSharedManifests: the shared gateway: 3 replicas, Service, PDB,
// readiness on /readyz, config in a ConfigMap, secrets from a Secret, and
// Redis for the replay store and the rate limits.
func TestSharedManifests(t *testing.T) {
	m := load(t, "kubernetes/shared")
	configs := m.checkDeployments(t)
	m.checkServices(t)
	gw := configs["dpopgate"]
	if gw == nil {
		t.Fatal("no dpopgate Deployment")
	}
	var d *appsv1.Deployment
	for _, x := range m.deployments {
		if x.Name == "dpopgate" {
			d = x
		}
	}
	if d.Spec.Replicas == nil || *d.Spec.Replicas != 3 {
		t.Errorf("got %v replicas, want 3", d.Spec.Replicas)
	}
	if len(m.pdbs) != 1 {
		t.Errorf("got %d PodDisruptionBudgets, want 1", len(m.pdbs))
	}
	if gw.Replay.Backend != config.BackendRedis || gw.RateLimits.Backend != config.BackendRedis {
		t.Errorf("got backends %s/%s, want redis/redis", gw.Replay.Backend, gw.RateLimits.Backend)
	}
	if !gw.DPoP.Nonce.Enabled || gw.Redis.Password == "" {
		t.Errorf("nonce secret and Redis password are not both in use")
	}
	s := m.secret("dpopgate", "dpopgate-secrets")
	for _, k := range []string{"DPOPGATE_DPOP_NONCE_SECRET", "DPOPGATE_REDIS_PASSWORD"} {
		if s == nil || s.StringData[k] == "" {
			t.Errorf("the Secret has no %s", k)
		}
	}
	// The config's Redis is the Redis Service of the manifests.
	redisHost := strings.TrimPrefix(gw.Redis.URL, "redis://")
	redisHost, _, _ = strings.Cut(redisHost, "/")
	found := false
	for _, svc := range m.services {
		for _, p := range svc.Spec.Ports {
			found = found || redisHost == svc.Name+":"+strconv.Itoa(int(p.Port))
		}
	}
	if !found {
		t.Errorf("redis.url %s names no Service of the manifests", gw.Redis.URL)
	}
	if !gw.ForwardAuth.Enabled {
		t.Errorf("forward auth is off, but kubernetes/ingress points at it")
	}
}

// TestIngressManifests: ingress-nginx auth-url, Traefik ForwardAuth and
// Envoy ext_authz all point at the shared gateway's forward-auth endpoint
// and copy the identity upstream.
func TestIngressManifests(t *testing.T) {
	m := load(t, "kubernetes/ingress")
	shared := load(t, "kubernetes/shared")
	var gw *config.Config
	for _, cm := range shared.configMaps {
		gw = shared.dpopgateConfig(t, cm)
	}
	authURL := "http://dpopgate.dpopgate.svc.cluster.local" + gw.ForwardAuth.Path

	var nginx *networkingv1.Ingress
	for _, ing := range m.ingresses {
		if ing.Annotations["nginx.ingress.kubernetes.io/auth-url"] != "" {
			nginx = ing
		}
	}
	if nginx == nil {
		t.Fatal("no Ingress with nginx.ingress.kubernetes.io/auth-url")
	}
	if got := nginx.Annotations["nginx.ingress.kubernetes.io/auth-url"]; got != authURL {
		t.Errorf("auth-url %s, want %s", got, authURL)
	}
	copied := strings.Split(nginx.Annotations["nginx.ingress.kubernetes.io/auth-response-headers"], ",")
	for _, h := range append(identityHeaders, "Authorization", "DPoP") {
		if !slices.Contains(copied, h) {
			t.Errorf("auth-response-headers lacks %s", h)
		}
	}
	if len(m.middlewares) != 1 || m.middlewares[0].Spec.ForwardAuth == nil {
		t.Fatal("want one Traefik Middleware with forwardAuth")
	}
	fa := m.middlewares[0].Spec.ForwardAuth
	if fa.Address != authURL || !fa.TrustForwardHeader {
		t.Errorf("forwardAuth address %s trustForwardHeader %v, want %s and true", fa.Address, fa.TrustForwardHeader, authURL)
	}
	for _, h := range append(identityHeaders, "Authorization", "DPoP") {
		if !slices.Contains(fa.AuthResponseHeaders, h) {
			t.Errorf("authResponseHeaders lacks %s", h)
		}
	}
	// The gateway refuses an original request carrying an X-Auth-* field
	// (X_Auth_* too) or a method override, which Traefik would pass
	// upstream; it has to see them, and authRequestHeaders takes no
	// patterns.
	if len(fa.AuthRequestHeaders) > 0 {
		t.Errorf("authRequestHeaders %v: the gateway would never see a client's X-Auth-Role, X_Auth_Subject or X-HTTP-Method-Override", fa.AuthRequestHeaders)
	}
	mw := m.middlewares[0]
	ref := mw.Namespace + "-" + mw.Name + "@kubernetescrd"
	used := false
	for _, ing := range m.ingresses {
		used = used || strings.Contains(ing.Annotations["traefik.ingress.kubernetes.io/router.middlewares"], ref)
	}
	if !used {
		t.Errorf("no Ingress uses the Middleware %s", ref)
	}
	// Every ingress's clients can reach the RFC 9728 metadata the 401s name.
	for _, class := range []string{"nginx", "traefik"} {
		served := false
		for _, ing := range m.ingresses {
			for _, rule := range ing.Spec.Rules {
				for _, p := range rule.HTTP.Paths {
					served = served || *ing.Spec.IngressClassName == class && p.Path == "/.well-known/oauth-protected-resource" && p.Backend.Service.Name == "dpopgate"
				}
			}
		}
		if !served {
			t.Errorf("class %s: no Ingress sends /.well-known/oauth-protected-resource to the gateway", class)
		}
	}

	var envoy *corev1.ConfigMap
	for _, cm := range m.configMaps {
		if _, ok := cm.Data["envoy.yaml"]; ok {
			envoy = cm
		}
	}
	if envoy == nil {
		t.Fatal("no ConfigMap with envoy.yaml")
	}
	checkEnvoy(t, envoy.Data["envoy.yaml"], gw.ForwardAuth.Path)
}

// stringMatchers is Envoy's ListStringMatcher, as far as exact and prefix.
type stringMatchers struct {
	Patterns []struct {
		Exact  string `yaml:"exact"`
		Prefix string `yaml:"prefix"`
	} `yaml:"patterns"`
}

// extAuthzConfig is the part of Envoy's ExtAuthz filter config (v3) that
// forward auth depends on.
type extAuthzConfig struct {
	Type           string         `yaml:"@type"`
	FailureMode    bool           `yaml:"failure_mode_allow"`
	AllowedHeaders stringMatchers `yaml:"allowed_headers"`
	HTTPService    struct {
		ServerURI struct {
			URI     string `yaml:"uri"`
			Cluster string `yaml:"cluster"`
		} `yaml:"server_uri"`
		PathPrefix string `yaml:"path_prefix"`
		Response   struct {
			Upstream        stringMatchers `yaml:"allowed_upstream_headers"`
			Client          stringMatchers `yaml:"allowed_client_headers"`
			ClientOnSuccess stringMatchers `yaml:"allowed_client_headers_on_success"`
		} `yaml:"authorization_response"`
	} `yaml:"http_service"`
}

// checkEnvoy reads the Envoy bootstrap as YAML and checks its ext_authz
// filter: the HTTP service at the gateway, path_prefix the forward-auth
// path, DPoP sent along, the identity copied upstream, and the rate-limit
// fields shown to the client.
func checkEnvoy(t *testing.T, text, authPath string) {
	t.Helper()
	var boot struct {
		StaticResources struct {
			Listeners []struct {
				FilterChains []struct {
					Filters []struct {
						Name        string `yaml:"name"`
						TypedConfig struct {
							CommonHTTPProtocolOptions struct {
								HeadersWithUnderscoresAction string `yaml:"headers_with_underscores_action"`
							} `yaml:"common_http_protocol_options"`
							HTTPFilters []struct {
								Name        string      `yaml:"name"`
								TypedConfig yamlv3.Node `yaml:"typed_config"`
							} `yaml:"http_filters"`
						} `yaml:"typed_config"`
					} `yaml:"filters"`
				} `yaml:"filter_chains"`
			} `yaml:"listeners"`
			Clusters []struct {
				Name string `yaml:"name"`
			} `yaml:"clusters"`
		} `yaml:"static_resources"`
	}
	if err := yamlv3.Unmarshal([]byte(text), &boot); err != nil {
		t.Fatalf("envoy.yaml: %v", err)
	}
	var extAuthz *extAuthzConfig
	for _, l := range boot.StaticResources.Listeners {
		for _, fc := range l.FilterChains {
			for _, f := range fc.Filters {
				// X_Auth_Subject is X-Auth-Subject to a CGI-style
				// upstream, and neither the answer's identity nor
				// X-Envoy-Auth-Headers-To-Remove replaces it.
				if a := f.TypedConfig.CommonHTTPProtocolOptions.HeadersWithUnderscoresAction; a != "DROP_HEADER" && a != "REJECT_REQUEST" {
					t.Errorf("headers_with_underscores_action %q, want DROP_HEADER: a client's X_Auth_Subject would reach the upstream", a)
				}
				for _, hf := range f.TypedConfig.HTTPFilters {
					if hf.Name == "envoy.filters.http.ext_authz" {
						extAuthz = new(extAuthzConfig)
						if err := hf.TypedConfig.Decode(extAuthz); err != nil {
							t.Fatalf("ext_authz typed_config: %v", err)
						}
					}
				}
			}
		}
	}
	if extAuthz == nil {
		t.Fatal("envoy.yaml has no envoy.filters.http.ext_authz filter")
	}
	matches := func(m stringMatchers, header string) bool {
		for _, p := range m.Patterns {
			if p.Exact != "" && strings.EqualFold(p.Exact, header) || p.Prefix != "" && strings.HasPrefix(strings.ToLower(header), strings.ToLower(p.Prefix)) {
				return true
			}
		}
		return false
	}
	hs := extAuthz.HTTPService
	if extAuthz.Type != "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz" || extAuthz.FailureMode {
		t.Errorf("ext_authz: @type %s failure_mode_allow %v, want the v3 ExtAuthz failing closed", extAuthz.Type, extAuthz.FailureMode)
	}
	if hs.PathPrefix != authPath {
		t.Errorf("path_prefix %q, want the forward-auth path %q", hs.PathPrefix, authPath)
	}
	if !strings.HasPrefix(hs.ServerURI.URI, "http://dpopgate.dpopgate.svc") {
		t.Errorf("server_uri %s is not the gateway", hs.ServerURI.URI)
	}
	clusterFound := false
	for _, c := range boot.StaticResources.Clusters {
		clusterFound = clusterFound || c.Name == hs.ServerURI.Cluster
	}
	if !clusterFound {
		t.Errorf("server_uri cluster %q is not defined", hs.ServerURI.Cluster)
	}
	// The gateway refuses an original request carrying another X-Auth-*
	// field or a method override, which Envoy would pass upstream, if it
	// sees them.
	for _, h := range []string{"dpop", "x-forwarded-proto", "x-auth-role", "x-http-method-override", "x-http-method", "x-method-override"} {
		if !matches(extAuthz.AllowedHeaders, h) {
			t.Errorf("allowed_headers lacks %s: the gateway would not see it", h)
		}
	}
	for _, h := range identityHeaders {
		if !matches(hs.Response.Upstream, h) {
			t.Errorf("allowed_upstream_headers lacks %s", h)
		}
	}
	for _, h := range []string{"WWW-Authenticate", "DPoP-Nonce", "Retry-After", "X-RateLimit-Remaining", "RateLimit-Policy"} {
		if !matches(hs.Response.Client, h) {
			t.Errorf("allowed_client_headers lacks %s", h)
		}
	}
	for _, h := range []string{"DPoP-Nonce", "X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit"} {
		if !matches(hs.Response.ClientOnSuccess, h) {
			t.Errorf("allowed_client_headers_on_success lacks %s", h)
		}
	}
}
