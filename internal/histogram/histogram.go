// Package histogram keeps dwell-time distributions in log-linear buckets:
// values below 64 ns exactly, above that 32 linear sub-buckets per power
// of two, so a bucket is at most 1/32 (3.1%) of its lower bound wide and a
// quantile read at a bucket's midpoint is within 1.6% of the true value.
package histogram

import (
	"fmt"
	"math/bits"
)

const (
	subBits    = 5
	subBuckets = 1 << subBits   // linear sub-buckets per power of two
	exactBelow = 2 * subBuckets // values below this have a bucket each
	NumBuckets = exactBelow + (64-subBits-1)*subBuckets
)

// Index returns the bucket of value v.
func Index(v uint64) int {
	if v < exactBelow {
		return int(v)
	}
	shift := bits.Len64(v) - 1 - subBits // >= 1
	return exactBelow + (shift-1)*subBuckets + int(v>>shift) - subBuckets
}

// Bounds returns the smallest and largest value of bucket i (inclusive).
func Bounds(i int) (lo, hi uint64) {
	if i < exactBelow {
		return uint64(i), uint64(i)
	}
	shift := uint((i-exactBelow)/subBuckets + 1)
	m := uint64((i-exactBelow)%subBuckets + subBuckets)
	lo = m << shift
	return lo, lo + (1 << shift) - 1
}

// Histogram is a distribution of nanosecond values. The zero value is
// empty and ready to use. Not safe for concurrent use.
type Histogram struct {
	counts [NumBuckets]uint64
	count  uint64
	sum    uint64
	min    uint64
	max    uint64
}

// Record adds one value.
func (h *Histogram) Record(v uint64) { h.RecordN(v, 1) }

// RecordN adds n values equal to v.
func (h *Histogram) RecordN(v, n uint64) {
	if n == 0 {
		return
	}
	h.counts[Index(v)] += n
	if h.count == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.count += n
	h.sum += v * n
}

// Merge adds all of o's values to h.
func (h *Histogram) Merge(o *Histogram) {
	if o.count == 0 {
		return
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.count == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.count += o.count
	h.sum += o.sum
}

// MergeRaw adds a histogram kept elsewhere in the same bucket layout (the
// kernel's aggregate mode): per-bucket counts, and the count, sum, min
// and max of the values. counts longer than NumBuckets is an error.
func (h *Histogram) MergeRaw(counts []uint64, count, sum, minV, maxV uint64) error {
	if len(counts) > NumBuckets {
		return fmt.Errorf("histogram: %d buckets, want at most %d", len(counts), NumBuckets)
	}
	if count == 0 {
		return nil
	}
	for i, c := range counts {
		h.counts[i] += c
	}
	if h.count == 0 || minV < h.min {
		h.min = minV
	}
	if maxV > h.max {
		h.max = maxV
	}
	h.count += count
	h.sum += sum
	return nil
}

// Reset empties h.
func (h *Histogram) Reset() { *h = Histogram{} }

// Count, Sum, Min and Max describe the values recorded.
func (h *Histogram) Count() uint64 { return h.count }
func (h *Histogram) Sum() uint64   { return h.sum }
func (h *Histogram) Min() uint64   { return h.min }
func (h *Histogram) Max() uint64   { return h.max }

// Quantile returns an estimate of the q-quantile (0 < q <= 1): the
// midpoint of the bucket holding the value of rank ceil(q*count), kept
// within [Min, Max]. It returns 0 for an empty histogram.
func (h *Histogram) Quantile(q float64) uint64 {
	if h.count == 0 {
		return 0
	}
	rank := uint64(q * float64(h.count))
	if float64(rank) < q*float64(h.count) {
		rank++
	}
	rank = max(rank, 1)
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			lo, hi := Bounds(i)
			return min(max(lo+(hi-lo)/2, h.min), h.max)
		}
	}
	return h.max
}

// Bucket is one non-empty bucket: Count values between Lo and Hi inclusive.
type Bucket struct {
	Lo, Hi, Count uint64
}

// AppendBuckets appends h's non-empty buckets in ascending order to dst.
func (h *Histogram) AppendBuckets(dst []Bucket) []Bucket {
	for i, c := range h.counts {
		if c != 0 {
			lo, hi := Bounds(i)
			dst = append(dst, Bucket{Lo: lo, Hi: hi, Count: c})
		}
	}
	return dst
}
