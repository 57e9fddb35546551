package main

import (
	"strings"
	"testing"
)

func TestChaosUsageErrors(t *testing.T) {
	for _, tt := range []struct {
		args []string
		wmsg string
	}{
		{[]string{"chaos"}, ""},
		{[]string{"chaos", "run", "--faults", "kill,explode"}, `unknown fault "explode"`},
		{[]string{"chaos", "run", "--masters", "4"}, "3, 5 or 7"},
		{[]string{"chaos", "run", "--masters", "1"}, "3, 5 or 7"},
		{[]string{"chaos", "run", "--count", "3", "--duration", "1m"}, "not both"},
		{[]string{"chaos", "run", "--interval", "10ms"}, "at least 1s"},
		{[]string{"chaos", "run", "--inventory", "hosts.yml"}, "no such file"},
		{[]string{"chaos", "run", "--inventory", "hosts.ini", "--faults", "pause"}, "not supported with --inventory"},
		{[]string{"chaos", "run", "--inventory", "hosts.ini", "--masters", "5"}, "does not apply"},
		{[]string{"chaos", "run", "--binary", "/does/not/exist"}, "no such file"},
		{[]string{"chaos", "run", "--workers", "12"}, "--workers"},
		{[]string{"chaos", "run", "stray"}, "no arguments"},
	} {
		code, _, errOut := runCLI(t, tt.args...)
		if code != 2 || !strings.Contains(errOut, tt.wmsg) {
			t.Errorf("synod %q: exit %d, stderr %q; want exit 2 and %q", tt.args, code, errOut, tt.wmsg)
		}
	}
}

func TestChaosPrintSchedule(t *testing.T) {
	args := []string{"chaos", "run", "--faults", "all", "--masters", "5", "--duration", "1m", "--seed", "9", "--print-schedule"}
	code, first, errOut := runCLI(t, args...)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if n := strings.Count(first, "\n"); n != 12 {
		t.Errorf("1m at 5s intervals printed %d steps:\n%s", n, first)
	}
	if _, again, _ := runCLI(t, args...); again != first {
		t.Errorf("same seed, different schedules:\n%s---\n%s", first, again)
	}
	code, help, _ := runCLI(t, "chaos", "run", "--help")
	for _, kind := range []string{"kill", "leader-kill", "pause", "partition", "split", "majority-kill", "component-kill", "restart"} {
		if code != 0 || !strings.Contains(help, "\n   "+kind+" ") && !strings.Contains(help, "  "+kind+" ") {
			t.Errorf("chaos run --help does not describe %q", kind)
		}
	}
	if strings.Contains(help, "master-arg") {
		t.Error("chaos run --help shows the hidden --master-arg")
	}
}
