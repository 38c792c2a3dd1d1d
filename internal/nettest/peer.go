//go:build linux

package nettest

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

const peerEnv = "TCPTRACE_TEST_PEER"

// PeerGCEnv, set to a duration in the environment of the test that starts
// peers, makes each peer collect garbage that often: what the runtime's
// forced collection does every two minutes, in a test's time.
const PeerGCEnv = "TCPTRACE_TEST_PEER_GC"

// IsPeer reports whether this process was started by Netns.Start. Call it
// first in TestMain: if true, call PeerMain instead of running tests.
func IsPeer() bool { return os.Getenv(peerEnv) == "1" }

// pinned keeps the connections and listeners a peer holds until it is
// killed reachable: a net.Conn or net.Listener the collector finds unused
// is closed by its finalizer, and the forced collection (every two
// minutes) would close them behind the peer's back.
var pinned []any

// PeerMain runs the peer role named by the arguments and exits:
//
//	server ADDR N CLOSE_DELAY   listen, print "ready PORT PID", accept N
//	                            connections; for each, read to EOF (the
//	                            client closes first), wait CLOSE_DELAY,
//	                            close; then close the listener
//	client ADDR N               connect N times, one at a time, closing
//	                            each at once after a 1-byte write; print
//	                            "ready 0 PID" first and "done" at the end
//	connect ADDR TIMEOUT        one connect with a timeout; prints the error
//	noaccept IP:PORT BACKLOG HOLD  listen(BACKLOG), never accept, hold
//	sink ADDR N                 listen, print "ready PORT PID", accept N
//	                            connections at once, each closed as soon
//	                            as its client closes; exit when all are
//	hold ADDR N HOLD            open N connections, print "connected",
//	                            hold them for HOLD, then exit: the kernel
//	                            closes them all at once
//	abort ADDR                  connect, write a byte, close with SO_LINGER
//	                            0 (a reset after ESTABLISHED->CLOSE)
//	selfconnect IP              bind a port and connect to it: a
//	                            simultaneous open with itself
//	forkserver ADDR HOLD        listen, accept one connection, hand it to
//	                            a child process (this binary, role holdfd)
//	                            and close the parent's copies; print
//	                            "child PID"; the child holds it for HOLD
//	tfoclient ADDR HOLD         connect with TCP Fast Open (data in the
//	                            SYN), hold HOLD, close
//	leak ADDR N [nokeepalive]   listen, accept N connections, never close
//	                            them (CLOSE_WAIT leaks); runs until killed.
//	                            nokeepalive: without Go's default TCP
//	                            keepalive (whose answered probes refresh
//	                            the socket's last-ACK time)
//	talker ADDR                 listen, accept one connection, write 100
//	                            bytes, read until EOF or error, close a
//	                            second later, exit
//	halfclose ADDR              connect, shutdown(SHUT_WR), wait for the
//	                            server's bytes, close() without reading
//	                            them (a reset from FIN_WAIT2)
//	idleclose ADDR N IDLE [shutdown]
//	                            open N connections, write a byte on each,
//	                            print "connected", stay idle IDLE, print
//	                            "closing" and close them all (each peer
//	                            gets data, then silence, then the FIN);
//	                            shutdown: shutdown(SHUT_WR) instead, and
//	                            hold them (FIN_WAIT2) until killed
//	reuseport ADDR FOR          listen with SO_REUSEPORT; for FOR, accept
//	                            connections, print "accepted RPORT" for
//	                            each, read to EOF and close; then exit
func PeerMain() {
	flag.CommandLine = flag.NewFlagSet("peer", flag.ExitOnError)
	if d, err := time.ParseDuration(os.Getenv(PeerGCEnv)); err == nil && d > 0 {
		go func() { // a test's stand-in for the forced collection
			for {
				time.Sleep(d)
				runtime.GC()
			}
		}()
	}
	args := os.Args[1:]
	if err := peer(args); err != nil {
		fmt.Fprintf(os.Stderr, "peer %v: %v\n", args, err)
		os.Exit(1)
	}
	os.Exit(0)
}

func peer(args []string) error {
	if len(args) < 2 {
		return fmt.Errorf("usage: server|client|connect ADDR ...")
	}
	switch args[0] {
	case "server":
		var n int
		var delay time.Duration
		if len(args) != 4 {
			return fmt.Errorf("server ADDR N CLOSE_DELAY")
		}
		fmt.Sscan(args[2], &n)
		delay, err := time.ParseDuration(args[3])
		if err != nil {
			return err
		}
		ln, err := listenReady(args[1])
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			if _, err := io.Copy(io.Discard, c); err != nil {
				return err
			}
			time.Sleep(delay)
			c.Close()
		}
		return ln.Close()
	case "client":
		var n int
		if len(args) != 3 {
			return fmt.Errorf("client ADDR N")
		}
		fmt.Sscan(args[2], &n)
		fmt.Printf("ready 0 %d\n", os.Getpid())
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", args[1])
			if err != nil {
				return err
			}
			if _, err := c.Write([]byte{1}); err != nil {
				return err
			}
			c.Close()
		}
		fmt.Println("done")
		return nil
	case "sink":
		var n int
		fmt.Sscan(args[2], &n)
		ln, err := listenReady(args[1])
		if err != nil {
			return err
		}
		var wg sync.WaitGroup
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
		ln.Close()
		wg.Wait()
		return nil
	case "hold":
		n, hold, err := countAndDuration(args)
		if err != nil {
			return err
		}
		conns := make([]net.Conn, 0, n)
		// Rotating loopback source addresses: thousands of connections
		// must not run out of one address's ephemeral ports.
		target, err := net.ResolveTCPAddr("tcp", args[1])
		if err != nil {
			return err
		}
		for i := 0; i < n; i++ {
			var src *net.TCPAddr
			if target.IP.IsLoopback() && target.IP.To4() != nil {
				src = &net.TCPAddr{IP: net.IPv4(127, 2, byte(i>>8), byte(i))}
			}
			c, err := net.DialTCP("tcp", src, target)
			if err != nil {
				return err
			}
			conns = append(conns, c)
		}
		fmt.Println("connected")
		time.Sleep(hold)
		// Referenced until here: a net.Conn the collector finds unused is
		// closed by its finalizer (the forced collection, every two
		// minutes, closed the bench's idle connections mid-run).
		runtime.KeepAlive(conns)
		os.Exit(0) // every socket closed by the kernel at exit, at once
		return nil
	case "idleclose":
		n, idle, err := countAndDuration(args)
		if err != nil {
			return err
		}
		var conns []net.Conn
		for i := 0; i < n; i++ {
			c, err := net.Dial("tcp", args[1])
			if err != nil {
				return err
			}
			if _, err := c.Write([]byte{1}); err != nil {
				return err
			}
			conns = append(conns, c)
		}
		fmt.Println("connected")
		time.Sleep(idle)
		fmt.Println("closing")
		shut := len(args) > 4 && args[4] == "shutdown"
		for _, c := range conns {
			if shut {
				c.(*net.TCPConn).CloseWrite()
			} else {
				c.Close()
			}
		}
		if shut {
			pinned = append(pinned, conns) // held until killed
			select {}
		}
		return nil
	case "noaccept":
		// listen(BACKLOG) and never accept: the accept queue fills.
		var backlog int
		fmt.Sscan(args[2], &backlog)
		hold, err := time.ParseDuration(args[3])
		if err != nil {
			return err
		}
		ap, err := netip.ParseAddrPort(args[1])
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
			return err
		}
		if err := syscall.Listen(fd, backlog); err != nil {
			return err
		}
		fmt.Printf("ready %d %d\n", ap.Port(), os.Getpid())
		time.Sleep(hold)
		return syscall.Close(fd)
	case "abort":
		fmt.Printf("ready 0 %d\n", os.Getpid())
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			return err
		}
		if _, err := c.Write([]byte{1}); err != nil {
			return err
		}
		if err := c.(*net.TCPConn).SetLinger(0); err != nil {
			return err
		}
		c.Close()
		fmt.Println("done")
		return nil
	case "selfconnect":
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		ip := netip.MustParseAddr(args[1]).As4()
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: ip}); err != nil {
			return err
		}
		sa, err := syscall.Getsockname(fd)
		if err != nil {
			return err
		}
		port := sa.(*syscall.SockaddrInet4).Port
		fmt.Printf("ready %d %d\n", port, os.Getpid())
		if err := syscall.Connect(fd, &syscall.SockaddrInet4{Addr: ip, Port: port}); err != nil {
			return fmt.Errorf("self-connect: %w", err)
		}
		fmt.Println("done")
		return syscall.Close(fd)
	case "forkserver":
		hold := args[2]
		ln, err := listenReady(args[1])
		if err != nil {
			return err
		}
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		f, err := c.(*net.TCPConn).File()
		if err != nil {
			return err
		}
		self, err := os.Executable()
		if err != nil {
			return err
		}
		child := exec.Command(self, "holdfd", hold)
		child.Env = append(os.Environ(), peerEnv+"=1")
		child.ExtraFiles = []*os.File{f}
		child.Stdout, child.Stderr = os.Stdout, os.Stderr
		if err := child.Start(); err != nil {
			return err
		}
		f.Close()
		c.Close()
		ln.Close()
		fmt.Printf("child %d\n", child.Process.Pid)
		return child.Wait()
	case "holdfd":
		hold, err := time.ParseDuration(args[1])
		if err != nil {
			return err
		}
		f := os.NewFile(3, "conn")
		time.Sleep(hold)
		return f.Close()
	case "tfoclient":
		hold, err := time.ParseDuration(args[2])
		if err != nil {
			return err
		}
		ap, err := netip.ParseAddrPort(args[1])
		if err != nil {
			return err
		}
		fmt.Printf("ready 0 %d\n", os.Getpid())
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		const msgFastopen = 0x20000000
		if err := syscall.Sendto(fd, []byte("hello"), msgFastopen,
			&syscall.SockaddrInet4{Addr: ap.Addr().As4(), Port: int(ap.Port())}); err != nil {
			return fmt.Errorf("sendto MSG_FASTOPEN: %w", err)
		}
		fmt.Println("sent")
		time.Sleep(hold)
		return syscall.Close(fd)
	case "leak":
		var n int
		fmt.Sscan(args[2], &n)
		ln, err := listenReady(args[1])
		if err != nil {
			return err
		}
		var conns []net.Conn
		for i := 0; i < n; i++ {
			c, err := ln.Accept()
			if err != nil {
				return err
			}
			if len(args) > 3 && args[3] == "nokeepalive" {
				if err := c.(*net.TCPConn).SetKeepAlive(false); err != nil {
					return err
				}
			}
			conns = append(conns, c)
		}
		fmt.Println("accepted")
		pinned = append(pinned, ln, conns) // leaked until killed
		select {}
	case "talker":
		ln, err := listenReady(args[1])
		if err != nil {
			return err
		}
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		c.Write(make([]byte, 100))
		io.Copy(io.Discard, c)
		time.Sleep(time.Second) // no FIN yet: the client is in FIN_WAIT2
		c.Close()
		return ln.Close()
	case "halfclose":
		fmt.Printf("ready 0 %d\n", os.Getpid())
		c, err := net.Dial("tcp", args[1])
		if err != nil {
			return err
		}
		if err := c.(*net.TCPConn).CloseWrite(); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond) // the server's bytes arrive, unread
		c.Close()
		fmt.Println("done")
		return nil
	case "reuseport":
		d, err := time.ParseDuration(args[2])
		if err != nil {
			return err
		}
		lc := net.ListenConfig{Control: func(_, _ string, c syscall.RawConn) error {
			var serr error
			err := c.Control(func(fd uintptr) {
				serr = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, 0xf /* SO_REUSEPORT */, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}}
		ln, err := lc.Listen(context.Background(), "tcp", args[1])
		if err != nil {
			return err
		}
		fmt.Printf("ready %d %d\n", ln.Addr().(*net.TCPAddr).Port, os.Getpid())
		ln.(*net.TCPListener).SetDeadline(time.Now().Add(d))
		var mu sync.Mutex
		var wg sync.WaitGroup
		for {
			c, err := ln.Accept()
			if err != nil {
				break
			}
			mu.Lock()
			fmt.Printf("accepted %d\n", c.RemoteAddr().(*net.TCPAddr).Port)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				io.Copy(io.Discard, c)
				c.Close()
			}()
		}
		wg.Wait()
		fmt.Println("done")
		return ln.Close()
	case "netnscookie":
		// The kernel's identity of this namespace (ADDR unused), as a socket reads
		// it: getsockopt(SO_NETNS_COOKIE) (Linux 5.14+).
		fmt.Printf("ready 0 %d\n", os.Getpid())
		fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM, 0)
		if err != nil {
			return err
		}
		defer syscall.Close(fd)
		const soNetnsCookie = 71
		var cookie uint64
		size := uint32(8)
		if _, _, e := syscall.Syscall6(syscall.SYS_GETSOCKOPT, uintptr(fd), syscall.SOL_SOCKET, soNetnsCookie,
			uintptr(unsafe.Pointer(&cookie)), uintptr(unsafe.Pointer(&size)), 0); e != 0 {
			return fmt.Errorf("SO_NETNS_COOKIE: %v", e)
		}
		fmt.Printf("cookie %d\n", cookie)
		return nil
	case "connect":
		timeout, err := time.ParseDuration(args[2])
		if err != nil {
			return err
		}
		fmt.Printf("ready 0 %d\n", os.Getpid())
		_, err = net.DialTimeout("tcp", args[1], timeout)
		fmt.Printf("result %v\n", err)
		return nil
	}
	return fmt.Errorf("unknown role %q", args[0])
}

// listenReady listens on addr and prints the ready line with its port.
func listenReady(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	fmt.Printf("ready %d %d\n", ln.Addr().(*net.TCPAddr).Port, os.Getpid())
	return ln, nil
}

// Main is a TestMain for packages whose tests start peers: in a peer
// process it runs the peer role, otherwise the tests.
func Main(m interface{ Run() int }) {
	if IsPeer() {
		PeerMain()
	}
	os.Exit(m.Run())
}

// countAndDuration reads a client role's N and DURATION (args[2], args[3])
// and prints its ready line.
func countAndDuration(args []string) (int, time.Duration, error) {
	if len(args) < 4 {
		return 0, 0, fmt.Errorf("want %s ADDR N DURATION", args[0])
	}
	var n int
	fmt.Sscan(args[2], &n)
	d, err := time.ParseDuration(args[3])
	if err != nil {
		return 0, 0, err
	}
	fmt.Printf("ready 0 %d\n", os.Getpid())
	return n, d, nil
}
