package output

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Append helpers for an allocation-free JSON encoder. Each appends to dst
// and returns the extended slice, like strconv.AppendInt.

// appendKey appends a key given in full, with its comma, quotes and colon
// (`,"cookie":`): one copy instead of three.
func appendKey(dst []byte, key string) []byte {
	return append(dst, key...)
}

func appendUint(dst []byte, key string, v uint64) []byte {
	return strconv.AppendUint(appendKey(dst, key), v, 10)
}

func appendBool(dst []byte, key string, v bool) []byte {
	return strconv.AppendBool(appendKey(dst, key), v)
}

func appendTime(dst []byte, key string, t time.Time) []byte {
	dst = append(appendKey(dst, key), '"')
	dst = t.UTC().AppendFormat(dst, time.RFC3339Nano)
	return append(dst, '"')
}

// timeCache formats RFC 3339 nanosecond UTC timestamps fast: the date and
// time of day change once a second, so they are formatted once a second
// and only the fraction per call. The output is byte for byte what
// time.RFC3339Nano gives (trailing zeros of the fraction trimmed).
type timeCache struct {
	sec    int64
	prefix []byte // "2006-01-02T15:04:05"
}

func (c *timeCache) appendTime(dst []byte, key string, unixNano int64) []byte {
	sec, frac := unixNano/1e9, unixNano%1e9
	if frac < 0 {
		sec, frac = sec-1, frac+1e9
	}
	if c.prefix == nil || sec != c.sec {
		c.sec = sec
		c.prefix = time.Unix(sec, 0).UTC().AppendFormat(c.prefix[:0], "2006-01-02T15:04:05")
	}
	dst = append(appendKey(dst, key), '"')
	dst = append(dst, c.prefix...)
	if frac != 0 {
		var digits [10]byte
		digits[0] = '.'
		f := uint32(frac)
		for i := 8; i >= 2; i -= 2 { // two digits at a time
			d := f % 100 * 2
			digits[i], digits[i+1] = pairs[d], pairs[d+1]
			f /= 100
		}
		digits[1] = byte('0' + f)
		n := 10
		for digits[n-1] == '0' {
			n--
		}
		dst = append(dst, digits[:n]...)
	}
	return append(dst, 'Z', '"')
}

// appendStr appends key and a JSON string; raw strings are state names
// and other constants that need no escaping.
func appendStr(dst []byte, key, raw string) []byte {
	dst = append(appendKey(dst, key), '"')
	dst = append(dst, raw...)
	return append(dst, '"')
}

const hex = "0123456789abcdef"

// appendQuoted appends s as a JSON string, escaping quotes, backslashes
// and control characters and replacing invalid UTF-8 with U+FFFD.
func appendQuoted(dst, s []byte) []byte {
	dst = append(dst, '"')
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '"' || b == '\\':
				dst = append(dst, '\\', b)
			case b < 0x20:
				dst = append(dst, '\\', 'u', '0', '0', hex[b>>4], hex[b&0xf])
			default:
				dst = append(dst, b)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRune(s[i:])
		if r == utf8.RuneError && size == 1 {
			dst = append(dst, `\ufffd`...)
		} else {
			dst = append(dst, s[i:i+size]...)
		}
		i += size
	}
	return append(dst, '"')
}

// appendQuotedString is appendQuoted for a string, copied as it is when
// nothing in it needs escaping (a cgroup path, a unit name): then it
// allocates nothing.
func appendQuotedString(dst []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if b := s[i]; b < 0x20 || b >= utf8.RuneSelf || b == '"' || b == '\\' {
			return appendQuoted(dst, []byte(s))
		}
	}
	dst = append(dst, '"')
	dst = append(dst, s...)
	return append(dst, '"')
}

func appendUintRaw(dst []byte, v uint64) []byte { return strconv.AppendUint(dst, v, 10) }

// pairs holds "00" to "99".
const pairs = "00010203040506070809" + "10111213141516171819" + "20212223242526272829" +
	"30313233343536373839" + "40414243444546474849" + "50515253545556575859" +
	"60616263646566676869" + "70717273747576777879" + "80818283848586878889" + "90919293949596979899"
