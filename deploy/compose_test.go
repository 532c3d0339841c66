package deploy

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
	"gopkg.in/yaml.v3"
)

// repoRoot is the repository's root, relative to this package.
const repoRoot = ".."

// wantServices are the services the demo must have.
var wantServices = []string{"alertmanager", "demo-workload", "grafana", "otel-collector", "prometheus", "spool-agent"}

func abs(t *testing.T, p string) string {
	t.Helper()
	a, err := filepath.Abs(p)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// loadProject loads docker-compose.yml with the compose-spec loader, which
// validates it against the compose schema, with paths made absolute.
func loadProject(t *testing.T) *types.Project {
	t.Helper()
	root := abs(t, repoRoot)
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithResolvedPaths(true),
		// Only the file decides: no .env, no COMPOSE_* from the caller.
		cli.WithEnv(nil),
	)
	if err != nil {
		t.Fatal(err)
	}
	p, err := opts.LoadProject(context.Background())
	if err != nil {
		t.Fatalf("load docker-compose.yml: %v", err)
	}
	return p
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

// inRepo checks that path exists and lies inside the repository.
func inRepo(t *testing.T, what, path string) {
	t.Helper()
	rel, err := filepath.Rel(abs(t, repoRoot), path)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		t.Errorf("%s: %s is outside the repository", what, path)
		return
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("%s: %v", what, err)
	}
}

// mountTarget returns the container path at which service s mounts the
// repository path src (relative to the root), or "".
func mountTarget(t *testing.T, s types.ServiceConfig, src string) string {
	t.Helper()
	want := abs(t, filepath.Join(repoRoot, src))
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeBind && filepath.Clean(v.Source) == want {
			return v.Target
		}
	}
	return ""
}

// volumeTarget returns where s mounts the named volume, or "".
func volumeTarget(s types.ServiceConfig, volume string) string {
	for _, v := range s.Volumes {
		if v.Type == types.VolumeTypeVolume && v.Source == volume {
			return v.Target
		}
	}
	return ""
}

func flagValue(args []string, name string) string {
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			return v
		}
		if a == name && i+1 < len(args) {
			return args[i+1]
		}
	}
	return ""
}

func TestComposeHasEveryService(t *testing.T) {
	p := loadProject(t)
	got := p.ServiceNames()
	slices.Sort(got)
	if !slices.Equal(got, wantServices) {
		t.Errorf("services = %q, want %q", got, wantServices)
	}
	for _, s := range p.Services {
		if s.Image == "" && s.Build == nil {
			t.Errorf("%s: neither image nor build", s.Name)
		}
	}
}

func TestComposeMountsAndBuildsOnlyWhatExists(t *testing.T) {
	p := loadProject(t)
	binds := 0
	for _, s := range p.Services {
		if s.Build != nil {
			inRepo(t, s.Name+" build context", s.Build.Context)
			inRepo(t, s.Name+" Dockerfile", filepath.Join(s.Build.Context, s.Build.Dockerfile))
		}
		for _, v := range s.Volumes {
			switch v.Type {
			case types.VolumeTypeBind:
				binds++
				inRepo(t, s.Name+" mount "+v.Target, v.Source)
				if !v.ReadOnly {
					t.Errorf("%s: bind mount of %s is writable; mount repository files read-only", s.Name, v.Source)
				}
			case types.VolumeTypeVolume:
				if _, ok := p.Volumes[v.Source]; !ok {
					t.Errorf("%s: volume %q is not declared", s.Name, v.Source)
				}
			default:
				t.Errorf("%s: unexpected mount type %q", s.Name, v.Type)
			}
		}
	}
	if binds < 6 {
		t.Errorf("only %d bind mounts: the demo should mount its configuration from the repository", binds)
	}
}

func TestComposeAgentAndWorkloadShareTheSpool(t *testing.T) {
	p := loadProject(t)
	agent := service(t, p, "spool-agent")
	work := service(t, p, "demo-workload")

	if agent.Build == nil || filepath.Clean(agent.Build.Context) != abs(t, repoRoot) || agent.Build.Dockerfile != "Dockerfile" {
		t.Errorf("spool-agent must build from the root Dockerfile, got %+v", agent.Build)
	}
	if work.Image != agent.Image || work.Image == "" {
		t.Errorf("demo-workload image %q, want the agent's %q", work.Image, agent.Image)
	}
	if len(agent.Command) == 0 || agent.Command[0] != "run" {
		t.Fatalf("spool-agent command %q does not start with run", agent.Command)
	}
	spool := flagValue(agent.Command, "--spool")
	name, dir, ok := strings.Cut(spool, "=")
	if !ok || name == "" {
		t.Fatalf("spool-agent --spool %q is not NAME=DIR", spool)
	}
	if addr := flagValue(agent.Command, "--web.listen-address"); !strings.HasSuffix(addr, ":19317") {
		t.Errorf("--web.listen-address = %q, want port 19317", addr)
	}
	at := volumeTarget(agent, "spool")
	wt := volumeTarget(work, "spool")
	if at == "" || wt == "" {
		t.Fatalf("the spool volume is not mounted in both (agent %q, workload %q)", at, wt)
	}
	if !strings.HasPrefix(dir, at+"/") {
		t.Errorf("agent's spool %s is not on the spool volume (%s)", dir, at)
	}
	workDir := ""
	if work.Environment["SPOOL"] != nil {
		workDir = *work.Environment["SPOOL"]
	}
	if strings.TrimPrefix(workDir, wt) != strings.TrimPrefix(dir, at) {
		t.Errorf("workload's SPOOL=%q and agent's %q are different directories of the volume", workDir, dir)
	}
	script := mountTarget(t, work, "deploy/demo/workload.sh")
	if script == "" || !slices.Contains(work.Entrypoint, script) {
		t.Errorf("workload entrypoint %q does not run the mounted deploy/demo/workload.sh (%q)", work.Entrypoint, script)
	}
	if dep, ok := agent.DependsOn["demo-workload"]; !ok || dep.Condition != types.ServiceConditionHealthy || work.HealthCheck == nil {
		t.Errorf("the agent should wait for the workload to create the spool (healthcheck + service_healthy)")
	}
	published := false
	for _, port := range agent.Ports {
		if port.Target == 19317 && port.Published == "19317" {
			published = true
		}
	}
	if !published {
		t.Errorf("spool-agent does not publish 19317")
	}
}

func TestComposeAgentSendsOTLPToTheCollector(t *testing.T) {
	p := loadProject(t)
	agent := service(t, p, "spool-agent")
	ep := agent.Environment["OTEL_EXPORTER_OTLP_ENDPOINT"]
	if ep == nil {
		t.Fatal("spool-agent has no OTEL_EXPORTER_OTLP_ENDPOINT")
	}
	m := regexp.MustCompile(`^https?://otel-collector:(\d+)$`).FindStringSubmatch(*ep)
	if m == nil {
		t.Fatalf("OTEL_EXPORTER_OTLP_ENDPOINT = %q, want http://otel-collector:PORT", *ep)
	}
	proto := ""
	if v := agent.Environment["OTEL_EXPORTER_OTLP_PROTOCOL"]; v != nil {
		proto = *v
	}
	wantProto := map[string]string{"4318": "http", "4317": "grpc"}[m[1]]
	if wantProto == "" || (proto != "" && !strings.HasPrefix(proto, wantProto)) {
		t.Errorf("endpoint port %s does not match protocol %q", m[1], proto)
	}

	col := service(t, p, "otel-collector")
	target := mountTarget(t, col, "deploy/otel-collector/otel-collector.yaml")
	if target == "" || !slices.Contains(col.Command, "--config="+target) {
		t.Errorf("otel-collector does not load the mounted deploy/otel-collector/otel-collector.yaml (command %q)", col.Command)
	}
	var cfg struct {
		Receivers struct {
			OTLP struct {
				Protocols map[string]struct {
					Endpoint string `yaml:"endpoint"`
				} `yaml:"protocols"`
			} `yaml:"otlp"`
		} `yaml:"receivers"`
		Service struct {
			Pipelines map[string]struct {
				Receivers []string `yaml:"receivers"`
			} `yaml:"pipelines"`
		} `yaml:"service"`
	}
	readYAML(t, "otel-collector/otel-collector.yaml", &cfg)
	if ep := cfg.Receivers.OTLP.Protocols[wantProto].Endpoint; !strings.HasSuffix(ep, ":"+m[1]) {
		t.Errorf("collector's otlp %s receiver listens on %q, the agent sends to port %s", wantProto, ep, m[1])
	}
	for _, pl := range []string{"metrics", "logs"} {
		if !slices.Contains(cfg.Service.Pipelines[pl].Receivers, "otlp") {
			t.Errorf("collector's %s pipeline does not receive otlp", pl)
		}
	}
}

// prometheusConfig is the part of prometheus.yml the tests read.
type prometheusConfig struct {
	RuleFiles []string `yaml:"rule_files"`
	Alerting  struct {
		Alertmanagers []struct {
			StaticConfigs []struct {
				Targets []string `yaml:"targets"`
			} `yaml:"static_configs"`
		} `yaml:"alertmanagers"`
	} `yaml:"alerting"`
	ScrapeConfigs []struct {
		JobName       string `yaml:"job_name"`
		StaticConfigs []struct {
			Targets []string `yaml:"targets"`
		} `yaml:"static_configs"`
	} `yaml:"scrape_configs"`
}

func readYAML(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, v); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
}

func TestComposePrometheusLoadsTheRulesAndScrapesTheAgent(t *testing.T) {
	p := loadProject(t)
	prom := service(t, p, "prometheus")
	cfgPath := mountTarget(t, prom, "deploy/prometheus/prometheus.yml")
	if cfgPath == "" || flagValue(prom.Command, "--config.file") != cfgPath {
		t.Errorf("prometheus does not load the mounted deploy/prometheus/prometheus.yml")
	}
	rules := mountTarget(t, prom, "alertrules/spool-agent.rules.yml")
	if rules == "" {
		t.Fatal("prometheus does not mount alertrules/spool-agent.rules.yml")
	}

	var cfg prometheusConfig
	readYAML(t, "prometheus/prometheus.yml", &cfg)
	loaded := false
	for _, g := range cfg.RuleFiles {
		if ok, _ := filepath.Match(g, rules); ok {
			loaded = true
		}
	}
	if !loaded {
		t.Errorf("rule_files %q do not match the mounted rules %s", cfg.RuleFiles, rules)
	}
	scraped := false
	for _, sc := range cfg.ScrapeConfigs {
		if sc.JobName != "spool-agent" {
			continue
		}
		for _, st := range sc.StaticConfigs {
			if slices.Contains(st.Targets, "spool-agent:19317") {
				scraped = true
			}
		}
	}
	if !scraped {
		t.Error(`no scrape job "spool-agent" with target spool-agent:19317`)
	}
	am := false
	for _, a := range cfg.Alerting.Alertmanagers {
		for _, st := range a.StaticConfigs {
			for _, tg := range st.Targets {
				host, _, _ := strings.Cut(tg, ":")
				if _, err := p.GetService(host); err == nil && host == "alertmanager" {
					am = true
				}
			}
		}
	}
	if !am {
		t.Error("prometheus does not send alerts to the alertmanager service")
	}
	amSvc := service(t, p, "alertmanager")
	amCfg := mountTarget(t, amSvc, "deploy/alertmanager/alertmanager.yml")
	if amCfg == "" || flagValue(amSvc.Command, "--config.file") != amCfg {
		t.Error("alertmanager does not load the mounted deploy/alertmanager/alertmanager.yml")
	}
}

func TestComposeGrafanaIsProvisioned(t *testing.T) {
	p := loadProject(t)
	g := service(t, p, "grafana")
	if mountTarget(t, g, "deploy/grafana/provisioning/datasources") != "/etc/grafana/provisioning/datasources" {
		t.Error("grafana does not mount the datasource provisioning")
	}
	if mountTarget(t, g, "deploy/grafana/provisioning/dashboards") != "/etc/grafana/provisioning/dashboards" {
		t.Error("grafana does not mount the dashboard provisioning")
	}
	dashDir := mountTarget(t, g, "dashboards")
	if dashDir == "" {
		t.Fatal("grafana does not mount dashboards/")
	}
	var prov struct {
		Providers []struct {
			Type    string `yaml:"type"`
			Options struct {
				Path string `yaml:"path"`
			} `yaml:"options"`
		} `yaml:"providers"`
	}
	readYAML(t, "grafana/provisioning/dashboards/spool-agent.yaml", &prov)
	if len(prov.Providers) != 1 || prov.Providers[0].Type != "file" || prov.Providers[0].Options.Path != dashDir {
		t.Errorf("dashboard provider %+v does not read %s", prov.Providers, dashDir)
	}
	if _, err := os.Stat(filepath.Join(repoRoot, "dashboards", "spool-agent.json")); err != nil {
		t.Error(err)
	}
	var ds struct {
		Datasources []struct {
			Type string `yaml:"type"`
			URL  string `yaml:"url"`
		} `yaml:"datasources"`
	}
	readYAML(t, "grafana/provisioning/datasources/prometheus.yaml", &ds)
	if len(ds.Datasources) != 1 || ds.Datasources[0].Type != "prometheus" || ds.Datasources[0].URL != "http://prometheus:9090" {
		t.Errorf("datasources = %+v, want the prometheus service", ds.Datasources)
	}
}

// TestPrometheusConfigIsValid runs promtool on the demo's prometheus.yml,
// with the rule glob pointed at the repository's rules.
func TestPrometheusConfigIsValid(t *testing.T) {
	promtool := lookTool(t, "promtool", "apt-get install prometheus")
	b, err := os.ReadFile("prometheus/prometheus.yml")
	if err != nil {
		t.Fatal(err)
	}
	rules := abs(t, filepath.Join(repoRoot, "alertrules", "*.rules.yml"))
	b = []byte(strings.Replace(string(b), "/etc/prometheus/rules/*.rules.yml", rules, 1))
	f := filepath.Join(t.TempDir(), "prometheus.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(promtool, "check", "config", f).CombinedOutput()
	if err != nil {
		t.Fatalf("promtool check config: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "SUCCESS: 1 rule files found") {
		t.Errorf("the rules were not found:\n%s", out)
	}
}

func TestAlertmanagerConfigIsValid(t *testing.T) {
	amtool := lookTool(t, "amtool", "apt-get install prometheus-alertmanager")
	out, err := exec.Command(amtool, "check-config", "alertmanager/alertmanager.yml").CombinedOutput()
	if err != nil {
		t.Fatalf("amtool check-config: %v\n%s", err, out)
	}
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot, "Dockerfile"))
	if err != nil {
		t.Fatal(err)
	}
	var froms, users, exposes []string
	builds := false
	// Join continuation lines, as Docker does.
	text := regexp.MustCompile(`\\[ \t]*\n`).ReplaceAllString(string(b), " ")
	for _, line := range strings.Split(text, "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		switch strings.ToUpper(f[0]) {
		case "FROM":
			froms = append(froms, f[1])
			users = nil // USER applies per stage
			exposes = nil
		case "USER":
			users = append(users, f[1])
		case "EXPOSE":
			exposes = append(exposes, f[1:]...)
		}
		if strings.Contains(line, "go build") && strings.Contains(line, "./cmd/spool-agent") {
			builds = true
		}
	}
	if len(froms) < 2 || !strings.HasPrefix(froms[0], "golang:") {
		t.Errorf("FROM %q: want a multi-stage build starting from golang", froms)
	}
	if !builds {
		t.Error("the Dockerfile does not go build ./cmd/spool-agent")
	}
	if len(users) == 0 {
		t.Fatal("the runtime stage has no USER")
	}
	u := users[len(users)-1]
	if name, _, _ := strings.Cut(u, ":"); name == "root" || name == "0" {
		t.Errorf("the runtime stage runs as %q", u)
	}
	if !slices.Contains(exposes, "19317") {
		t.Errorf("EXPOSE %q, want 19317", exposes)
	}

	ignore, err := os.ReadFile(filepath.Join(repoRoot, ".dockerignore"))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ignore), "\n") {
		switch strings.TrimSpace(line) {
		case "*", "go.mod", "go.sum", "cmd", "cmd/", "spool", "monitor", "collector", "exporters":
			t.Errorf(".dockerignore excludes %q, which the build needs", line)
		}
	}
}
