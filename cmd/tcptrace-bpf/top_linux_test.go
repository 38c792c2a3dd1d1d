//go:build linux

package main

import (
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/creack/pty"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/nettest"
)

// ansi matches the escape sequences a terminal program writes.
var ansi = regexp.MustCompile(`\x1b(\[[0-9;?]*[ -/]*[@-~]|\][^\x07]*\x07|[()][0-9A-B]|[=>])`)

// TestTopShowsALeak runs the built binary's top under a pseudo-terminal,
// leaks CLOSE_WAIT sockets in a namespace, and reads the screen: the
// leaking process must be ranked with its three sockets and appear as
// the owner of stuck connections; the keys switch the filter and the
// sort; q quits with exit 0 and leaves the alternate screen.
func TestTopShowsALeak(t *testing.T) {
	nettest.RequirePrivileges(t)
	ns := nettest.NewNetns(t)
	cmd := exec.Command(binary(t), "top", "--netns", fmt.Sprint(ns.Inode), "--stuck", "CLOSE_WAIT=2s")
	tty, err := pty.StartWithSize(cmd, &pty.Winsize{Rows: 50, Cols: 140})
	if err != nil {
		t.Fatal(err)
	}
	defer tty.Close()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	var screen lockedBuffer
	go io.Copy(&screen, tty)
	text := func() string { return ansi.ReplaceAllString(screen.String(), "") }
	waitFor := func(what string, re *regexp.Regexp) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for !re.MatchString(text()) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s on the screen within 20 s; it shows:\n%s", what, text())
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("socket table", regexp.MustCompile(`SOCKETS +NOW`))

	leak := ns.Start(t, "leak", "127.0.0.1:0", "3")
	c := ns.Start(t, "client", fmt.Sprintf("127.0.0.1:%d", leak.Port), "3")
	c.Line()
	c.Wait()
	if l := leak.Line(); l != "accepted" {
		t.Fatalf("leak: %q", l)
	}
	// PROCESS row: the owner, 3 in CLOSE_WAIT, none in SYN_SENT.
	waitFor("leaking process ranked", regexp.MustCompile(fmt.Sprintf(`%d/\S+ +3 +- `, leak.PID)))
	waitFor("CLOSE_WAIT count", regexp.MustCompile(`CLOSE_WAIT +3 `))
	// STUCK row: state, then the owner.
	waitFor("stuck CLOSE_WAIT with its owner", regexp.MustCompile(fmt.Sprintf(`CLOSE_WAIT +%d/\S+ +127\.0\.0\.1:%d`, leak.PID, leak.Port)))

	tty.WriteString("f")
	waitFor("state filter", regexp.MustCompile(`state: CLOSE_WAIT`))
	tty.WriteString("s")
	waitFor("sort by age", regexp.MustCompile(`sort: age`))
	tty.WriteString("q")
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("top exited with %v; screen:\n%s", err, text())
		}
	case <-time.After(10 * time.Second):
		t.Fatal("top did not quit within 10 s of q")
	}
	time.Sleep(100 * time.Millisecond) // the copy goroutine reads the rest
	raw := screen.String()
	if !strings.Contains(raw, "\x1b[?1049l") {
		t.Error("the alternate screen was not left: the terminal is not restored")
	}
	if !strings.Contains(text(), "tcptrace-bpf: done:") {
		t.Errorf("the tracer's status lines were not written after the view; output:\n%s", text())
	}
	if after := text()[strings.LastIndex(text(), "tcptrace-bpf: tracing"):]; strings.Contains(after, "emit ") || !strings.Contains(after, "records to the live view") {
		t.Errorf("the tracing line left on the terminal claims an output top does not write:\n%s", after)
	}
}

// TestTopAt80x24 runs top in tmux on an 80x24 terminal with a CLOSE_WAIT
// leak, and reads the screen as tmux holds it: the stuck connections and
// the process holding them are on it, the header names the namespace and
// the filters, and on exit a short summary is left on the terminal.
func TestTopAt80x24(t *testing.T) {
	nettest.RequirePrivileges(t)
	if _, err := exec.LookPath("tmux"); err != nil {
		t.Skip("tmux not installed")
	}
	ns := nettest.NewNetns(t)
	sock := filepath.Join(t.TempDir(), "tmux")
	tmux := func(args ...string) string {
		out, err := exec.Command("tmux", append([]string{"-S", sock}, args...)...).CombinedOutput()
		if err != nil {
			t.Fatalf("tmux %v: %v: %s", args, err, out)
		}
		return string(out)
	}
	cmdline := fmt.Sprintf("%s top --netns %d --stuck CLOSE_WAIT=1s", binary(t), ns.Inode)
	tmux("new-session", "-d", "-s", "top", "-x", "80", "-y", "24", "sh", "-c", cmdline+"; echo EXITED $?; sleep 60")
	t.Cleanup(func() { exec.Command("tmux", "-S", sock, "kill-server").Run() })
	screen := func() string { return tmux("capture-pane", "-p", "-t", "top") }
	waitFor := func(what string, re *regexp.Regexp) string {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for {
			s := screen()
			if re.MatchString(s) {
				return s
			}
			if time.Now().After(deadline) {
				t.Fatalf("no %s on the 80x24 screen within 20 s; it shows:\n%s", what, s)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	waitFor("header", regexp.MustCompile(fmt.Sprintf(`netns %d; filters: netns %d`, ns.Inode, ns.Inode)))
	leak := ns.LeakCloseWait(t, 3)
	// One screen with both: the stuck rows, then the process ranked.
	s := waitFor("stuck CLOSE_WAIT rows and the leaking process", regexp.MustCompile(fmt.Sprintf(
		`(?s)STUCK .*CLOSE_WAIT +%d/\S+ +127\.0\.0\.1:%d.*PROCESS .*\n%d/\S+ +3 +- `, leak.PID, leak.Port, leak.PID)))
	if lines := strings.Split(strings.TrimRight(s, "\n"), "\n"); len(lines) > 24 {
		t.Errorf("%d lines on a 24-line screen", len(lines))
	}
	if os.Getenv("TCPTRACE_ARTIFACTS") != "" {
		_ = os.WriteFile(filepath.Join(os.Getenv("TCPTRACE_ARTIFACTS"), "top-80x24.txt"), []byte(s), 0o644)
	}
	tmux("send-keys", "-t", "top", "q")
	after := waitFor("exit", regexp.MustCompile(`EXITED \d+`))
	for _, want := range []string{"EXITED 0", fmt.Sprintf("over netns %d", ns.Inode), "CLOSE_WAIT=3",
		fmt.Sprintf("still stuck: 3 CLOSE_WAIT by %d/", leak.PID), "lost 0 transitions"} {
		if !strings.Contains(after, want) {
			t.Errorf("the terminal after top lacks %q:\n%s", want, after)
		}
	}
}
