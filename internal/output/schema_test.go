package output

import (
	"bytes"
	"encoding/json"
	"maps"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// goldenLines writes every record writeAll makes with the fast encoder.
func goldenLines(t *testing.T) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	n := newNDJSON(&buf, clock, testRun)
	writeAll(n)
	if err := n.Flush(); err != nil {
		t.Fatal(err)
	}
	return bytes.SplitAfter(bytes.TrimSuffix(buf.Bytes(), []byte("\n")), []byte("\n"))
}

// The fast encoder and the record types agree: every line it writes
// decodes into its record type with no field left over, and encoding
// that value gives the line back byte for byte (so no field is missing
// from the type, misnamed, out of order, or omitted by other rules).
func TestEncoderMatchesRecordTypes(t *testing.T) {
	for i, line := range goldenLines(t) {
		if !bytes.HasSuffix(line, []byte("\n")) {
			line = append(line, '\n')
		}
		v, err := record.DecodeStrict(line)
		if err != nil {
			t.Errorf("line %d does not decode into its record type: %v\n%s", i+1, err, line)
			continue
		}
		again, err := record.Encode(v)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(again, line) {
			t.Errorf("line %d, through %T, comes back different:\n got %s\nwant %s", i+1, v, again, line)
		}
	}
}

// The golden records show every field of every record type, so the test
// above checks them all: a field added to a type fails here until the
// encoder writes it and writeAll makes a record that has it.
func TestGoldenShowsEveryField(t *testing.T) {
	seen := map[string]map[string]bool{}
	for _, line := range goldenLines(t) {
		var m map[string]any
		if err := json.Unmarshal(line, &m); err != nil {
			t.Fatal(err)
		}
		typ, _ := m["type"].(string)
		if seen[typ] == nil {
			seen[typ] = map[string]bool{}
		}
		keysOf(m, "", seen[typ])
	}
	// "limits" is one object shared by stuck and pile records, each of
	// which holds only the settings that bear on it: its keys must each
	// appear in some record.
	limits := map[string]bool{}
	for _, keys := range seen {
		for k := range keys {
			if strings.HasPrefix(k, "limits.") {
				limits[k] = true
			}
		}
	}
	for _, keys := range seen {
		if keys["limits"] {
			maps.Copy(keys, limits)
		}
	}
	for typ, mk := range record.Types {
		if typ == record.TypeIncident {
			continue // written by internal/incident, and held to its type there
		}
		if seen[typ] == nil {
			t.Errorf("no %q record in the golden file", typ)
			continue
		}
		want := map[string]bool{}
		fieldsOf(reflect.TypeOf(mk()).Elem(), "", want)
		for k := range want {
			if !seen[typ][k] {
				t.Errorf("no %q record in the golden file has %q", typ, k)
			}
		}
	}
}

// keysOf adds the keys of m, and of objects in its arrays, as paths
// ("states.unseen"), except inside the free-form "counts".
func keysOf(m map[string]any, prefix string, into map[string]bool) {
	for k, v := range m {
		into[prefix+k] = true
		if o, ok := v.(map[string]any); ok && k != "counts" {
			keysOf(o, prefix+k+".", into)
		}
		if a, ok := v.([]any); ok {
			for _, x := range a {
				if o, ok := x.(map[string]any); ok {
					keysOf(o, prefix+k+".", into)
				}
			}
		}
	}
}

// fieldsOf adds the JSON names of t's fields as keysOf names them.
func fieldsOf(t reflect.Type, prefix string, into map[string]bool) {
	for i := range t.NumField() {
		f := t.Field(i)
		ft := f.Type
		if ft.Kind() == reflect.Pointer {
			ft = ft.Elem()
		}
		if f.Anonymous && ft.Kind() == reflect.Struct {
			fieldsOf(ft, prefix, into)
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		into[prefix+name] = true
		if ft.Kind() == reflect.Slice && ft.Elem().Kind() == reflect.Struct {
			fieldsOf(ft.Elem(), prefix+name+".", into)
		}
		if ft.Kind() == reflect.Struct && ft != reflect.TypeFor[time.Time]() {
			fieldsOf(ft, prefix+name+".", into) // a nested object (limits)
		}
	}
}

// Every integer identifier survives a JSON reader that holds numbers as
// doubles (JavaScript, jq, Python's float, Go's map[string]any): it is
// below 2^53. The golden records include a tracepoint-mode cookie (bit 52).
func TestIdentifiersExactInDouble(t *testing.T) {
	ids := map[string]bool{"cookie": true, "netns": true, "pid": true}
	var checked, synthetic int
	var walk func(line int, key string, f, n any)
	walk = func(line int, key string, f, n any) {
		switch f := f.(type) {
		case map[string]any:
			for k, v := range f {
				walk(line, k, v, n.(map[string]any)[k])
			}
		case []any:
			for i, v := range f {
				walk(line, key, v, n.([]any)[i])
			}
		case float64:
			if !ids[key] {
				return
			}
			exact, err := strconv.ParseUint(string(n.(json.Number)), 10, 64)
			if err != nil {
				t.Fatalf("line %d: %s %s: %v", line, key, n, err)
			}
			if uint64(f) != exact || exact >= 1<<53 {
				t.Errorf("line %d: %s %d reads as %.0f in a double", line, key, exact, f)
			}
			if key == "cookie" && exact >= 1<<52 {
				synthetic++
			}
			checked++
		}
	}
	for i, line := range goldenLines(t) {
		var asFloat, asNumber map[string]any
		if err := json.Unmarshal(line, &asFloat); err != nil {
			t.Fatal(err)
		}
		d := json.NewDecoder(bytes.NewReader(line))
		d.UseNumber()
		if err := d.Decode(&asNumber); err != nil {
			t.Fatal(err)
		}
		walk(i+1, "", asFloat, asNumber)
	}
	if checked == 0 || synthetic == 0 {
		t.Errorf("%d identifiers checked, %d tracepoint-mode cookies: the golden records lack them", checked, synthetic)
	}
}
