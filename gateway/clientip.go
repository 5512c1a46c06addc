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
// untrusted one were written by the client and are never believed. A
// malformed hop ends the walk at the last trusted hop seen.
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
			a, err := netip.ParseAddr(strings.TrimSpace(hop))
			if err != nil {
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
