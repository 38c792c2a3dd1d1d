package churn

import (
	"context"
	"testing"
)

func TestRun(t *testing.T) {
	s, err := Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	r, err := Run(context.Background(), s.Port(), 300, 8)
	if err != nil {
		t.Fatal(err)
	}
	if r.Conns != 300 || r.Errors != 0 || r.Rate() <= 0 {
		t.Fatalf("result %+v", r)
	}
}
