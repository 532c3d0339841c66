package main

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"reflect"
	"slices"
	"strconv"
	"strings"

	"github.com/alecthomas/kong"
	"gopkg.in/yaml.v3"

	"github.com/spool-agent/spool-agent/spool"
)

// Configuration sources and their precedence.
//
// kong applies, for each flag not given on the command line, the last value
// that its resolvers return. The resolvers are registered as (config file,
// environment), so the precedence is: command line, then environment, then
// configuration file, then the flag's default. (kong's own env: tags would
// put the file above the environment, which surprises most users.)

// configFile is a parsed --config file.
type configFile struct {
	path   string
	values map[string]any // long flag name -> value as decoded from YAML
	spools []spoolConfig  // the spools: section, sorted by name
}

// spoolConfig is one entry of the spools: section: a spool (when Dir is
// set) and the run flags set for it alone, which override the global ones.
type spoolConfig struct {
	Name string
	Dir  string // "" for settings of a spool defined elsewhere (--spool, --spool-glob)
	// settings are values of run's flags tagged spool:"" (see RunCmd), by
	// long name, decoded as the flag decodes its value.
	settings map[string]reflect.Value
}

// resolvers are the configuration-file and environment resolvers of one parse.
type resolvers struct {
	lookupEnv func(string) (string, bool)
	loaded    bool
	cfg       *configFile
	cfgErr    error
	config    kong.Resolver
	env       kong.Resolver
}

func (m *Main) newResolvers() *resolvers {
	r := &resolvers{lookupEnv: m.LookupEnv}
	if r.lookupEnv == nil {
		r.lookupEnv = func(string) (string, bool) { return "", false }
	}
	r.config = kong.ResolverFunc(r.resolveConfig)
	r.env = kong.ResolverFunc(r.resolveEnv)
	return r
}

// load reads the configuration file named by --config (on the command line,
// or else in the environment) once per parse.
func (r *resolvers) load(kctx *kong.Context) {
	if r.loaded {
		return
	}
	r.loaded = true
	path := ""
	for _, f := range kctx.Flags() {
		if f.Name == "config" {
			path, _ = kctx.FlagValue(f).(string)
		}
	}
	if path == "" {
		path, _ = r.lookupEnv(envName("config"))
	}
	if path == "" {
		return
	}
	r.cfg, r.cfgErr = loadConfig(path, flagNames(kctx.Model.Node), spoolFlags(kctx.Model.Node))
}

func (r *resolvers) resolveConfig(kctx *kong.Context, _ *kong.Path, flag *kong.Flag) (any, error) {
	r.load(kctx)
	if r.cfg == nil {
		return nil, nil
	}
	raw, ok := r.cfg.values[flag.Name]
	if !ok || raw == nil {
		return nil, nil
	}
	v, err := configValue(flag, raw)
	if err == nil {
		err = checkValue(flag, v)
	}
	if err != nil {
		// Said once, as the configuration error, rather than by kong.
		if r.cfgErr == nil {
			r.cfgErr = fmt.Errorf("config file %s: %s: %w", r.cfg.path, flag.Name, err)
		}
		return nil, nil
	}
	return v, nil
}

func (r *resolvers) resolveEnv(_ *kong.Context, path *kong.Path, flag *kong.Flag) (any, error) {
	if !readsEnv(path, flag) {
		return nil, nil
	}
	name := envName(flag.Name)
	s, ok := r.lookupEnv(name)
	if !ok || s == "" {
		return nil, nil
	}
	if err := checkValue(flag, s); err != nil {
		return nil, fmt.Errorf("from $%s: %w", name, err)
	}
	return s, nil
}

// checkValue decodes v as flag's value into a scratch variable, so that a
// bad value is reported with where it came from.
func checkValue(flag *kong.Flag, v any) error {
	_, err := decodeValue(flag, v)
	return err
}

// decodeValue decodes v (a string, or a list of strings for a repeatable
// flag) as flag decodes its value, into a new variable of the flag's type.
func decodeValue(flag *kong.Flag, v any) (reflect.Value, error) {
	scratch := reflect.New(flag.Target.Type()).Elem()
	scan := kong.ScanFromTokens(kong.Token{Type: kong.FlagValueToken, Value: v})
	if err := flag.Mapper.Decode(&kong.DecodeContext{Value: flag.Value, Scan: scan}, scratch); err != nil {
		return reflect.Value{}, err
	}
	if flag.Enum != "" {
		s := fmt.Sprint(scratch.Interface())
		if !slices.Contains(strings.Split(flag.Enum, ","), s) {
			return reflect.Value{}, fmt.Errorf("must be one of %s but got %q", flag.Enum, s)
		}
	}
	return scratch, nil
}

// configValue turns a value decoded from YAML into what kong decodes for
// flag: a string for scalars and maps ("k=v,k2=v2"), a list of strings for
// lists given to repeatable flags.
func configValue(flag *kong.Flag, raw any) (any, error) {
	switch v := raw.(type) {
	case map[string]any:
		if !flag.IsMap() {
			return nil, errors.New("want a single value, got a mapping")
		}
		parts := make([]string, 0, len(v))
		for _, k := range slices.Sorted(maps.Keys(v)) {
			s, err := scalar(v[k])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", k, err)
			}
			parts = append(parts, k+"="+s)
		}
		return strings.Join(parts, ","), nil
	case []any:
		items := make([]any, 0, len(v))
		strs := make([]string, 0, len(v))
		for _, it := range v {
			s, err := scalar(it)
			if err != nil {
				return nil, err
			}
			items = append(items, s)
			strs = append(strs, s)
		}
		switch {
		case flag.IsMap():
			return strings.Join(strs, ","), nil
		case flag.IsSlice():
			return items, nil
		}
		return nil, errors.New("want a single value, got a list")
	}
	return scalar(raw)
}

// scalar formats a YAML scalar as the command line would spell it.
func scalar(v any) (string, error) {
	switch v := v.(type) {
	case string:
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64), nil
	case nil:
		return "", nil
	case map[string]any, map[any]any, []any:
		return "", errors.New("want a single value, got a collection")
	}
	return fmt.Sprint(v), nil
}

// flagNames returns the long names of every flag of the application.
func flagNames(node *kong.Node) map[string]bool {
	names := map[string]bool{}
	var walk func(n *kong.Node)
	walk = func(n *kong.Node) {
		for _, f := range n.Flags {
			names[f.Name] = true
		}
		for _, c := range n.Children {
			walk(c)
		}
	}
	walk(node)
	return names
}

// loadConfig reads and checks the configuration file at path. Its keys are
// long flag names of any command (a file can serve run and fsck alike),
// either dotted ("web.listen-address") or nested ("web: {listen-address:
// ...}"), with '_' accepted for '-'; plus the spools: section, whose keys
// are dir and the names of perSpool.
func loadConfig(path string, names map[string]bool, perSpool spoolFlagSet) (*configFile, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("config file: %w", err)
	}
	var doc any
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	c := &configFile{path: path, values: map[string]any{}}
	if doc == nil {
		return c, nil
	}
	top, err := stringMap(doc)
	if err != nil {
		return nil, fmt.Errorf("config file %s: top level: %w", path, err)
	}
	if err := c.walk("", top, names, perSpool); err != nil {
		return nil, fmt.Errorf("config file %s: %w", path, err)
	}
	return c, nil
}

// stringMap returns v as a mapping with string keys.
func stringMap(v any) (map[string]any, error) {
	switch m := v.(type) {
	case map[string]any:
		return m, nil
	case map[any]any:
		out := make(map[string]any, len(m))
		for k, x := range m {
			s, ok := k.(string)
			if !ok {
				return nil, fmt.Errorf("key %v is not a string", k)
			}
			out[s] = x
		}
		return out, nil
	}
	return nil, fmt.Errorf("want a mapping, got %T", v)
}

func (c *configFile) walk(prefix string, m map[string]any, names map[string]bool, perSpool spoolFlagSet) error {
	for _, k := range slices.Sorted(maps.Keys(m)) {
		v := m[k]
		key := prefix + strings.ReplaceAll(k, "_", "-")
		switch {
		case key == "spools" && prefix == "":
			spools, err := parseSpools(v, perSpool)
			if err != nil {
				return fmt.Errorf("spools: %w", err)
			}
			c.spools = spools
		case key == "config" || key == "help" || key == "version":
			return fmt.Errorf("key %q cannot be set in a configuration file", key)
		case names[key]:
			if _, dup := c.values[key]; dup {
				return fmt.Errorf("key %q given twice", key)
			}
			c.values[key] = v
		case hasPrefix(names, key+"."):
			sub, err := stringMap(v)
			if err != nil {
				return fmt.Errorf("%s: %w", key, err)
			}
			if err := c.walk(key+".", sub, names, perSpool); err != nil {
				return err
			}
		default:
			return fmt.Errorf("unknown key %q (keys are long flag names, or spools)", key)
		}
	}
	return nil
}

func hasPrefix(names map[string]bool, prefix string) bool {
	for n := range names {
		if strings.HasPrefix(n, prefix) {
			return true
		}
	}
	return false
}

// spoolFlagSet is the run flags that a spool of the spools: section can
// set for itself (the fields of RunCmd tagged spool:""), by long name, and
// their names in the order of RunCmd.
type spoolFlagSet struct {
	flags map[string]*kong.Flag
	names []string
}

// spoolFlags returns the flags of the run command tagged spool:"".
func spoolFlags(root *kong.Node) spoolFlagSet {
	set := spoolFlagSet{flags: map[string]*kong.Flag{}}
	for _, n := range root.Children {
		if n.Type != kong.CommandNode || n.Name != "run" {
			continue
		}
		for _, f := range n.Flags {
			if f.Tag.Has("spool") {
				set.flags[f.Name] = f
				set.names = append(set.names, f.Name)
			}
		}
	}
	return set
}

// parseSpools parses the spools: section, a mapping from spool name to its
// directory and settings.
func parseSpools(v any, perSpool spoolFlagSet) ([]spoolConfig, error) {
	if v == nil {
		return nil, nil
	}
	m, err := stringMap(v)
	if err != nil {
		return nil, err
	}
	var out []spoolConfig
	for _, name := range slices.Sorted(maps.Keys(m)) {
		if err := validSpoolName(name); err != nil {
			return nil, err
		}
		sc := spoolConfig{Name: name}
		if m[name] != nil {
			fields, err := stringMap(m[name])
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			if err := sc.parse(fields, perSpool); err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
		}
		out = append(out, sc)
	}
	return out, nil
}

// parse reads a spool's dir and settings, each decoded as its flag decodes
// a value, and checks them as run checks its flags.
func (sc *spoolConfig) parse(fields map[string]any, perSpool spoolFlagSet) error {
	for _, k := range slices.Sorted(maps.Keys(fields)) {
		v := fields[k]
		key := strings.ReplaceAll(k, "_", "-")
		if key == "dir" {
			var err error
			sc.Dir, err = scalar(v)
			if err == nil && sc.Dir == "" {
				err = errors.New("empty")
			}
			if err != nil {
				return fmt.Errorf("dir: %w", err)
			}
			continue
		}
		flag, ok := perSpool.flags[key]
		if !ok {
			return fmt.Errorf("unknown key %q (want dir, %s)", key, strings.Join(perSpool.names, ", "))
		}
		raw, err := configValue(flag, v)
		var val reflect.Value
		if err == nil {
			val, err = decodeValue(flag, raw)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", key, err)
		}
		if sc.settings == nil {
			sc.settings = map[string]reflect.Value{}
		}
		sc.settings[key] = val
	}
	// Checked over a base that is valid, so that an error is the spool's,
	// and said now rather than when the spool would be started.
	valid := RunCmd{CheckEvery: 1, FullRescanEvery: 1, MaxUnregistered: 1, MaxQueues: 1, MaxWatches: 1}
	if _, err := valid.withSettings(*sc).baseConfig(); err != nil {
		return err
	}
	return nil
}

// validQueue checks a queue name given in a flag or the configuration.
func validQueue(q string) error {
	if err := spool.ValidateName(q); err != nil {
		return fmt.Errorf("queue: %w", err)
	}
	return nil
}

// validSpoolName checks a spool's name (the spool label of its series).
func validSpoolName(name string) error {
	if err := spool.ValidateName(name); err != nil {
		return fmt.Errorf("spool name: %w", err)
	}
	if strings.ContainsAny(name, "=,") {
		return fmt.Errorf("spool name %q: contains '=' or ','", name)
	}
	return nil
}
