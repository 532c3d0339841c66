package deploy

import (
	"bufio"
	"bytes"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	monitoringv1 "github.com/prometheus-operator/prometheus-operator/pkg/apis/monitoring/v1"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/util/intstr"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
	"sigs.k8s.io/yaml"
)

var update = flag.Bool("update", false, "rewrite the generated files of deploy/kubernetes")

const (
	kubeDir = "kubernetes"
	// The generated files of the kustomize base and their sources.
	kubeRules     = "kubernetes/prometheusrule.yaml"
	kubeDashboard = "kubernetes/spool-agent.json"
	thresholds    = "alertrules/thresholds.yaml" // relative to the root
	dashboardSrc  = "dashboards/spool-agent.json"
)

// genrules runs alertrules/cmd/genrules on the thresholds file, from the
// repository's root, and returns the rules it writes.
func genrules(t *testing.T) []byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "go", "run", "./alertrules/cmd/genrules", "-config", thresholds)
	cmd.Dir = repoRoot
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go run ./alertrules/cmd/genrules -config %s: %v\n%s", thresholds, err, stderr.Bytes())
	}
	return out
}

// prometheusRule wraps the rules that genrules wrote (a rule file: a
// comment, then groups:) into a PrometheusRule object, keeping the groups'
// text as genrules wrote it.
func prometheusRule(rules []byte) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString(`# Code generated from alertrules/thresholds.yaml by alertrules/cmd/genrules
# (wrapped by deploy/kubernetes_test.go). DO NOT EDIT: change the thresholds,
# then run (cd deploy && go test -run TestKubernetesGenerated -update).
apiVersion: monitoring.coreos.com/v1
kind: PrometheusRule
metadata:
  name: spool-agent
  labels:
    app.kubernetes.io/name: spool-agent
spec:
`)
	sc := bufio.NewScanner(bytes.NewReader(rules))
	sawGroups := false
	for sc.Scan() {
		line := sc.Text()
		if !sawGroups {
			if strings.HasPrefix(line, "#") || line == "" {
				continue
			}
			if line != "groups:" {
				return nil, fmt.Errorf("genrules output: want groups: after the comment, got %q", line)
			}
			sawGroups = true
		}
		if line == "" {
			b.WriteString("\n")
			continue
		}
		b.WriteString("  " + line + "\n")
	}
	if !sawGroups {
		return nil, fmt.Errorf("genrules output has no groups")
	}
	return b.Bytes(), sc.Err()
}

// TestKubernetesGenerated checks that the PrometheusRule is what genrules
// makes of the thresholds file, and the dashboard ConfigMap's file the
// repository's dashboard: one source for each. -update rewrites them.
func TestKubernetesGenerated(t *testing.T) {
	rule, err := prometheusRule(genrules(t))
	if err != nil {
		t.Fatal(err)
	}
	dashboard, err := os.ReadFile(filepath.Join(repoRoot, dashboardSrc))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range []struct {
		path string
		want []byte
		from string
	}{
		{kubeRules, rule, "genrules -config " + thresholds},
		{kubeDashboard, dashboard, dashboardSrc},
	} {
		if *update {
			if err := os.WriteFile(f.path, f.want, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(f.path)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, f.want) {
			t.Errorf("deploy/%s is not what %s gives: run (cd deploy && go test -run TestKubernetesGenerated -update)", f.path, f.from)
		}
	}
}

// kubeObjects is the rendered base, decoded strictly.
type kubeObjects struct {
	daemonSet  *appsv1.DaemonSet
	service    *corev1.Service
	configMap  *corev1.ConfigMap
	podMonitor *monitoringv1.PodMonitor
	rule       *monitoringv1.PrometheusRule
}

// renderKustomize builds deploy/kubernetes as `kubectl apply -k` would and
// decodes every object into its API type, failing on any field the type
// does not have (a misspelt field), on a kind the base should not hold,
// and on a missing one.
func renderKustomize(t *testing.T) kubeObjects {
	t.Helper()
	k := krusty.MakeKustomizer(krusty.MakeDefaultOptions())
	m, err := k.Run(filesys.MakeFsOnDisk(), kubeDir)
	if err != nil {
		t.Fatalf("kustomize build %s: %v", kubeDir, err)
	}
	var objs kubeObjects
	for _, r := range m.Resources() {
		y, err := r.AsYAML()
		if err != nil {
			t.Fatal(err)
		}
		gvk := r.GetGvk()
		key := gvk.Group + "/" + gvk.Version + "/" + gvk.Kind
		var into any
		switch key {
		case "apps/v1/DaemonSet":
			objs.daemonSet = new(appsv1.DaemonSet)
			into = objs.daemonSet
		case "/v1/Service":
			objs.service = new(corev1.Service)
			into = objs.service
		case "/v1/ConfigMap":
			objs.configMap = new(corev1.ConfigMap)
			into = objs.configMap
		case "monitoring.coreos.com/v1/PodMonitor":
			objs.podMonitor = new(monitoringv1.PodMonitor)
			into = objs.podMonitor
		case "monitoring.coreos.com/v1/PrometheusRule":
			objs.rule = new(monitoringv1.PrometheusRule)
			into = objs.rule
		default:
			t.Errorf("unexpected object %s %s", key, r.GetName())
			continue
		}
		// UnmarshalStrict rejects unknown and duplicate fields.
		if err := yaml.UnmarshalStrict(y, into); err != nil {
			t.Errorf("%s %s: %v\n%s", key, r.GetName(), err, y)
		}
	}
	if objs.daemonSet == nil || objs.service == nil || objs.configMap == nil || objs.podMonitor == nil || objs.rule == nil {
		t.Fatalf("the base lacks an object: %+v", objs)
	}
	return objs
}

// TestStrictDecodeCatchesMisspeltFields makes sure the strict decoding
// above would fail on a misspelt field.
func TestStrictDecodeCatchesMisspeltFields(t *testing.T) {
	bad := []byte("apiVersion: apps/v1\nkind: DaemonSet\nmetadata: {name: x}\nspec:\n  template:\n    spec:\n      containers:\n        - name: x\n          readinessProbes: {}\n")
	if err := yaml.UnmarshalStrict(bad, new(appsv1.DaemonSet)); err == nil {
		t.Fatal("a misspelt field decoded without error")
	}
}

func TestKubernetesBase(t *testing.T) {
	objs := renderKustomize(t)
	ds := objs.daemonSet
	pod := ds.Spec.Template
	podLabels := labels.Set(pod.Labels)

	sel, err := metav1LabelSelector(ds.Spec.Selector)
	if err != nil || !sel.Matches(podLabels) {
		t.Errorf("DaemonSet selector %v does not match its pods' labels %v (%v)", ds.Spec.Selector, pod.Labels, err)
	}
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("want one container, got %d", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// Non-root, read-only root file system, nothing to escalate.
	psc, csc := pod.Spec.SecurityContext, c.SecurityContext
	if psc == nil || psc.RunAsNonRoot == nil || !*psc.RunAsNonRoot || psc.RunAsUser == nil || *psc.RunAsUser == 0 {
		t.Error("the pod must run as a non-root user")
	}
	if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem {
		t.Error("the container's root file system must be read-only")
	}
	if csc == nil || csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation ||
		csc.Capabilities == nil || !slices.Equal(csc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Error("the container must drop every capability and not escalate")
	}
	if c.Resources.Requests.Cpu().IsZero() || c.Resources.Requests.Memory().IsZero() || c.Resources.Limits.Memory().IsZero() {
		t.Errorf("want CPU and memory requests and a memory limit, got %+v", c.Resources)
	}

	// The spools: hostPath volumes, mounted read-only.
	hostPaths := map[string]string{}
	for _, v := range pod.Spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
	}
	mounted := map[string]string{} // mount path -> host path
	for _, vm := range c.VolumeMounts {
		hp, ok := hostPaths[vm.Name]
		if !ok {
			continue
		}
		if !vm.ReadOnly {
			t.Errorf("hostPath volume %s (%s) is mounted writable", vm.Name, hp)
		}
		mounted[vm.MountPath] = hp
	}
	if len(mounted) == 0 {
		t.Fatal("no spool directory is mounted from the host")
	}

	// The port the agent listens on is the container's port, which the
	// probes, the Service and the PodMonitor name.
	if len(c.Ports) != 1 {
		t.Fatalf("want one container port, got %v", c.Ports)
	}
	port := c.Ports[0]
	args := slices.Clone(c.Args)
	if len(c.Command) > 0 || len(args) == 0 || args[0] != "run" {
		t.Fatalf("want the image's entrypoint with args run ..., got command %q args %q", c.Command, c.Args)
	}
	listen := flagValues(args, "--web.listen-address")
	if len(listen) != 1 || !strings.HasSuffix(listen[0], fmt.Sprintf(":%d", port.ContainerPort)) {
		t.Errorf("--web.listen-address %q does not listen on the container port %d", listen, port.ContainerPort)
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
	}{{"liveness", c.LivenessProbe}, {"readiness", c.ReadinessProbe}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("no HTTP %s probe", pr.name)
			continue
		}
		if pr.probe.HTTPGet.Port != intstr.FromString(port.Name) && pr.probe.HTTPGet.Port != intstr.FromInt32(port.ContainerPort) {
			t.Errorf("%s probe port %v is not the container's port %s", pr.name, pr.probe.HTTPGet.Port.String(), port.Name)
		}
	}
	svc := objs.service
	if !labels.SelectorFromSet(svc.Spec.Selector).Matches(podLabels) {
		t.Errorf("Service selector %v does not match the pods", svc.Spec.Selector)
	}
	if len(svc.Spec.Ports) != 1 || svc.Spec.Ports[0].TargetPort != intstr.FromString(port.Name) {
		t.Errorf("Service ports %v do not target %s", svc.Spec.Ports, port.Name)
	}
	pm := objs.podMonitor
	pmSel, err := metav1LabelSelector(&pm.Spec.Selector)
	if err != nil || !pmSel.Matches(podLabels) {
		t.Errorf("PodMonitor selector does not match the pods (%v)", err)
	}
	if len(pm.Spec.PodMetricsEndpoints) != 1 || pm.Spec.PodMetricsEndpoints[0].Port == nil || *pm.Spec.PodMetricsEndpoints[0].Port != port.Name {
		t.Errorf("PodMonitor endpoints %+v do not scrape port %s", pm.Spec.PodMetricsEndpoints, port.Name)
	} else if p := pm.Spec.PodMetricsEndpoints[0].Path; p != "" && p != "/metrics" {
		t.Errorf("PodMonitor scrapes %s, not /metrics", p)
	}
	// The rules select job="spool-agent": the PodMonitor's job label must be that.
	job := pod.Labels[pm.Spec.JobLabel]
	if pm.Spec.JobLabel == "" || !strings.Contains(rulesSelector(t), fmt.Sprintf("job=%q", job)) {
		t.Errorf("the PodMonitor's job label (pod label %q = %q) is not the rules' selector %s", pm.Spec.JobLabel, job, rulesSelector(t))
	}

	// The dashboard ConfigMap, for Grafana's sidecar.
	cm := objs.configMap
	if cm.Labels["grafana_dashboard"] != "1" {
		t.Errorf("dashboard ConfigMap labels %v: want grafana_dashboard: \"1\"", cm.Labels)
	}
	want, err := os.ReadFile(filepath.Join(repoRoot, dashboardSrc))
	if err != nil {
		t.Fatal(err)
	}
	if cm.Data["spool-agent.json"] != string(want) {
		t.Errorf("the dashboard ConfigMap does not hold %s", dashboardSrc)
	}

	// The PrometheusRule holds what genrules makes of the thresholds.
	var gen struct {
		Groups []monitoringv1.RuleGroup `json:"groups"`
	}
	if err := yaml.UnmarshalStrict(genrules(t), &gen); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(objs.rule.Spec.Groups, gen.Groups) {
		t.Error("the PrometheusRule's groups differ from genrules' output")
	}

	t.Run("promtool", func(t *testing.T) { checkRulesWithPromtool(t, objs.rule) })
	t.Run("agent", func(t *testing.T) { checkAgentServesProbes(t, c, mounted) })
}

// rulesSelector returns the selector of alertrules/thresholds.yaml.
func rulesSelector(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(repoRoot, thresholds))
	if err != nil {
		t.Fatal(err)
	}
	var cfg struct {
		Selector string `json:"selector"`
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	return cfg.Selector
}

// checkRulesWithPromtool checks the PrometheusRule's groups as a rule file,
// as alertrules checks its own.
func checkRulesWithPromtool(t *testing.T, rule *monitoringv1.PrometheusRule) {
	promtool := lookTool(t, "promtool", "apt-get install prometheus")
	b, err := yaml.Marshal(map[string]any{"groups": rule.Spec.Groups})
	if err != nil {
		t.Fatal(err)
	}
	f := filepath.Join(t.TempDir(), "rules.yml")
	if err := os.WriteFile(f, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(promtool, "check", "rules", f).CombinedOutput(); err != nil {
		t.Errorf("promtool check rules: %v\n%s", err, out)
	}
}

var servingRE = regexp.MustCompile(`serving metrics on (http://\S+)/metrics`)

// checkAgentServesProbes runs the agent with the DaemonSet's arguments
// (spool directories under a temporary "host", and a free port instead of
// the container's) and the container's environment, and gets the probes'
// paths and /metrics from it: the flags exist, the glob finds a spool, and
// the probes' endpoints answer 200.
func checkAgentServesProbes(t *testing.T, c corev1.Container, mounted map[string]string) {
	bin := agentBinary(t)
	host := t.TempDir()
	if out, err := exec.Command(bin, "init", filepath.Join(host, "app"), "--queue", "active").CombinedOutput(); err != nil {
		t.Fatalf("spool-agent init: %v\n%s", err, out)
	}
	var args []string
	for _, a := range c.Args {
		if strings.HasPrefix(a, "--web.listen-address") {
			a = "--web.listen-address=127.0.0.1:0"
		}
		for mountPath := range mounted {
			a = strings.ReplaceAll(a, mountPath, host)
		}
		args = append(args, a)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	for _, e := range c.Env {
		switch {
		case e.Name == "STATE_DIRECTORY":
			env = append(env, e.Name+"="+t.TempDir())
		case e.ValueFrom != nil && e.ValueFrom.ResourceFieldRef != nil:
			q := c.Resources.Limits[corev1.ResourceName(strings.TrimPrefix(e.ValueFrom.ResourceFieldRef.Resource, "limits."))]
			env = append(env, fmt.Sprintf("%s=%d", e.Name, q.Value()))
		case e.ValueFrom == nil:
			env = append(env, e.Name+"="+e.Value)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	base, stop := startAgent(t, cmd)
	defer stop()

	paths := []string{c.LivenessProbe.HTTPGet.Path, c.ReadinessProbe.HTTPGet.Path}
	for _, p := range paths {
		body := get(t, ctx, base+p)
		t.Logf("GET %s: %q", p, strings.TrimSpace(body))
	}
	// The glob found the spool under the "host" directory.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if strings.Contains(get(t, ctx, base+"/metrics"), `spool_up{spool="app"} 1`) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("/metrics never showed spool_up{spool=\"app\"} 1 with args %q", args)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// get fetches url and fails the test unless the status is 200.
func get(t *testing.T, ctx context.Context, url string) string {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s", url, resp.Status)
	}
	return string(b)
}

// flagValues returns the values of flag name in args (--name=value or
// --name value).
func flagValues(args []string, name string) []string {
	var out []string
	for i, a := range args {
		if v, ok := strings.CutPrefix(a, name+"="); ok {
			out = append(out, v)
		} else if a == name && i+1 < len(args) {
			out = append(out, args[i+1])
		}
	}
	return out
}
