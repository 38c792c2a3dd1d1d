package histogram

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"
)

func TestIndexBoundsRoundTrip(t *testing.T) {
	prevHi := uint64(0)
	for i := 0; i < NumBuckets; i++ {
		lo, hi := Bounds(i)
		if i > 0 && lo != prevHi+1 {
			t.Fatalf("bucket %d starts at %d, previous ended at %d: gap or overlap", i, lo, prevHi)
		}
		if Index(lo) != i || Index(hi) != i {
			t.Fatalf("bucket %d [%d,%d]: Index(lo)=%d Index(hi)=%d", i, lo, hi, Index(lo), Index(hi))
		}
		if lo >= exactBelow && float64(hi-lo+1)/float64(lo) > 1.0/subBuckets+1e-12 {
			t.Fatalf("bucket %d [%d,%d] wider than 1/%d of its lower bound", i, lo, hi, subBuckets)
		}
		prevHi = hi
	}
	if prevHi != math.MaxUint64 {
		t.Fatalf("last bucket ends at %d, want MaxUint64", prevHi)
	}
	if Index(math.MaxUint64) != NumBuckets-1 {
		t.Fatalf("Index(MaxUint64) = %d", Index(math.MaxUint64))
	}
}

// The quantile estimate must be within 5% (the bound; the design
// gives 1.6%) of the exact order statistic, for several distributions.
func TestQuantileError(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	dists := map[string]func() uint64{
		"uniform-1ms":   func() uint64 { return uint64(rng.IntN(1_000_000)) + 1 },
		"lognormal":     func() uint64 { return uint64(math.Exp(rng.NormFloat64()*2+12)) + 1 },
		"exponential":   func() uint64 { return uint64(rng.ExpFloat64()*50_000) + 1 },
		"bimodal":       func() uint64 { return []uint64{20_000, 3_000_000_000}[rng.IntN(2)] + uint64(rng.IntN(1000)) },
		"small-exact":   func() uint64 { return uint64(rng.IntN(64)) },
		"seconds-range": func() uint64 { return uint64(rng.Float64() * 60e9) },
	}
	for name, gen := range dists {
		t.Run(name, func(t *testing.T) {
			var h Histogram
			vals := make([]uint64, 20000)
			for i := range vals {
				vals[i] = gen()
				h.Record(vals[i])
			}
			slices.Sort(vals)
			for _, q := range []float64{0.01, 0.5, 0.9, 0.99, 0.999, 1} {
				rank := int(math.Ceil(q * float64(len(vals))))
				exact := vals[rank-1]
				got := h.Quantile(q)
				if relErr(got, exact) > 0.05 {
					t.Errorf("q=%v: got %d, exact %d (error %.2f%%)", q, got, exact, 100*relErr(got, exact))
				}
			}
			if h.Min() != vals[0] || h.Max() != vals[len(vals)-1] || h.Count() != uint64(len(vals)) {
				t.Errorf("min/max/count = %d/%d/%d, want %d/%d/%d", h.Min(), h.Max(), h.Count(), vals[0], vals[len(vals)-1], len(vals))
			}
		})
	}
}

func relErr(got, want uint64) float64 {
	if want == 0 {
		return math.Abs(float64(got))
	}
	return math.Abs(float64(got)-float64(want)) / float64(want)
}

func TestEmptyAndSingle(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Count() != 0 {
		t.Fatal("empty histogram should report zeros")
	}
	h.Record(1_000_000_000)
	for _, q := range []float64{0.5, 0.99} {
		if got := h.Quantile(q); got != 1_000_000_000 {
			t.Errorf("single value: q%v = %d, want exactly 1e9 (clamped to min/max)", q, got)
		}
	}
}

func TestMergeEqualsRecordingAll(t *testing.T) {
	var a, b, all Histogram
	for i := uint64(1); i < 5000; i++ {
		v := i * i * 37
		if i%2 == 0 {
			a.Record(v)
		} else {
			b.Record(v)
		}
		all.Record(v)
	}
	a.Merge(&b)
	if a != all {
		t.Fatal("merged histogram differs from one that recorded every value")
	}
}

func TestAppendBuckets(t *testing.T) {
	var h Histogram
	h.RecordN(5, 3)
	h.Record(1000)
	h.Record(1001)
	got := h.AppendBuckets(nil)
	want := []Bucket{{Lo: 5, Hi: 5, Count: 3}, {Lo: 992, Hi: 1007, Count: 2}}
	if !slices.Equal(got, want) {
		t.Fatalf("buckets = %+v, want %+v", got, want)
	}
}

func BenchmarkRecord(b *testing.B) {
	var h Histogram
	for i := 0; b.Loop(); i++ {
		h.Record(uint64(i) * 7919)
	}
}
