package alertrules

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// Duration is a duration in Prometheus' notation: a sequence of integers
// with the units y, w, d, h, m, s or ms, such as 90s, 1h30m or 2d, or a bare 0.
type Duration time.Duration

var durationRE = regexp.MustCompile(`^(?:(\d+)y)?(?:(\d+)w)?(?:(\d+)d)?(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?(?:(\d+)ms)?$`)

var durationUnits = []struct {
	unit string
	d    time.Duration
}{
	{"y", 365 * 24 * time.Hour},
	{"w", 7 * 24 * time.Hour},
	{"d", 24 * time.Hour},
	{"h", time.Hour},
	{"m", time.Minute},
	{"s", time.Second},
	{"ms", time.Millisecond},
}

// ParseDuration parses a duration in Prometheus' notation.
func ParseDuration(s string) (Duration, error) {
	if s == "0" {
		return 0, nil
	}
	g := durationRE.FindStringSubmatch(s)
	if s == "" || g == nil {
		return 0, fmt.Errorf("invalid duration %q (want e.g. 90s, 30m, 1h30m or 0)", s)
	}
	var d time.Duration
	for i, u := range durationUnits {
		if g[i+1] == "" {
			continue
		}
		n, err := strconv.ParseInt(g[i+1], 10, 64)
		if err != nil || n > int64((1<<63-1)/u.d) {
			return 0, fmt.Errorf("duration %q is out of range", s)
		}
		d += time.Duration(n) * u.d
	}
	return Duration(d), nil
}

// MustParseDuration is ParseDuration for constants; it panics on error.
func MustParseDuration(s string) Duration {
	d, err := ParseDuration(s)
	if err != nil {
		panic(err)
	}
	return d
}

// String renders d in Prometheus' notation, largest units first ("1h30m").
func (d Duration) String() string {
	if d == 0 {
		return "0s"
	}
	var b strings.Builder
	rest := time.Duration(d)
	for _, u := range durationUnits {
		if n := rest / u.d; n > 0 {
			fmt.Fprintf(&b, "%d%s", n, u.unit)
			rest -= n * u.d
		}
	}
	return b.String()
}

// Seconds returns d in seconds.
func (d Duration) Seconds() float64 {
	return time.Duration(d).Seconds()
}

// UnmarshalYAML reads a duration from a YAML scalar.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = v
	return nil
}

// MarshalYAML writes d as a string in Prometheus' notation.
func (d Duration) MarshalYAML() (any, error) {
	return d.String(), nil
}
