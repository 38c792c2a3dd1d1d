package record

import (
	"bytes"
	"encoding/json"
	"fmt"
	"reflect"
	"strings"
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
	return plausible(reflect.ValueOf(v), "")
}

var timeType = reflect.TypeFor[time.Time]()

func plausible(v reflect.Value, name string) error {
	switch v.Kind() {
	case reflect.Pointer:
		if v.IsNil() {
			return nil
		}
		return plausible(v.Elem(), name)
	case reflect.Slice:
		for i := range v.Len() {
			if err := plausible(v.Index(i), fmt.Sprintf("%s[%d]", name, i)); err != nil {
				return err
			}
		}
	case reflect.Struct:
		if v.Type() == timeType {
			t := v.Interface().(time.Time)
			if !t.IsZero() && (t.Before(MinTime) || !t.Before(MaxTime)) {
				return fmt.Errorf("%s %s is implausible: outside %d to %d", name,
					t.Format(time.RFC3339Nano), MinTime.Year(), MaxTime.Year()-1)
			}
			return nil
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			field := name
			if tag, _, _ := strings.Cut(f.Tag.Get("json"), ","); tag != "" && !f.Anonymous {
				field = strings.TrimPrefix(name+"."+tag, ".")
			}
			if err := plausible(v.Field(i), field); err != nil {
				return err
			}
		}
	case reflect.Uint64:
		if isDuration(name) && v.Uint() > MaxDuration {
			return fmt.Errorf("%s %d is implausible: more than %d years", name, v.Uint(), MaxTime.Year()-MinTime.Year())
		}
	}
	return nil
}

// isDuration: the field (a path like "states[2].dwell_ns") holds a
// duration in nanoseconds.
func isDuration(path string) bool {
	leaf := path[strings.LastIndexByte(path, '.')+1:]
	return strings.HasSuffix(leaf, "_ns") && leaf != "sum_ns"
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
