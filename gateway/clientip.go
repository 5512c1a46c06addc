package gateway

import (
	"net"
	"net/http"
	"net/netip"
	"strings"
)

// trustedProxies is the set of peers whose forwarding headers are believed.
type trustedProxies []netip.Prefix

func (tp trustedProxies) contains(a netip.Addr) bool {
	a = a.Unmap()
	for _, p := range tp {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// peerAddr is the address of the TCP peer of r.
func peerAddr(r *http.Request) netip.Addr {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// clientIP returns the address of the client that made r: the peer, or,
// when the peer is a trusted proxy, the rightmost X-Forwarded-For hop that
// is not itself a trusted proxy (all X-Forwarded-For fields joined, walked
// right to left, as Caddy's strict mode does). Hops left of the first
// untrusted one were written by the client and are never believed. A hop
// may carry a port (parseHop). A malformed hop ends the walk at the last
// trusted hop seen.
func (tp trustedProxies) clientIP(r *http.Request) (ip netip.Addr, peerTrusted bool) {
	peer := peerAddr(r)
	if !peer.IsValid() || !tp.contains(peer) {
		return peer, false
	}
	values := r.Header.Values("X-Forwarded-For")
	client := peer
	for i := len(values) - 1; i >= 0; i-- {
		hops := values[i]
		for hops != "" {
			var hop string
			if j := strings.LastIndexByte(hops, ','); j >= 0 {
				hop, hops = hops[j+1:], hops[:j]
			} else {
				hop, hops = hops, ""
			}
			a, ok := parseHop(strings.TrimSpace(hop))
			if !ok {
				return client, true
			}
			client = a.Unmap()
			if !tp.contains(client) {
				return client, true
			}
		}
	}
	return client, true
}

// parseHop reads one X-Forwarded-For hop: an address, or (as Azure
// Application Gateway and IIS ARR write it) an address and port,
// 198.51.100.7:4711 or [2001:db8::7]:4711, or a bracketed IPv6 address.
func parseHop(hop string) (netip.Addr, bool) {
	if a, err := netip.ParseAddr(hop); err == nil {
		return a, true
	}
	var a netip.Addr
	if strings.HasPrefix(hop, "[") && strings.HasSuffix(hop, "]") {
		var err error
		if a, err = netip.ParseAddr(hop[1 : len(hop)-1]); err != nil || !a.Is6() {
			return netip.Addr{}, false
		}
	} else {
		ap, err := netip.ParseAddrPort(hop)
		if err != nil {
			return netip.Addr{}, false
		}
		a = ap.Addr()
	}
	// A zone means nothing off the host that wrote it.
	return a, a.Zone() == ""
}

// limitKey is the rate-limit identity of an address: the address itself
// for IPv4, its /64 for IPv6, since one subscriber usually holds a whole
// /64 and could otherwise rotate through 2^64 budgets.
func limitKey(a netip.Addr) string {
	if !a.IsValid() {
		return "invalid"
	}
	if a.Is4() {
		return a.String()
	}
	p, _ := a.Prefix(64)
	return p.String()
}
