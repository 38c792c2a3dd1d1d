//go:build linux

package demo

import (
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"time"
)

// RoleMain runs one demo role (args after RoleArg) inside the namespace
// and exits; it prints "ready" once its sockets are in place.
//
//	leaky   accepts on :9003 and never closes: its clients' closes leave
//	        CLOSE_WAIT sockets, owned by "demo-leaky"
//	server  accepts on :9002 and :9004, reads each connection to EOF,
//	        then closes ("demo-server")
//	client  one connect to :9001 (SYNs dropped: SYN_SENT until the end),
//	        two to :9002 (the final ACK lost: half-open on the server),
//	        three to :9003 closed at once (CLOSE_WAIT on the server), and
//	        every 500 ms one to :9004 closed first (TIME_WAIT) ("demo-client")
func RoleMain(args []string) {
	if len(args) != 1 {
		fmt.Fprintln(os.Stderr, "demo role: want leaky, server or client")
		os.Exit(2)
	}
	setComm("demo-" + args[0])
	go func() {
		// stdin closes when the demo ends, however it ends.
		io.Copy(io.Discard, os.Stdin)
		os.Exit(0)
	}()
	var err error
	switch args[0] {
	case "leaky":
		err = leaky()
	case "server":
		err = server()
	case "client":
		err = client()
	default:
		err = fmt.Errorf("unknown role %q", args[0])
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "tcptrace-bpf demo %s: %v\n", args[0], err)
		os.Exit(1)
	}
	os.Exit(0)
}

// setComm names every thread, so the tracer's owner column tells the
// roles apart (threads made later inherit the name).
func setComm(name string) {
	tasks, _ := filepath.Glob("/proc/self/task/*/comm")
	for _, t := range tasks {
		_ = os.WriteFile(t, []byte(name), 0)
	}
}

func addr(port int) string { return fmt.Sprintf("127.0.0.1:%d", port) }

func leaky() error {
	ln, err := net.Listen("tcp", addr(portLeak))
	if err != nil {
		return err
	}
	fmt.Println("ready")
	var held []net.Conn
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		held = append(held, c) // never closed: the leak
	}
}

func server() error {
	var lns []net.Listener
	for _, p := range []int{portAckLoss, portEcho} {
		ln, err := net.Listen("tcp", addr(p))
		if err != nil {
			return err
		}
		lns = append(lns, ln)
	}
	fmt.Println("ready")
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					errs <- err
					return
				}
				go func() {
					io.Copy(io.Discard, c)
					c.Close()
				}()
			}
		}()
	}
	return <-errs
}

func client() error {
	fmt.Println("ready")
	var held []net.Conn
	go net.DialTimeout("tcp", addr(portSynDrop), time.Minute) // hangs in SYN_SENT
	for range 2 {
		// Established for the client at once; the server's side waits
		// for an ACK that is dropped.
		c, err := net.Dial("tcp", addr(portAckLoss))
		if err != nil {
			return err
		}
		held = append(held, c)
	}
	for range 3 {
		c, err := net.Dial("tcp", addr(portLeak))
		if err != nil {
			return err
		}
		c.Close()
	}
	for {
		c, err := net.Dial("tcp", addr(portEcho))
		if err != nil {
			return err
		}
		c.Write([]byte("hello\n"))
		c.Close()
		time.Sleep(500 * time.Millisecond)
		// The ACK-loss connections stay open for the demo's life: a
		// net.Conn the collector finds unused is closed by its
		// finalizer (the forced collection, every two minutes).
		runtime.KeepAlive(held)
	}
}
