package config

import (
	"fmt"
	"net/netip"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Prefix is an IP network: "10.0.0.0/8", or a bare address meaning /32
// (or /128 for IPv6). Parsing masks it ("10.1.2.3/8" is 10.0.0.0/8) and
// unmaps IPv4-mapped IPv6 addresses, so Contains works on netip.Addr.Unmap
// values.
type Prefix struct{ netip.Prefix }

// ParsePrefix parses an IP address or CIDR as in trusted_proxies. The
// empty string gives the zero Prefix, which is not valid (Validate says so).
func ParsePrefix(s string) (Prefix, error) {
	if s == "" {
		return Prefix{}, nil
	}
	bad := fmt.Errorf("%q is not an IP address or CIDR", s)
	if strings.Contains(s, "%") {
		return Prefix{}, bad // zones name interfaces, not networks
	}
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		return Prefix{p.Masked()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return Prefix{}, bad
	}
	a = a.Unmap()
	return Prefix{netip.PrefixFrom(a, a.BitLen())}, nil
}

// MarshalText writes the CIDR form, "10.0.0.0/8".
func (p Prefix) MarshalText() ([]byte, error) {
	if !p.IsValid() {
		return []byte{}, nil
	}
	return []byte(p.String()), nil
}

// UnmarshalText parses as ParsePrefix does.
func (p *Prefix) UnmarshalText(b []byte) error {
	v, err := ParsePrefix(string(b))
	if err != nil {
		return err
	}
	*p = v
	return nil
}

// UnmarshalYAML parses a scalar as ParsePrefix does.
func (p *Prefix) UnmarshalYAML(n *yaml.Node) error {
	if n.Kind != yaml.ScalarNode {
		return fmt.Errorf("expected an IP address or CIDR, got %s", describe(n))
	}
	return p.UnmarshalText([]byte(n.Value))
}
