// Package churn is a TCP connection-churn load generator: many concurrent
// clients each doing connect, write, read, close against a local server,
// as fast as they can. It is the load of tcptrace-bpf's benchmarks: every
// connection makes exactly 10 state transitions (5 on each end).
package churn

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// Server accepts connections and, for each, reads one byte, answers one
// byte, then waits for the client to close and closes too.
type Server struct {
	ln net.Listener
	wg sync.WaitGroup
}

// Listen starts a server on addr (e.g. "127.0.0.1:0").
func Listen(addr string) (*Server, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	s := &Server{ln: ln}
	s.wg.Add(1)
	go s.serve()
	return s, nil
}

// Port returns the port the server listens on.
func (s *Server) Port() int { return s.ln.Addr().(*net.TCPAddr).Port }

func (s *Server) serve() {
	defer s.wg.Done()
	for {
		c, err := s.ln.Accept()
		if err != nil {
			return
		}
		go func() {
			defer c.Close()
			var b [1]byte
			if _, err := io.ReadFull(c, b[:]); err != nil {
				return
			}
			if _, err := c.Write(b[:]); err != nil {
				return
			}
			_, _ = io.Copy(io.Discard, c)
		}()
	}
}

// Close stops accepting.
func (s *Server) Close() error {
	err := s.ln.Close()
	s.wg.Wait()
	return err
}

// Result is one run's outcome.
type Result struct {
	Conns    int
	Errors   int
	Duration time.Duration
}

// Rate is completed connections per second.
func (r Result) Rate() float64 { return float64(r.Conns) / r.Duration.Seconds() }

// Run makes n connections to port on 127.0.0.1 from concurrency clients.
// Client sockets are bound to rotating 127.0.0.0/8 source addresses, so
// the ephemeral ports of one address are not exhausted by TIME_WAIT.
func Run(ctx context.Context, port, n, concurrency int) (Result, error) {
	return run(ctx, port, n, concurrency, 0)
}

// RunAt makes rate connections a second for d, as Run does, each started
// no sooner than its turn (a load of a known rate, not as fast as the
// host can).
func RunAt(ctx context.Context, port, rate int, d time.Duration, concurrency int) (Result, error) {
	if rate <= 0 {
		return Result{}, errors.New("churn: the rate must be positive")
	}
	return run(ctx, port, int(float64(rate)*d.Seconds()), concurrency, time.Second/time.Duration(rate))
}

// run makes n connections; with every > 0, connection i starts no sooner
// than i*every after the start.
func run(ctx context.Context, port, n, concurrency int, every time.Duration) (Result, error) {
	if n <= 0 || concurrency <= 0 {
		return Result{}, errors.New("churn: connections and concurrency must be positive")
	}
	var next, errs atomic.Int64
	target := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: port}
	var wg sync.WaitGroup
	start := time.Now()
	for w := 0; w < concurrency; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			var b [1]byte
			for i := next.Add(1); i <= int64(n) && ctx.Err() == nil; i = next.Add(1) {
				if every > 0 {
					if wait := time.Until(start.Add(time.Duration(i) * every)); wait > 0 {
						time.Sleep(wait)
					}
				}
				src := &net.TCPAddr{IP: net.IPv4(127, 1, byte(i>>8), byte(i))}
				c, err := net.DialTCP("tcp", src, target)
				if err != nil {
					errs.Add(1)
					continue
				}
				if _, err := c.Write(b[:]); err != nil {
					errs.Add(1)
				} else if _, err := io.ReadFull(c, b[:]); err != nil {
					errs.Add(1)
				}
				c.Close()
			}
		}(w)
	}
	wg.Wait()
	r := Result{Conns: n - int(errs.Load()), Errors: int(errs.Load()), Duration: time.Since(start)}
	if r.Errors > n/100 {
		return r, fmt.Errorf("churn: %d of %d connections failed", r.Errors, n)
	}
	return r, ctx.Err()
}
