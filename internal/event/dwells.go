package event

// Dwells reports whether a full socket is seen to stay in s: a state the
// tracepoint reports the socket entering and leaving. Not CLOSE (the
// end), TIME_WAIT (a timewait socket, which no tracepoint reports) or
// NEW_SYN_RECV (a request socket, likewise). The stuck watch can watch
// only these (--stuck), and only these have dwell times.
func (s State) Dwells() bool {
	return s.Valid() && s != Close && s != TimeWait && s != NewSynRecv
}
