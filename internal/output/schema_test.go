package output

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/tcptrace-bpf/tcptrace-bpf/internal/record"
)

// goldenLines writes every record writeAll makes with the fast encoder.
func goldenLines(t *testing.T) [][]byte {
	t.Helper()
	var buf bytes.Buffer
	n := NewNDJSON(&buf, clock)
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
	for typ, mk := range record.Types {
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
	}
}
