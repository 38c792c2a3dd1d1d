//go:build linux

package top

import (
	"bytes"
	"context"
	"errors"
	"io"
	"strings"
	"sync"
	"time"

	tea "github.com/charmbracelet/bubbletea"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/config"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/pipeline"
	"github.com/tcptrace-bpf/tcptrace-bpf/internal/tracer"
)

// Run shows the live view on the terminal (in, out) until q or Ctrl-C,
// ctx ends, or the trace does. cfg is the tracer's configuration; the
// view needs every record and a socket walk a second, so Emit and
// Interval are set here. The tracer's status lines are shown in the
// footer and written to stderr once the terminal is restored; status,
// when not nil, also gets each as it comes (demo waits for the tracing
// line).
func Run(ctx context.Context, cfg config.Config, in io.Reader, out io.Writer, stderr io.Writer, status func(line string)) error {
	cfg.Emit, cfg.Interval = config.EmitAll, time.Second
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	logs := &statusLines{tap: status}
	var model *Model // set once the tracer starts; read after it returns
	ui := &program{logs: logs}
	p := tea.NewProgram(ui, tea.WithAltScreen(), tea.WithInput(in), tea.WithOutput(out), tea.WithContext(ctx))
	traced := make(chan error, 1)
	go func() {
		err := tracer.RunWith(ctx, cfg, func(clock event.Clock) pipeline.Sink {
			m := New(clock, time.Now())
			m.Filters, m.Netns = cfg.Filters(), cfg.Netns
			model = m
			logs.attach(m)
			p.Send(started{m})
			return m
		}, logs)
		traced <- err
		p.Send(ended{err})
	}()
	_, uiErr := p.Run()
	cancel()
	err := <-traced // the tracer detaches and drains before it returns
	logs.writeTo(stderr)
	if model != nil {
		// The screen is gone: leave what it said, in short.
		io.WriteString(stderr, Summary(model.Snapshot(time.Now(), Options{})))
	}
	if uiErr != nil && !errors.Is(uiErr, tea.ErrProgramKilled) && !errors.Is(uiErr, tea.ErrInterrupted) && !errors.Is(uiErr, context.Canceled) {
		return uiErr
	}
	return err
}

// started: the probes are loaded and the model exists.
type started struct{ m *Model }

// ended: the tracer returned.
type ended struct{ err error }

type tick time.Time

// program is the bubbletea model: the data model, the window size and
// the keyboard's choices.
type program struct {
	m             *Model
	logs          *statusLines
	opts          Options
	width, height int
	view          *View
	done          bool
}

func (p *program) Init() tea.Cmd { return every() }

func every() tea.Cmd {
	return tea.Tick(time.Second, func(t time.Time) tea.Msg { return tick(t) })
}

func (p *program) Update(msg tea.Msg) (tea.Model, tea.Cmd) {
	switch msg := msg.(type) {
	case started:
		p.m = msg.m
	case ended:
		p.done = true
		return p, tea.Quit
	case tea.WindowSizeMsg:
		p.width, p.height = msg.Width, msg.Height
	case tea.KeyMsg:
		switch msg.String() {
		case "q", "ctrl+c", "esc":
			p.done = true
			return p, tea.Quit
		case "s":
			p.opts.Sort = p.opts.Sort.Next()
		case "f":
			p.opts.Filter = NextFilter(p.opts.Filter)
		}
	case tick:
		p.refresh(time.Time(msg))
		return p, every()
	}
	p.refresh(time.Now())
	return p, nil
}

func (p *program) refresh(now time.Time) {
	if p.m != nil {
		p.view = p.m.Snapshot(now, p.opts)
	}
}

func (p *program) View() string {
	if p.done {
		return ""
	}
	if p.view == nil {
		return "tcptrace-bpf top: loading the BPF programs...\n" + p.logs.last()
	}
	return Render(p.view, cmpOr(p.width, 120), cmpOr(p.height, 40))
}

func cmpOr(v, d int) int {
	if v <= 0 {
		return d
	}
	return v
}

// statusLines is the tracer's stderr while the screen is taken: each
// line goes to the model's footer, and all are written out at the end.
type statusLines struct {
	mu    sync.Mutex
	buf   bytes.Buffer
	lines []string
	m     *Model
	tap   func(string)
}

func (s *statusLines) Write(b []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.buf.Write(b)
	for {
		line, err := s.buf.ReadString('\n')
		if err != nil {
			s.buf.WriteString(line) // incomplete: wait for the rest
			break
		}
		line = strings.TrimSuffix(line, "\n")
		s.lines = append(s.lines, line)
		if s.m != nil {
			s.m.Logf("%s", line)
		}
		if s.tap != nil {
			s.tap(line)
		}
	}
	return len(b), nil
}

func (s *statusLines) attach(m *Model) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m = m
	for _, l := range s.lines {
		m.Logf("%s", l)
	}
}

func (s *statusLines) last() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.lines) == 0 {
		return ""
	}
	return s.lines[len(s.lines)-1]
}

func (s *statusLines) writeTo(w io.Writer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, l := range s.lines {
		io.WriteString(w, l+"\n")
	}
	if s.buf.Len() > 0 {
		io.WriteString(w, s.buf.String()+"\n")
	}
}
