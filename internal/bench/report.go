package bench

import (
	"cmp"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Markdown renders the report as Markdown tables whose columns are padded, so
// the same text reads well in a terminal and pastes into a README.
func (r *Report) Markdown() string {
	var b strings.Builder
	b.WriteString(r.summary())
	b.WriteString("\n\n")
	for _, n := range r.Notes {
		fmt.Fprintf(&b, "> Note: %s\n\n", n)
	}

	withErrors := false
	for _, res := range r.Results {
		if res.Errors > 0 {
			withErrors = true
		}
	}
	head := []string{"phase", "clients", "target", "ops/s", "p50", "p99"}
	right := []bool{false, true, false, true, true, true}
	if withErrors {
		head = append(head, "errors")
		right = append(right, true)
	}
	var rows [][]string
	for _, res := range r.sorted() {
		row := []string{res.Phase, strconv.Itoa(res.Clients), res.Target,
			fmt.Sprintf("%.0f", res.OpsPerSec), fmtMs(res.P50), fmtMs(res.P99)}
		if withErrors {
			row = append(row, strconv.Itoa(res.Errors))
		}
		rows = append(rows, row)
	}
	writeTable(&b, head, right, rows)

	if ratios := Ratios(r.sorted()); len(ratios) > 0 {
		b.WriteString("\nsynod ÷ etcd (throughput > 1 and p99 < 1 mean synod is faster):\n\n")
		rows = rows[:0]
		for _, q := range ratios {
			rows = append(rows, []string{q.Phase, strconv.Itoa(q.Clients),
				fmt.Sprintf("%.2f×", q.Throughput), fmt.Sprintf("%.2f×", q.P99)})
		}
		writeTable(&b, []string{"phase", "clients", "throughput", "p99"}, []bool{false, true, true, true}, rows)
	}
	return b.String()
}

// summary is one line saying what was measured.
func (r *Report) summary() string {
	var what string
	if r.Masters > 0 {
		what = fmt.Sprintf("%d-member clusters on loopback", r.Masters)
	} else {
		what = "running cluster at " + strings.Join(r.Endpoints, ",")
	}
	per := fmt.Sprintf("%s per phase", r.Duration)
	if r.Ops > 0 {
		per = fmt.Sprintf("%d requests per phase", r.Ops)
	}
	s := fmt.Sprintf("synod bench kv, %s: %s, %d CPUs, %d keys, %d-byte values, %s, one connection per client, round-robin over the members",
		r.Started.Format("2006-01-02"), what, r.NumCPU, r.Keys, r.ValueSize, per)
	if r.EtcdVersion != "" {
		s += fmt.Sprintf("; etcd %s", r.EtcdVersion)
	}
	return s + "."
}

// sorted returns the results grouped by phase, then clients (in the order
// the levels ran), keeping the order targets ran within a group, so each
// synod row sits beside its etcd row.
func (r *Report) sorted() []Result {
	phaseRank := map[string]int{}
	for i, p := range Phases {
		phaseRank[p] = i
	}
	clientRank := map[int]int{}
	for _, res := range r.Results {
		if _, ok := clientRank[res.Clients]; !ok {
			clientRank[res.Clients] = len(clientRank)
		}
	}
	out := slices.Clone(r.Results)
	slices.SortStableFunc(out, func(a, b Result) int {
		if c := cmp.Compare(phaseRank[a.Phase], phaseRank[b.Phase]); c != 0 {
			return c
		}
		return cmp.Compare(clientRank[a.Clients], clientRank[b.Clients])
	})
	return out
}

// writeTable writes a padded Markdown table; right marks right-aligned columns.
func writeTable(b *strings.Builder, head []string, right []bool, rows [][]string) {
	width := make([]int, len(head))
	for i, h := range head {
		width[i] = max(3, runeLen(h))
	}
	for _, row := range rows {
		for i, c := range row {
			width[i] = max(width[i], runeLen(c))
		}
	}
	line := func(cells []string) {
		b.WriteString("|")
		for i, c := range cells {
			pad := strings.Repeat(" ", width[i]-runeLen(c))
			if right[i] {
				fmt.Fprintf(b, " %s%s |", pad, c)
			} else {
				fmt.Fprintf(b, " %s%s |", c, pad)
			}
		}
		b.WriteString("\n")
	}
	line(head)
	b.WriteString("|")
	for i := range head {
		if right[i] {
			fmt.Fprintf(b, " %s: |", strings.Repeat("-", width[i]-1))
		} else {
			fmt.Fprintf(b, " %s |", strings.Repeat("-", width[i]))
		}
	}
	b.WriteString("\n")
	for _, row := range rows {
		line(row)
	}
}

func runeLen(s string) int { return len([]rune(s)) }

// fmtMs formats a latency in milliseconds with a precision that suits it.
func fmtMs(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case ms >= 100:
		return fmt.Sprintf("%.0f ms", ms)
	case ms >= 10:
		return fmt.Sprintf("%.1f ms", ms)
	default:
		return fmt.Sprintf("%.2f ms", ms)
	}
}

// JSON renders the report for machines: latencies in milliseconds.
func (r *Report) JSON() ([]byte, error) {
	type result struct {
		Result
		ElapsedS float64 `json:"elapsed_s"`
		P50Ms    float64 `json:"p50_ms"`
		P99Ms    float64 `json:"p99_ms"`
		MaxMs    float64 `json:"max_ms"`
	}
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	out := struct {
		Started     time.Time `json:"started"`
		Masters     int       `json:"masters,omitempty"`
		Endpoints   []string  `json:"endpoints,omitempty"`
		Keys        int       `json:"keys"`
		ValueSize   int       `json:"value_size"`
		DurationS   float64   `json:"duration_s,omitempty"`
		Ops         int       `json:"ops_per_phase,omitempty"`
		NumCPU      int       `json:"num_cpu"`
		EtcdVersion string    `json:"etcd_version,omitempty"`
		Notes       []string  `json:"notes,omitempty"`
		Results     []result  `json:"results"`
		Ratios      []Ratio   `json:"synod_over_etcd,omitempty"`
	}{
		Started: r.Started, Masters: r.Masters, Endpoints: r.Endpoints, Keys: r.Keys,
		ValueSize: r.ValueSize, DurationS: r.Duration.Seconds(), Ops: r.Ops, NumCPU: r.NumCPU,
		EtcdVersion: r.EtcdVersion, Notes: r.Notes, Ratios: Ratios(r.sorted()),
		Results: []result{},
	}
	for _, res := range r.Results {
		out.Results = append(out.Results, result{Result: res, ElapsedS: res.Elapsed.Seconds(),
			P50Ms: ms(res.P50), P99Ms: ms(res.P99), MaxMs: ms(res.Max)})
	}
	b, err := json.MarshalIndent(out, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}
