package reliability

import (
	"bufio"
	"os"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// dockerStage is one FROM stage of a Dockerfile: its instructions, with
// continuation lines joined.
type dockerStage struct {
	from  string
	instr [][2]string // keyword (upper case), arguments
}

// parseDockerfile splits a Dockerfile into stages. It knows comments,
// line continuations and the parser directives at the top, which is all
// this repository's Dockerfile uses.
func parseDockerfile(path string) ([]dockerStage, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var stages []dockerStage
	var cur strings.Builder
	flush := func() {
		line := strings.TrimSpace(cur.String())
		cur.Reset()
		if line == "" {
			return
		}
		kw, args, _ := strings.Cut(line, " ")
		kw = strings.ToUpper(kw)
		args = strings.TrimSpace(args)
		if kw == "FROM" {
			stages = append(stages, dockerStage{from: args})
			return
		}
		if len(stages) > 0 {
			st := &stages[len(stages)-1]
			st.instr = append(st.instr, [2]string{kw, args})
		}
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Text()
		if t := strings.TrimSpace(line); strings.HasPrefix(t, "#") {
			continue
		}
		if strings.HasSuffix(line, "\\") {
			cur.WriteString(strings.TrimSuffix(line, "\\"))
			cur.WriteByte(' ')
			continue
		}
		cur.WriteString(line)
		flush()
	}
	flush()
	return stages, sc.Err()
}

// isRootUser reports whether a USER argument (user[:group]) is root.
func isRootUser(arg string) bool {
	u, _, _ := strings.Cut(strings.TrimSpace(arg), ":")
	return u == "" || u == "root" || u == "0"
}

// TestContainerRunsAsNonRoot checks that the image the Dockerfile builds
// runs the agent as an unprivileged user: the final stage's last USER is
// not root and comes after every RUN (so nothing later switches back), and
// docker-compose.yml neither overrides the agent's user with root nor makes
// it privileged.
func TestContainerRunsAsNonRoot(t *testing.T) {
	stages, err := parseDockerfile("../Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	if len(stages) == 0 {
		t.Fatal("no FROM in the Dockerfile")
	}
	final := stages[len(stages)-1]
	user, userAt, lastRun := "", -1, -1
	for i, in := range final.instr {
		switch in[0] {
		case "USER":
			user, userAt = in[1], i
		case "RUN":
			lastRun = i
		}
	}
	if userAt < 0 {
		t.Fatalf("the final stage (FROM %s) has no USER: the container would run as root", final.from)
	}
	if isRootUser(user) {
		t.Fatalf("the final stage's USER is %q: root", user)
	}
	if lastRun > userAt {
		t.Errorf("a RUN comes after USER %s in the final stage", user)
	}
	t.Logf("final stage FROM %s runs as USER %s", final.from, user)

	b, err := os.ReadFile("../docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			User       string   `yaml:"user"`
			Privileged bool     `yaml:"privileged"`
			Image      string   `yaml:"image"`
			CapAdd     []string `yaml:"cap_add"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	agent, ok := compose.Services["spool-agent"]
	if !ok {
		t.Fatal("docker-compose.yml has no spool-agent service")
	}
	if agent.User != "" && isRootUser(agent.User) {
		t.Errorf("docker-compose.yml runs spool-agent as user %q", agent.User)
	}
	if agent.Privileged || len(agent.CapAdd) > 0 {
		t.Errorf("docker-compose.yml gives spool-agent privileges: privileged=%v cap_add=%v", agent.Privileged, agent.CapAdd)
	}
}

func TestIsRootUser(t *testing.T) {
	for arg, want := range map[string]bool{
		"root": true, "0": true, "0:0": true, "root:spool": true, "": true,
		"10001:10001": false, "spool": false, "nobody:nogroup": false, "65534": false,
	} {
		if got := isRootUser(arg); got != want {
			t.Errorf("isRootUser(%q) = %v, want %v", arg, got, want)
		}
	}
}
