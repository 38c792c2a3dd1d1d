// Package record is the NDJSON schema (docs/ndjson.md) as Go types: one
// struct per record type, whose fields, in order, with their omission
// rules, are the record's. encoding/json on these types writes a line
// byte for byte as the tracer's fast encoder (internal/output) does, and
// the tests of that encoder prove it on golden lines covering every
// field. Everything that reads NDJSON (the recording reader behind
// analyze and report, the test harnesses) decodes into these types.
//
// Adding a field: add it here and to the encoder, and make the golden
// records show it; the tests fail until all three agree.
//
// A pointer field, or a field marked omitempty/omitzero, is one the
// encoder omits when unknown; any other is always present.
package record

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/event"
)

// The record types, the value of every record's "type".
const (
	TypeTransition = "transition"
	TypeConnection = "connection"
	TypeHistogram  = "histogram"
	TypeLost       = "lost"
	TypeStates     = "states"
	TypeListener   = "listener"
	TypeStuck      = "stuck"
	TypeStats      = "stats"
	TypeIncident   = "incident"
	TypeProgress   = "progress"
	TypeCleared    = "cleared"
	TypePile       = "pile"
)

// Stream names a record among every record ever written: Run is the
// writing run's identity (128 random bits in hex, drawn when it starts),
// Seq counts the records that run wrote, from 1, across SIGHUP reopens.
// A log pipeline that ships a record twice (an agent killed between
// sending and saving its read offset) gives a backend (run, seq) to drop
// the copy by; a gap in seq is a record lost on the way. Every record
// type has it, right after "type".
type Stream struct {
	Run string `json:"run"`
	Seq uint64 `json:"seq"`
}

// NewRun returns a new run identity for Stream.Run: 128 random bits as 32
// hex digits.
func NewRun() string {
	var b [16]byte
	rand.Read(b[:]) // never fails (crypto/rand)
	return hex.EncodeToString(b[:])
}

// Endpoints are a socket's two ends, as the kernel reports them.
type Endpoints struct {
	Family string `json:"family"` // event.Family.String
	Saddr  string `json:"saddr"`
	Sport  uint16 `json:"sport"`
	Daddr  string `json:"daddr"`
	Dport  uint16 `json:"dport"`
	// Ifindex: the interface the socket is bound to, in its namespace
	// (an IPv6 link-local address's scope, SO_BINDTODEVICE); omitted
	// when none. ss shows it as %ifname after the local address.
	Ifindex uint32 `json:"ifindex,omitempty"`
}

// Owner is the process that owns a socket. Records hold a *Owner: nil
// when the owner is unknown, and then neither field is written.
type Owner struct {
	PID  uint32 `json:"pid"`
	Comm string `json:"comm"`
}

// Identity is who an owner is beyond its process (with --cgroup-fields):
// its cgroup v2 path as /proc/PID/cgroup shows it, the container ID in
// that path and the innermost systemd unit; each omitted when unknown.
type Identity struct {
	Cgroup      string `json:"cgroup,omitempty"`
	ContainerID string `json:"container_id,omitempty"`
	Unit        string `json:"unit,omitempty"`
}

// Ending is how a socket ended. TimeWait is present exactly when the
// kernel's close fields were read (on ->CLOSE); a connection may carry a
// Reset without them.
type Ending struct {
	TimeWait         *bool  `json:"time_wait,omitempty"`          // event.TW.TimeWait
	FinWait2TimeWait bool   `json:"fin_wait2_timewait,omitempty"` // event.TW.FinWait2
	Reset            string `json:"reset,omitempty"`              // event.ResetName
	Error            string `json:"error,omitempty"`              // event.ErrnoName
}

// Transition is one state change.
type Transition struct {
	Type string `json:"type"`
	Stream
	TS     time.Time `json:"ts"`
	Cookie uint64    `json:"cookie"`
	Netns  uint32    `json:"netns"`
	// NetnsCookie: the namespace's identity for the host's uptime (the
	// kernel's net_cookie); omitted when unknown. Netns, its inode, is reused.
	NetnsCookie uint64 `json:"netns_cookie,omitempty"`
	Endpoints
	Old     string  `json:"old"`
	New     string  `json:"new"`
	DwellNs *uint64 `json:"dwell_ns,omitempty"`
	// Gap: the transition into Old was not seen (lost); DwellNs runs from
	// the last transition seen and is no stay of Old's.
	Gap bool `json:"gap,omitempty"`
	*Owner
	OwnerFrom       string `json:"owner_from,omitempty"` // OwnerFromListener
	CookieSynthetic bool   `json:"cookie_synthetic,omitempty"`
	// Accepted: SYN_RECV->ESTABLISHED of an accepted socket, whose
	// SYN_RECV stay is the handshake (HandshakeNs, absent when unknown).
	Accepted    bool    `json:"accepted,omitempty"`
	HandshakeNs *uint64 `json:"handshake_ns,omitempty"`
	// SynCookie: that handshake was completed by a SYN cookie (its time
	// is unknown: HandshakeNs absent).
	SynCookie bool `json:"syncookie,omitempty"`
	Ending
}

// OwnerFromListener is Transition.OwnerFrom on an accepted socket's first
// transition: the owner was inherited from the listener.
const OwnerFromListener = "listener"

// Span is one state of a connection.
type Span struct {
	State    string    `json:"state"`
	TS       time.Time `json:"ts,omitzero"`
	DwellNs  *uint64   `json:"dwell_ns,omitempty"`
	Unseen   bool      `json:"unseen,omitempty"`
	Inferred bool      `json:"inferred,omitempty"`
	// AgeSource: the state began before tracing; TS is the kernel's
	// lower bound of its start (the state began at or before it) and
	// DwellNs a lower bound, both from this kernel field
	// (event.AgeSource.String).
	AgeSource string `json:"age_source,omitempty"`
}

// Connection is one socket's timeline.
type Connection struct {
	Type string `json:"type"`
	Stream
	Cookie uint64 `json:"cookie"`
	Netns  uint32 `json:"netns"`
	// NetnsCookie: the namespace's identity for the host's uptime (the
	// kernel's net_cookie); omitted when unknown. Netns, its inode, is reused.
	NetnsCookie uint64 `json:"netns_cookie,omitempty"`
	Endpoints
	*Owner
	Identity
	Start          time.Time `json:"start,omitzero"`
	End            time.Time `json:"end"`
	DurationNs     *uint64   `json:"duration_ns,omitempty"`
	Open           bool      `json:"open"`
	Partial        bool      `json:"partial"`
	Evicted        bool      `json:"evicted,omitempty"`
	Retransmits    uint64    `json:"retransmits"`
	SynRetransmits uint64    `json:"syn_retransmits"`
	Ending
	// Read at CLOSE: present with Ending.TimeWait.
	BytesAcked    *uint64 `json:"bytes_acked,omitempty"`
	BytesReceived *uint64 `json:"bytes_received,omitempty"`
	SRTTMicros    *uint64 `json:"srtt_us,omitempty"`
	TotalRetrans  *uint64 `json:"total_retrans,omitempty"`
	// Accepted sockets.
	HandshakeNs       *uint64 `json:"handshake_ns,omitempty"`
	SynAckRetransmits *uint64 `json:"synack_retransmits,omitempty"`
	SynCookie         bool    `json:"syncookie,omitempty"`
	States            []Span  `json:"states"`
}

// Bucket is one non-empty histogram bucket.
type Bucket struct {
	GeNs  uint64 `json:"ge_ns"`
	LeNs  uint64 `json:"le_ns"`
	Count uint64 `json:"count"`
}

// Histogram is one state's dwell times, cumulative since Since.
type Histogram struct {
	Type string `json:"type"`
	Stream
	TS    time.Time `json:"ts"`
	Since time.Time `json:"since"`
	State string    `json:"state"`
	Count uint64    `json:"count"`
	SumNs uint64    `json:"sum_ns"`
	MinNs uint64    `json:"min_ns"`
	MaxNs uint64    `json:"max_ns"`
	P50Ns uint64    `json:"p50_ns"`
	P90Ns uint64    `json:"p90_ns"`
	P99Ns uint64    `json:"p99_ns"`
	// Untimed: stays of the state that ended without a known time, not
	// in the figures above; UntimedReasons says why, when there are any.
	Untimed        uint64          `json:"untimed"`
	UntimedReasons *UntimedReasons `json:"untimed_reasons,omitempty"`
	// Evictions (histogram-only mode): sockets evicted from the
	// kernel's full slot table while in the state.
	Evictions uint64   `json:"evictions,omitempty"`
	Buckets   []Bucket `json:"buckets"`
}

// UntimedReasons splits a histogram's untimed stays by reason
// (event.UntimedReason).
type UntimedReasons struct {
	NoStart   uint64 `json:"no_start"`
	Gap       uint64 `json:"gap"`
	SynCookie uint64 `json:"syncookie"`
}

// Lost counts what never reached the tracer.
type Lost struct {
	Type string `json:"type"`
	Stream
	TS           time.Time `json:"ts"`
	Count        uint64    `json:"count"`
	RingbufFull  uint64    `json:"ringbuf_full"`
	Recursion    uint64    `json:"recursion"`
	DecodeErrors uint64    `json:"decode_errors"`
	Unread       uint64    `json:"unread"`
	Unsent       uint64    `json:"unsent"`
	Inferred     uint64    `json:"inferred"`
	Total        uint64    `json:"total"`
	// RecursionHostWide: on a filtered run, recursion counts the whole
	// host's skipped transitions, which may concern other sockets.
	RecursionHostWide bool `json:"recursion_host_wide,omitempty"`
}

// States is the live tally of sockets per state.
type States struct {
	Type string `json:"type"`
	Stream
	TS     time.Time   `json:"ts"`
	Counts StateCounts `json:"counts"`
	// Namespaces: how many network namespaces the counts span (those
	// with a counted socket); Netns: that namespace when it is one.
	// Absent in recordings made before they were written.
	Namespaces *uint32 `json:"namespaces,omitempty"`
	Netns      *uint32 `json:"netns,omitempty"`
}

// StateCounts are sockets per state, indexed by event.State. In JSON an
// object of the non-zero counts, keyed by state name, in state order.
type StateCounts [event.NumStates]uint64

// MarshalJSON writes the non-zero counts in state order.
func (c StateCounts) MarshalJSON() ([]byte, error) {
	b := []byte{'{'}
	for st, n := range c {
		if n == 0 {
			continue
		}
		if len(b) > 1 {
			b = append(b, ',')
		}
		b = fmt.Appendf(b, "%q:%d", event.State(st), n)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads counts keyed by state name; an unknown state is an
// error.
func (c *StateCounts) UnmarshalJSON(b []byte) error {
	var m map[string]uint64
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	*c = StateCounts{}
	for name, n := range m {
		st, err := event.ParseState(name)
		if err != nil {
			return err
		}
		c[st] = n
	}
	return nil
}

// Listener is one listening socket's queues.
type Listener struct {
	Type string `json:"type"`
	Stream
	TS    time.Time `json:"ts"`
	Netns uint32    `json:"netns"`
	// NetnsCookie: the namespace's identity for the host's uptime (the
	// kernel's net_cookie); omitted when unknown. Netns, its inode, is reused.
	NetnsCookie uint64 `json:"netns_cookie,omitempty"`
	Family      string `json:"family"`
	Saddr       string `json:"saddr"`
	Sport       uint16 `json:"sport"`
	// Ifindex: as Endpoints.Ifindex.
	Ifindex uint32 `json:"ifindex,omitempty"`
	*Owner
	AcceptQueue       uint64 `json:"accept_queue"`
	AcceptQueueMax    uint64 `json:"accept_queue_max"`
	HalfOpen          uint64 `json:"half_open"`
	SynAckRetransmits uint64 `json:"synack_retransmits"`
	Drops             uint64 `json:"drops"`
	SynCookies        uint64 `json:"syncookies"`
	// SynCookiesSent: whether it answered SYNs with cookies since the
	// previous listener record; absent on a listener's first.
	SynCookiesSent *bool `json:"syncookies_sent,omitempty"`
}

// Stuck is a connection held in a state past its limit.
type Stuck struct {
	Type string `json:"type"`
	Stream
	TS         time.Time `json:"ts"`
	State      string    `json:"state"`
	AgeNs      uint64    `json:"age_ns"`
	AgeAtLeast bool      `json:"age_at_least"`
	// AgeSource: where a lower-bound age comes from (event.AgeSource).
	AgeSource string `json:"age_source,omitempty"`
	Cookie    uint64 `json:"cookie"`
	Netns     uint32 `json:"netns"`
	// NetnsCookie: the namespace's identity for the host's uptime (the
	// kernel's net_cookie); omitted when unknown. Netns, its inode, is reused.
	NetnsCookie uint64 `json:"netns_cookie,omitempty"`
	Endpoints
	*Owner   // who holds the socket now when looked up (Held), else as traced
	Identity // of that owner
	// Held is present when the holders were looked up: false when no
	// process holds the socket (an orphan, or not accept()ed yet).
	Held *bool `json:"held,omitempty"`
	// Holders: every process holding it, when more than one.
	Holders []Owner `json:"holders,omitempty"`
	// The traced owner (the creator) when it differs from Owner.
	CreatorPID  *uint32 `json:"creator_pid,omitempty"`
	CreatorComm string  `json:"creator_comm,omitempty"`
	// HalfOpen > 0: a listener's half-open handshakes older than the
	// limit; the endpoints and owner are the listener's.
	HalfOpen uint32 `json:"half_open,omitempty"`
	// Limits: the settings of the socket's namespace that bound this
	// pile (the next question after "what is stuck").
	Limits *Limits `json:"limits,omitempty"`
}

// Limits are the kernel's settings that bound a pile, read in the
// socket's own network namespace (/proc/sys/net there), each present
// when it bears on the record: for half-open handshakes the listener's
// backlog, somaxconn, tcp_max_syn_backlog and tcp_syncookies; for
// FIN_WAIT2 tcp_fin_timeout (seconds); for TIME_WAIT toward one
// destination ip_local_port_range and tcp_tw_reuse.
type Limits struct {
	ListenBacklog    *uint32    `json:"listen_backlog,omitempty"`
	Somaxconn        *uint32    `json:"somaxconn,omitempty"`
	TCPMaxSynBacklog *uint32    `json:"tcp_max_syn_backlog,omitempty"`
	TCPSyncookies    *uint32    `json:"tcp_syncookies,omitempty"`
	TCPFinTimeout    *uint32    `json:"tcp_fin_timeout,omitempty"`
	LocalPortRange   *[2]uint32 `json:"ip_local_port_range,omitempty"`
	TCPTwReuse       *uint32    `json:"tcp_tw_reuse,omitempty"`
}

// Progress is an open connection's state now (--progress): written
// every interval for each connection at least that old, idle or not.
type Progress struct {
	Type string `json:"type"`
	Stream
	TS     time.Time `json:"ts"`
	Cookie uint64    `json:"cookie"`
	Netns  uint32    `json:"netns"`
	Endpoints
	*Owner
	State string `json:"state"`
	// Start: when the connection began, when the tracer saw it.
	Start time.Time `json:"start,omitzero"`
	// AgeNs: since Start, else the lower bound of StateAgeNs.
	AgeNs      uint64 `json:"age_ns"`
	StateAgeNs uint64 `json:"state_age_ns"`
	// AgeAtLeast: both ages are lower bounds, from AgeSource.
	AgeAtLeast bool   `json:"age_at_least"`
	AgeSource  string `json:"age_source,omitempty"`
	// The kernel's figures now (tcp_sock).
	BytesAcked    uint64 `json:"bytes_acked"`
	BytesReceived uint64 `json:"bytes_received"`
	SRTTMicros    uint64 `json:"srtt_us"`
	TotalRetrans  uint64 `json:"total_retrans"`
}

// Pile is many sockets in one state toward one destination, past the
// share of the namespace's local ports that threatens new connections
// there (TIME_WAIT): the source address is unspecified.
type Pile struct {
	Type string `json:"type"`
	Stream
	TS    time.Time `json:"ts"`
	State string    `json:"state"`
	Netns uint32    `json:"netns"`
	Endpoints
	Count uint64 `json:"count"`
	// OldestNs: the oldest socket's age, a lower bound (AgeSource).
	OldestNs  uint64  `json:"oldest_ns"`
	AgeSource string  `json:"age_source,omitempty"`
	Limits    *Limits `json:"limits,omitempty"`
}

// Cleared says a stuck pile (a listener's half-open handshakes) or a
// pile record's sockets are gone: the same endpoints and state as the
// record it ends.
type Cleared struct {
	Type string `json:"type"`
	Stream
	TS     time.Time `json:"ts"`
	State  string    `json:"state"`
	Cookie uint64    `json:"cookie"`
	Netns  uint32    `json:"netns"`
	Endpoints
	*Owner
	// Since: when the record it ends was written.
	Since time.Time `json:"since"`
}

// Incident is one group of troubled sockets (the incident command): a
// pile that appeared, changed, or cleared. Which fields name the group
// depends on the state: CLOSE_WAIT, FIN_WAIT2 and LAST_ACK by owner and
// Local; SYN_RECV (half-open handshakes) by listener (Local, owner) and
// RemotePrefix; SYN_SENT by Remote; TIME_WAIT by RemotePrefix, the
// destination (no owner: a timewait socket has none).
type Incident struct {
	Type string `json:"type"`
	Stream
	TS    time.Time `json:"ts"`
	State string    `json:"state"`
	Netns uint32    `json:"netns"`
	// Count: sockets in the group now (at Cleared, the last count).
	Count uint64 `json:"count"`
	// OldestNs: the oldest socket's time in State; absent when unknown
	// (TIME_WAIT). OldestAtLeast: a lower bound (the socket was older
	// than the trace).
	OldestNs      *uint64 `json:"oldest_ns,omitempty"`
	OldestAtLeast bool    `json:"oldest_at_least,omitempty"`
	*Owner
	Local        string `json:"local,omitempty"`         // ADDR:PORT
	Remote       string `json:"remote,omitempty"`        // ADDR:PORT
	RemotePrefix string `json:"remote_prefix,omitempty"` // ADDR/BITS
	// LimitNs: the stuck limit the sockets outstayed; PileLimit: the
	// count a pile passed (--pile). One of the two.
	LimitNs   *uint64 `json:"limit_ns,omitempty"`
	PileLimit *uint64 `json:"pile_limit,omitempty"`
	// Cleared: the group is gone (no socket of it is left past its limit).
	Cleared bool `json:"cleared"`
}

// BPFStats are the kernel's run counts of the programs (with
// kernel.bpf_stats_enabled=1); a Stats holds a *BPFStats, nil without.
type BPFStats struct {
	Runs             uint64 `json:"bpf_runs"`
	PrimaryRunTimeNs uint64 `json:"bpf_primary_run_time_ns"`
	RunTimeNs        uint64 `json:"bpf_run_time_ns"`
}

// Stats is the closing account of a run.
type Stats struct {
	Type string `json:"type"`
	Stream
	TS              time.Time `json:"ts"`
	Attach          string    `json:"attach"`
	Events          uint64    `json:"events"`
	Aggregated      uint64    `json:"aggregated,omitempty"`
	Connections     uint64    `json:"connections"`
	OpenConnections uint64    `json:"open_connections"`
	Evictions       uint64    `json:"evictions"`
	Gaps            uint64    `json:"gaps"`
	Reordered       uint64    `json:"reordered"`
	StuckDropped    uint64    `json:"stuck_dropped"`
	Stuck           uint64    `json:"stuck"`
	Rescued         uint64    `json:"rescued"`
	StorageFail     uint64    `json:"storage_fail"`
	Lost            uint64    `json:"lost"`
	Untimed         uint64    `json:"untimed"`
	// LostHostWide: on a filtered run, how many of Lost are the kernel's
	// recursion skips of the whole host (they may concern other sockets).
	LostHostWide *uint64 `json:"lost_host_wide,omitempty"`
	LostInferred uint64  `json:"lost_inferred"`
	// Reclaimed: sockets whose kernel entry the full table reclaimed
	// while they lived; their timelines are partial.
	Reclaimed uint64 `json:"reclaimed,omitempty"`
	// Walks of the kernel's sockets, and the CPU time of all walks.
	Walks  uint64 `json:"walks"`
	WalkNs uint64 `json:"walk_ns"`
	*BPFStats
	*ProgressStats
}

// ProgressStats counts the progress records (with --progress) and those
// the per-interval cap skipped.
type ProgressStats struct {
	Progress        uint64 `json:"progress"`
	ProgressSkipped uint64 `json:"progress_skipped"`
}

// Types maps each record type to a new value of its Go type.
var Types = map[string]func() any{
	TypeTransition: func() any { return new(Transition) },
	TypeConnection: func() any { return new(Connection) },
	TypeHistogram:  func() any { return new(Histogram) },
	TypeLost:       func() any { return new(Lost) },
	TypeStates:     func() any { return new(States) },
	TypeListener:   func() any { return new(Listener) },
	TypeStuck:      func() any { return new(Stuck) },
	TypeStats:      func() any { return new(Stats) },
	TypeIncident:   func() any { return new(Incident) },
	TypeProgress:   func() any { return new(Progress) },
	TypeCleared:    func() any { return new(Cleared) },
	TypePile:       func() any { return new(Pile) },
}

// Decode parses one line into a pointer to its record type (*Transition,
// *Connection, ...). Fields the type does not know are ignored: a newer
// tracer may add them (docs/ndjson.md). A record with an implausible value
// (Plausible) is an error.
func Decode(line []byte) (any, error) { return decode(line, false) }

// DecodeStrict is Decode failing on any field the record type does not
// have: for tests of what the tracer writes.
func DecodeStrict(line []byte) (any, error) { return decode(line, true) }

func decode(line []byte, strict bool) (any, error) {
	var head struct {
		Type string `json:"type"`
	}
	if err := json.Unmarshal(line, &head); err != nil {
		return nil, err
	}
	mk, ok := Types[head.Type]
	if !ok {
		return nil, fmt.Errorf("unknown record type %q", head.Type)
	}
	v := mk()
	d := json.NewDecoder(bytes.NewReader(line))
	if strict {
		d.DisallowUnknownFields()
	}
	if err := d.Decode(v); err != nil {
		return nil, fmt.Errorf("%s record: %w", head.Type, err)
	}
	if d.More() {
		return nil, fmt.Errorf("%s record: data after the object", head.Type)
	}
	if err := Plausible(v); err != nil {
		return nil, fmt.Errorf("%s record: %w", head.Type, err)
	}
	if err := zeroTimeWritten(line); err != nil {
		return nil, fmt.Errorf("%s record: %w", head.Type, err)
	}
	return v, nil
}

// Encode writes v (a record type) as one line, as the tracer does.
func Encode(v any) ([]byte, error) {
	var buf bytes.Buffer
	e := json.NewEncoder(&buf)
	e.SetEscapeHTML(false)
	err := e.Encode(v)
	return buf.Bytes(), err
}
