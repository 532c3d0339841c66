package testkit

import (
	"maps"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"google.golang.org/protobuf/proto"
)

func TestHasLabels(t *testing.T) {
	m := &dto.Metric{Label: []*dto.LabelPair{
		{Name: proto.String("spool"), Value: proto.String("mail")},
		{Name: proto.String("queue"), Value: proto.String("outbox")},
	}}
	tests := []struct {
		pairs []string
		want  bool
	}{
		{nil, true},
		{[]string{"spool", "mail"}, true},
		{[]string{"queue", "outbox", "spool", "mail"}, true},
		{[]string{"spool", "jobs"}, false},
		{[]string{"kind", ""}, false},
	}
	for _, tt := range tests {
		if got := HasLabels(m, tt.pairs...); got != tt.want {
			t.Errorf("HasLabels(%q) = %v, want %v", tt.pairs, got, tt.want)
		}
	}
	if got := Labels(m); !maps.Equal(got, map[string]string{"spool": "mail", "queue": "outbox"}) {
		t.Errorf("Labels = %v", got)
	}
}

func TestWaitFor(t *testing.T) {
	var n atomic.Int32
	go func() {
		for range 3 {
			n.Add(1)
		}
	}()
	WaitFor(t, 10*time.Second, "three increments", func() bool { return n.Load() == 3 })
}

func TestModuleRoot(t *testing.T) {
	root, err := moduleRoot()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "cmd", "spool-agent")); err != nil {
		t.Errorf("moduleRoot() = %q, which has no cmd/spool-agent: %v", root, err)
	}
}
