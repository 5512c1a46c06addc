package gateway

import (
	"encoding/json"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"
)

// Per-client usage for attribution (GET /usage on the admin listener):
// requests and rejections per client over the last usageSlots slots of
// usageSlot each. Memory is bounded: a slot counts at most usageMaxKeys
// clients and lumps the rest under "(other)".
const (
	usageSlot    = time.Minute
	usageSlots   = 10
	usageMaxKeys = 2000
)

type usageCount struct {
	Requests   int64 `json:"requests"`
	Rejections int64 `json:"rejections"`
}

type usageKey struct {
	issuer, client string
}

// usage counts requests per client in a ring of time slots. Safe for
// concurrent use.
type usage struct {
	mu    sync.Mutex
	slots [usageSlots]struct {
		start  time.Time
		counts map[usageKey]*usageCount
	}
}

// record counts one request of a client (anonymous callers are counted as
// one client, "anonymous").
func (u *usage) record(now time.Time, issuer, client string, rejected bool) {
	start := now.Truncate(usageSlot)
	i := int(start.Unix()/int64(usageSlot/time.Second)) % usageSlots
	u.mu.Lock()
	defer u.mu.Unlock()
	s := &u.slots[i]
	if !s.start.Equal(start) || s.counts == nil {
		s.start, s.counts = start, make(map[usageKey]*usageCount)
	}
	k := usageKey{issuer, client}
	c := s.counts[k]
	if c == nil {
		if len(s.counts) >= usageMaxKeys {
			k = usageKey{"", "(other)"}
			c = s.counts[k]
		}
		if c == nil {
			c = &usageCount{}
			s.counts[k] = c
		}
	}
	c.Requests++
	if rejected {
		c.Rejections++
	}
}

type usageRow struct {
	Issuer   string `json:"issuer,omitempty"`
	ClientID string `json:"client_id"`
	usageCount
}

// top sums the slots within the window ending at now and returns the n
// clients with the most requests.
func (u *usage) top(now time.Time, n int) []usageRow {
	since := now.Truncate(usageSlot).Add(-(usageSlots - 1) * usageSlot)
	sum := map[usageKey]*usageCount{}
	u.mu.Lock()
	for i := range u.slots {
		s := &u.slots[i]
		if s.counts == nil || s.start.Before(since) || s.start.After(now) {
			continue
		}
		for k, c := range s.counts {
			t := sum[k]
			if t == nil {
				t = &usageCount{}
				sum[k] = t
			}
			t.Requests += c.Requests
			t.Rejections += c.Rejections
		}
	}
	u.mu.Unlock()
	rows := make([]usageRow, 0, len(sum))
	for k, c := range sum {
		rows = append(rows, usageRow{Issuer: k.issuer, ClientID: k.client, usageCount: *c})
	}
	sort.Slice(rows, func(i, j int) bool {
		if rows[i].Requests != rows[j].Requests {
			return rows[i].Requests > rows[j].Requests
		}
		return rows[i].ClientID < rows[j].ClientID
	})
	if len(rows) > n {
		rows = rows[:n]
	}
	return rows
}

// serveUsage answers GET /usage[?top=N]: the top clients by requests over
// the last ten minutes, with their rejections.
func (g *Gateway) serveUsage(w http.ResponseWriter, r *http.Request) {
	n := 20
	if v, err := strconv.Atoi(r.URL.Query().Get("top")); err == nil && v > 0 && v <= 1000 {
		n = v
	}
	now := g.clock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	json.NewEncoder(w).Encode(struct {
		Window  string     `json:"window"`
		Until   time.Time  `json:"until"`
		Clients []usageRow `json:"clients"`
	}{(usageSlots * usageSlot).String(), now.UTC(), g.usage.top(now, n)})
}
