package job

import (
	"sort"
	"strconv"
	"strings"
)

// indexSet is a set of completion indexes, read from and written to
// status.completedIndexes ("1,3-5,7").
type indexSet map[int]struct{}

// parseIndexSet reads s, ignoring indexes outside [0, completions) and
// anything malformed, as Kubernetes does.
func parseIndexSet(s string, completions int32) indexSet {
	set := indexSet{}
	for _, part := range strings.Split(s, ",") {
		if part == "" {
			continue
		}
		lo, hi, isRange := strings.Cut(part, "-")
		first, err := strconv.Atoi(lo)
		if err != nil {
			continue
		}
		last := first
		if isRange {
			if last, err = strconv.Atoi(hi); err != nil {
				continue
			}
		}
		for i := max(first, 0); i <= last && i < int(completions); i++ {
			set[i] = struct{}{}
		}
	}
	return set
}

func (s indexSet) has(i int) bool { _, ok := s[i]; return ok }
func (s indexSet) add(i int)      { s[i] = struct{}{} }
func (s indexSet) len() int       { return len(s) }

// String is the compact interval form, "" for an empty set.
func (s indexSet) String() string {
	if len(s) == 0 {
		return ""
	}
	all := make([]int, 0, len(s))
	for i := range s {
		all = append(all, i)
	}
	sort.Ints(all)
	var b strings.Builder
	for k := 0; k < len(all); {
		j := k
		for j+1 < len(all) && all[j+1] == all[j]+1 {
			j++
		}
		if b.Len() > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(all[k]))
		if j > k {
			b.WriteByte('-')
			b.WriteString(strconv.Itoa(all[j]))
		}
		k = j + 1
	}
	return b.String()
}
