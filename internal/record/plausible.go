package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"time"
)

// The plausible values of a record: the one rule by which the readers of
// recordings (analyze, report) tell a damaged record from a real one.
// Decode applies it, so whatever reads records through this package gets
// it.
//
//   - A time is within [MinTime, MaxTime). The tracer's times are the
//     kernel's clock converted to wall time, so a year-1 or year-9999
//     time is damage, not a measurement. A present time at the zero
//     instant (0001-01-01T00:00:00Z) is damage too, never "unknown":
//     the tracer omits an unknown time.
//   - A duration (a field named *_ns, bar the histogram's sum_ns, a sum
//     of durations) is at most MaxDuration: the span between the
//     earliest and the latest plausible time.
var (
	MinTime = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)
	MaxTime = time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)
)

// MaxDuration is the longest plausible duration in nanoseconds (200
// years): below 2^63, so it is a time.Duration, and its power-of-two
// bucket is at most 2^63.
var MaxDuration = uint64(MaxTime.Sub(MinTime))

// Plausible returns an error naming the first field of v (a pointer to a
// record type) whose value is not plausible, nil if there is none.
func Plausible(v any) error {
	rv := reflect.ValueOf(v)
	if rv.Kind() == reflect.Pointer {
		if rv.IsNil() {
			return nil
		}
		rv = rv.Elem()
	}
	if rv.Kind() != reflect.Struct {
		return nil
	}
	return planOf(rv.Type()).check(rv, "")
}

var timeType = reflect.TypeFor[time.Time]()

// A plan is what to check in a struct type, worked out once per type
// (the readers decode millions of records).
type plan []fieldCheck

type fieldCheck struct {
	index int
	name  string // the JSON path below the struct, "" for an embedded struct
	kind  checkKind
	sub   plan // struct, pointer to struct, slice of structs
}

type checkKind uint8

const (
	checkTime checkKind = iota
	checkDuration
	checkDurationPtr
	checkStruct
	checkStructPtr
	checkSlice
)

var plans sync.Map // reflect.Type: plan

func planOf(t reflect.Type) plan {
	if p, ok := plans.Load(t); ok {
		return p.(plan)
	}
	var p plan
	for i := range t.NumField() {
		f := t.Field(i)
		tag, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		if f.Anonymous {
			tag = ""
		}
		c := fieldCheck{index: i, name: tag}
		ft := f.Type
		switch {
		case ft == timeType:
			c.kind = checkTime
		case ft.Kind() == reflect.Uint64 && isDuration(tag):
			c.kind = checkDuration
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Uint64 && isDuration(tag):
			c.kind = checkDurationPtr
		case ft.Kind() == reflect.Struct:
			c.kind, c.sub = checkStruct, planOf(ft)
		case ft.Kind() == reflect.Pointer && ft.Elem().Kind() == reflect.Struct && ft.Elem() != timeType:
			c.kind, c.sub = checkStructPtr, planOf(ft.Elem())
		case ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct:
			c.kind, c.sub = checkSlice, planOf(ft.Elem())
		default:
			continue
		}
		if (c.kind == checkStruct || c.kind == checkStructPtr || c.kind == checkSlice) && len(c.sub) == 0 {
			continue
		}
		p = append(p, c)
	}
	plans.Store(t, p)
	return p
}

func (p plan) check(v reflect.Value, prefix string) error {
	for i := range p {
		c := &p[i]
		f := v.Field(c.index)
		switch c.kind {
		case checkTime:
			t := f.Interface().(time.Time)
			if !t.IsZero() && (t.Before(MinTime) || !t.Before(MaxTime)) {
				return fmt.Errorf("%s %s is implausible: outside %d to %d", join(prefix, c.name),
					t.Format(time.RFC3339Nano), MinTime.Year(), MaxTime.Year()-1)
			}
		case checkDuration, checkDurationPtr:
			if c.kind == checkDurationPtr {
				if f.IsNil() {
					continue
				}
				f = f.Elem()
			}
			if d := f.Uint(); d > MaxDuration {
				return fmt.Errorf("%s %d is implausible: more than %d years", join(prefix, c.name), d, MaxTime.Year()-MinTime.Year())
			}
		case checkStruct:
			if err := c.sub.check(f, join(prefix, c.name)); err != nil {
				return err
			}
		case checkStructPtr:
			if !f.IsNil() {
				if err := c.sub.check(f.Elem(), join(prefix, c.name)); err != nil {
					return err
				}
			}
		case checkSlice:
			for j := range f.Len() {
				if err := c.sub.check(f.Index(j), fmt.Sprintf("%s[%d]", join(prefix, c.name), j)); err != nil {
					return err
				}
			}
		}
	}
	return nil
}

// join is a field's JSON path: prefix.name, without an empty part.
func join(prefix, name string) string {
	switch {
	case prefix == "":
		return name
	case name == "":
		return prefix
	}
	return prefix + "." + name
}

// isDuration: the field of this JSON name holds a duration in
// nanoseconds.
func isDuration(name string) bool {
	return strings.HasSuffix(name, "_ns") && name != "sum_ns"
}

// zeroTimeWritten: line holds a time at the zero instant, which decodes
// as "absent". Only lines holding a string that starts with a year below
// 10 are looked at closely.
func zeroTimeWritten(line []byte) error {
	if !bytes.Contains(line, []byte(`"000`)) {
		return nil
	}
	var v any
	if json.Unmarshal(line, &v) != nil {
		return nil // the typed decode has already accepted it; nothing to add
	}
	return zeroTimeIn(v, "")
}

func zeroTimeIn(v any, name string) error {
	switch v := v.(type) {
	case map[string]any:
		for k, x := range v {
			if err := zeroTimeIn(x, strings.TrimPrefix(name+"."+k, ".")); err != nil {
				return err
			}
		}
	case []any:
		for i, x := range v {
			if err := zeroTimeIn(x, fmt.Sprintf("%s[%d]", name, i)); err != nil {
				return err
			}
		}
	case string:
		if t, err := time.Parse(time.RFC3339Nano, v); err == nil && t.Before(MinTime) {
			return fmt.Errorf("%s %s is implausible: outside %d to %d", name, v, MinTime.Year(), MaxTime.Year()-1)
		}
	}
	return nil
}
