package qshape

import (
	"slices"
	"testing"
	"time"
)

func TestBuckets(t *testing.T) {
	wantLabels := []string{"5m", "10m", "20m", "40m", "80m", "160m", "320m", "640m", "1280m", "1280m+"}
	if got := Labels(); !slices.Equal(got, wantLabels) {
		t.Errorf("Labels() = %q, want %q", got, wantLabels)
	}
	b := Bounds()
	if len(b) != len(wantLabels)-1 || b[0] != 5*time.Minute || b[len(b)-1] != 1280*time.Minute {
		t.Errorf("Bounds() = %v", b)
	}
	b[0] = 0
	if Bounds()[0] != 5*time.Minute {
		t.Error("changing Bounds' result changed the next call's")
	}
}
