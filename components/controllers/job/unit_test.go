package job

import (
	"testing"
	"time"

	v1 "k8s.io/api/core/v1"
)

func TestIndexSet(t *testing.T) {
	for _, tc := range []struct {
		in          string
		completions int32
		want        string
		n           int
	}{
		{"", 5, "", 0},
		{"0-2", 5, "0-2", 3},
		{"4,0,1,2", 5, "0-2,4", 4},
		{"1,3-5,7", 6, "1,3-5", 4},
		{"x,2,-1,3-y", 5, "2", 1},
	} {
		s := parseIndexSet(tc.in, tc.completions)
		if s.String() != tc.want || s.len() != tc.n {
			t.Errorf("parse(%q, %d) = %q (%d), want %q (%d)", tc.in, tc.completions, s.String(), s.len(), tc.want, tc.n)
		}
	}
}

func TestBackoffDelay(t *testing.T) {
	s := newBackoffStore()
	now := time.Now()
	failed := []*v1.Pod{{}}
	if d := s.remaining("j", 10*time.Second, 6*time.Minute, now); d != 0 {
		t.Fatalf("no failures: %s", d)
	}
	// 10s, 20s, 40s, ... capped at 6m, counted from the last failure.
	for i, want := range []time.Duration{10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second, 160 * time.Second, 320 * time.Second, 6 * time.Minute, 6 * time.Minute} {
		s.update("j", nil, failed, now)
		if d := s.remaining("j", 10*time.Second, 6*time.Minute, now); d != want {
			t.Errorf("after %d failures: %s, want %s", i+1, d, want)
		}
	}
	if d := s.remaining("j", 10*time.Second, 6*time.Minute, now.Add(time.Minute)); d != 5*time.Minute {
		t.Errorf("a minute later: %s", d)
	}
	s.update("j", []*v1.Pod{{}}, nil, now)
	if d := s.remaining("j", 10*time.Second, 6*time.Minute, now); d != 0 {
		t.Errorf("after a success: %s", d)
	}
}
