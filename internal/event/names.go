package event

import "fmt"

// How the enums of an Event are spelled wherever they are written out:
// NDJSON (docs/ndjson.md), the text output, Prometheus labels, and the
// recording reader that parses them back. One table each, here.

var resetNames = [...]string{
	ResetSent:                 "sent",
	ResetReceived:             "received",
	ResetSent | ResetReceived: "sent_and_received",
}

// ResetName returns the name of the reset bits r ("sent", "received",
// "sent_and_received"), or "" for none.
func ResetName(r uint8) string {
	if int(r) < len(resetNames) {
		return resetNames[r]
	}
	return resetNames[ResetSent|ResetReceived]
}

// ParseReset is ResetName's inverse; "" is 0.
func ParseReset(name string) (uint8, error) {
	for r, n := range resetNames {
		if n == name {
			return uint8(r), nil
		}
	}
	return 0, fmt.Errorf("unknown reset %q", name)
}

// TimeWait reports whether a timewait socket lives on in TIME_WAIT: the
// NDJSON "time_wait" field and the metrics' time_wait label.
func (tw TW) TimeWait() bool { return tw == TWTimeWait }

// FinWait2 reports whether a timewait socket lives on in its FIN_WAIT2
// substate: the NDJSON "fin_wait2_timewait" field.
func (tw TW) FinWait2() bool { return tw == TWFinWait2 }

// TWOf is the inverse of TimeWait and FinWait2.
func TWOf(timeWait, finWait2 bool) TW {
	switch {
	case timeWait:
		return TWTimeWait
	case finWait2:
		return TWFinWait2
	}
	return TWNone
}

// ParseFamily is Family.String's inverse.
func ParseFamily(name string) (Family, error) {
	switch name {
	case "inet":
		return IPv4, nil
	case "inet6":
		return IPv6, nil
	}
	return 0, fmt.Errorf("unknown address family %q", name)
}
