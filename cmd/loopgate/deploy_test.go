package main

import (
	"bufio"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/loopgate/loopgate/internal/loopgatetest"
	appsv1 "k8s.io/api/apps/v1"
	autoscalingv2 "k8s.io/api/autoscaling/v2"
	corev1 "k8s.io/api/core/v1"
	policyv1 "k8s.io/api/policy/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"
)

const unitPath = "../../deploy/systemd/loopgate.service"

// readUnit parses a systemd unit into section.key -> values (in order).
func readUnit(t *testing.T, path string) map[string][]string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string][]string{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || line[0] == '#' || line[0] == ';':
		case line[0] == '[':
			section = strings.Trim(line, "[]")
		default:
			k, v, ok := strings.Cut(line, "=")
			if !ok {
				t.Fatalf("%s: bad line %q", path, line)
			}
			out[section+"."+k] = append(out[section+"."+k], v)
		}
	}
	return out
}

func one(t *testing.T, u map[string][]string, key, def string) string {
	t.Helper()
	v := u[key]
	switch len(v) {
	case 0:
		return def
	case 1:
		return v[0]
	}
	t.Fatalf("%s set %d times", key, len(v))
	return ""
}

var signalsByName = map[string]syscall.Signal{"TERM": syscall.SIGTERM, "INT": syscall.SIGINT, "HUP": syscall.SIGHUP, "QUIT": syscall.SIGQUIT, "USR1": syscall.SIGUSR1}

// TestSystemdUnit checks deploy/systemd/loopgate.service: systemd accepts
// it, its command line is valid for this binary, its stop timeout covers the
// drain, and the signals it sends do what the unit expects of the binary.
func TestSystemdUnit(t *testing.T) {
	loopgateBin := loopgatetest.Loopgate(t)
	u := readUnit(t, unitPath)
	if got := one(t, u, "Service.Type", "simple"); got != "notify" {
		t.Errorf("Type=%s, want notify", got)
	}
	if got := one(t, u, "Service.KillMode", "control-group"); got != "mixed" && got != "control-group" {
		t.Errorf("KillMode=%s, want mixed or control-group (no backend may outlive the service)", got)
	}
	if got := one(t, u, "Service.RestartPreventExitStatus", ""); got != strconv.Itoa(exitUsage) {
		t.Errorf("RestartPreventExitStatus=%s, want %d (configuration errors)", got, exitUsage)
	}
	m := regexp.MustCompile(`^/bin/kill -([A-Z0-9]+) \$MAINPID$`).FindStringSubmatch(one(t, u, "Service.ExecReload", ""))
	if m == nil {
		t.Fatalf("ExecReload=%q, want /bin/kill -SIG $MAINPID", one(t, u, "Service.ExecReload", ""))
	}
	reloadSig, ok := signalsByName[m[1]]
	if !ok || reloadSig != syscall.SIGHUP {
		t.Errorf("ExecReload sends SIG%s; loopgate reloads on SIGHUP", m[1])
	}
	stopSig := signalsByName[strings.TrimPrefix(one(t, u, "Service.KillSignal", "SIGTERM"), "SIG")]
	if stopSig != syscall.SIGTERM && stopSig != syscall.SIGINT {
		t.Errorf("KillSignal=%s; loopgate drains on SIGTERM or SIGINT", one(t, u, "Service.KillSignal", ""))
	}

	// The command line parses, and the stop timeout covers the drain plus
	// the default shutdownTimeLimit (10 s) of the backends.
	exec0 := strings.Fields(one(t, u, "Service.ExecStart", ""))
	if len(exec0) < 2 || exec0[0] != "/usr/local/bin/loopgate" || exec0[1] != "serve" {
		t.Fatalf("ExecStart=%q", exec0)
	}
	cfg, err := parseServe(exec0[2:])
	if err != nil {
		t.Fatalf("ExecStart flags: %v", err)
	}
	stopTimeout, err := time.ParseDuration(one(t, u, "Service.TimeoutStopSec", "90s"))
	if err != nil {
		t.Fatal(err)
	}
	if stopTimeout <= cfg.DrainTimeout+10*time.Second {
		t.Errorf("TimeoutStopSec=%v does not cover --drain-timeout %v + 10 s of backend shutdown", stopTimeout, cfg.DrainTimeout)
	}

	// systemd itself accepts the unit (with ExecStart pointing at the binary
	// just built, since verify checks that it exists).
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		raw, _ := os.ReadFile(unitPath)
		dir := t.TempDir()
		copyPath := filepath.Join(dir, "loopgate.service")
		os.WriteFile(copyPath, []byte(strings.ReplaceAll(string(raw), "/usr/local/bin/loopgate", loopgateBin)), 0o644)
		out, err := exec.Command(analyze, "verify", copyPath).CombinedOutput()
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s", err, out)
		}
	} else {
		t.Log("systemd-analyze not installed; unit syntax not verified by systemd")
	}

	// The binary behaves as the unit expects: READY=1 once serving, the
	// reload signal brackets a reload with RELOADING=1 ... READY=1, the stop
	// signal gives STOPPING=1 and a clean exit well within TimeoutStopSec.
	notifyEnv, next := notifySocket(t)
	in := loopgatetest.Start(t, loopgatetest.Options{Env: []string{notifyEnv}, Args: []string{backendApp(t, "")}})
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "READY=1\n") {
		t.Fatalf("after start: %q, want READY=1", msg)
	}
	in.Signal(reloadSig)
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "RELOADING=1\n") {
		t.Errorf("after the reload signal: %q, want RELOADING=1", msg)
	}
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "READY=1\n") {
		t.Errorf("after the reload: %q, want READY=1", msg)
	}
	in.Signal(stopSig)
	if msg := next(5 * time.Second); !strings.HasPrefix(msg, "STOPPING=1\n") {
		t.Errorf("after the stop signal: %q, want STOPPING=1", msg)
	}
	if code := in.Wait(stopTimeout); code != exitOK {
		t.Errorf("exit status %d after KillSignal, want 0", code)
	}
}

// k8sObjects decodes a multi-document manifest into the Kubernetes API
// types, strictly: a field the type does not have (a typo, a wrong
// indentation) fails the test.
func k8sObjects(t *testing.T, path string) map[string]any {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]any{}
	for _, doc := range regexp.MustCompile(`(?m)^---$`).Split(string(raw), -1) {
		var tm metav1.TypeMeta
		if err := yaml.Unmarshal([]byte(doc), &tm); err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		var obj any
		switch tm.APIVersion + " " + tm.Kind {
		case "apps/v1 Deployment":
			obj = &appsv1.Deployment{}
		case "v1 Service":
			obj = &corev1.Service{}
		case "v1 ConfigMap":
			obj = &corev1.ConfigMap{}
		case "policy/v1 PodDisruptionBudget":
			obj = &policyv1.PodDisruptionBudget{}
		case "autoscaling/v2 HorizontalPodAutoscaler":
			obj = &autoscalingv2.HorizontalPodAutoscaler{}
		default:
			t.Fatalf("%s: unexpected object %q", path, tm.APIVersion+" "+tm.Kind)
		}
		if err := yaml.UnmarshalStrict([]byte(doc), obj); err != nil {
			t.Fatalf("%s: %s: %v", path, tm.Kind, err)
		}
		if _, dup := out[tm.Kind]; dup {
			t.Fatalf("%s: two %s objects", path, tm.Kind)
		}
		out[tm.Kind] = obj
	}
	return out
}

// TestKubernetesManifests decodes deploy/kubernetes into the Kubernetes
// API types and checks what zero-downtime operation depends on: probes on
// /readyz and /livez at the admin port, no preStop hook (--shutdown-delay
// does its job), a grace period longer than the delay, the drain and the
// backends' shutdown, a rolling update that never goes below the replicas,
// a PodDisruptionBudget, a topology spread and a HorizontalPodAutoscaler on
// the in-flight gauge that the prometheus-adapter rule serves.
func TestKubernetesManifests(t *testing.T) {
	objs := k8sObjects(t, "../../deploy/kubernetes/loopgate.yaml")
	dep, _ := objs["Deployment"].(*appsv1.Deployment)
	svc, _ := objs["Service"].(*corev1.Service)
	pdb, _ := objs["PodDisruptionBudget"].(*policyv1.PodDisruptionBudget)
	hpa, _ := objs["HorizontalPodAutoscaler"].(*autoscalingv2.HorizontalPodAutoscaler)
	if dep == nil || svc == nil || pdb == nil || hpa == nil {
		t.Fatalf("want a Deployment, a Service, a PodDisruptionBudget and a HorizontalPodAutoscaler, got %v", objs)
	}
	pod := dep.Spec.Template
	labels := pod.Labels
	if len(pod.Spec.Containers) != 1 {
		t.Fatalf("%d containers, want loopgate alone", len(pod.Spec.Containers))
	}
	c := pod.Spec.Containers[0]

	// The args are a valid serve command line.
	if len(c.Args) < 2 || c.Args[0] != "serve" {
		t.Fatalf("container args %q", c.Args)
	}
	cfg, err := parseServe(c.Args[1:])
	if err != nil {
		t.Fatalf("container args %q: %v", c.Args, err)
	}
	if cfg.ShutdownDelay < 2*time.Second {
		t.Errorf("--shutdown-delay %v: endpoints and load balancers need a few seconds to stop sending", cfg.ShutdownDelay)
	}

	// Probes: readiness /readyz, liveness /livez, both on the admin port.
	ports := map[string]int32{}
	for _, p := range c.Ports {
		ports[p.Name] = p.ContainerPort
	}
	_, adminPort, _ := net.SplitHostPort(cfg.Admin)
	if strconv.Itoa(int(ports["admin"])) != adminPort {
		t.Errorf("admin containerPort %d, --admin %s", ports["admin"], cfg.Admin)
	}
	for _, pr := range []struct {
		name  string
		probe *corev1.Probe
		path  string
	}{{"readinessProbe", c.ReadinessProbe, "/readyz"}, {"livenessProbe", c.LivenessProbe, "/livez"}} {
		if pr.probe == nil || pr.probe.HTTPGet == nil {
			t.Errorf("%s: want an httpGet probe", pr.name)
			continue
		}
		if g := pr.probe.HTTPGet; g.Path != pr.path || g.Port.String() != "admin" {
			t.Errorf("%s: GET %s on port %s, want %s on admin", pr.name, g.Path, g.Port.String(), pr.path)
		}
	}
	// Readiness must fail well within the delay: the kubelet notices
	// within periodSeconds x failureThreshold.
	if rp := c.ReadinessProbe; rp != nil {
		if noticed := time.Duration(max(rp.PeriodSeconds, 1)*max(rp.FailureThreshold, 1)) * time.Second; noticed >= cfg.ShutdownDelay {
			t.Errorf("readiness notices a failure after %v, not within --shutdown-delay %v", noticed, cfg.ShutdownDelay)
		}
	}
	if c.Lifecycle != nil && c.Lifecycle.PreStop != nil {
		t.Error("preStop hook present: --shutdown-delay replaces it, and together they add up")
	}

	// The grace period covers the delay, the drain and the backends.
	grace := time.Duration(*pod.Spec.TerminationGracePeriodSeconds) * time.Second
	if need := cfg.ShutdownDelay + cfg.DrainTimeout + 10*time.Second; grace <= need {
		t.Errorf("terminationGracePeriodSeconds %v <= --shutdown-delay %v + --drain-timeout %v + 10 s of backend shutdown", grace, cfg.ShutdownDelay, cfg.DrainTimeout)
	}

	// A rolling update never goes below the replicas.
	if ru := dep.Spec.Strategy.RollingUpdate; ru == nil || ru.MaxUnavailable == nil || ru.MaxUnavailable.IntValue() != 0 {
		t.Errorf("rollingUpdate %+v: want maxUnavailable 0", ru)
	}

	// The PodDisruptionBudget, the topology spread and the Service select
	// these pods.
	selects := func(what string, sel map[string]string) {
		t.Helper()
		if len(sel) == 0 {
			t.Errorf("%s selects nothing", what)
		}
		for k, v := range sel {
			if labels[k] != v {
				t.Errorf("%s selects %s=%s, which the pods do not have", what, k, v)
			}
		}
	}
	selects("Service", svc.Spec.Selector)
	if pdb.Spec.Selector == nil {
		t.Fatal("PodDisruptionBudget without a selector")
	}
	selects("PodDisruptionBudget", pdb.Spec.Selector.MatchLabels)
	if m, a := pdb.Spec.MaxUnavailable, pdb.Spec.MinAvailable; (m == nil) == (a == nil) || (m != nil && m.IntValue() < 1) {
		t.Errorf("PodDisruptionBudget: want maxUnavailable >= 1 (a drain must be able to proceed), got %v / minAvailable %v", m, a)
	}
	keys := map[string]bool{}
	for _, tsc := range pod.Spec.TopologySpreadConstraints {
		keys[tsc.TopologyKey] = true
		if tsc.LabelSelector == nil {
			t.Errorf("topology spread on %s without a label selector", tsc.TopologyKey)
			continue
		}
		selects("topology spread on "+tsc.TopologyKey, tsc.LabelSelector.MatchLabels)
	}
	if !keys["kubernetes.io/hostname"] || !keys["topology.kubernetes.io/zone"] {
		t.Errorf("topology spread keys %v, want kubernetes.io/hostname and topology.kubernetes.io/zone", keys)
	}

	// The autoscaler scales this Deployment on concurrency per pod.
	if r := hpa.Spec.ScaleTargetRef; r.Kind != "Deployment" || r.Name != dep.Name {
		t.Errorf("HPA scales %s %s, want Deployment %s", r.Kind, r.Name, dep.Name)
	}
	if hpa.Spec.MinReplicas == nil || *hpa.Spec.MinReplicas < 2 || hpa.Spec.MaxReplicas < *hpa.Spec.MinReplicas {
		t.Errorf("HPA replicas %v..%d: want at least 2 so one can be disrupted", hpa.Spec.MinReplicas, hpa.Spec.MaxReplicas)
	}
	if len(hpa.Spec.Metrics) != 1 || hpa.Spec.Metrics[0].Type != autoscalingv2.PodsMetricSourceType || hpa.Spec.Metrics[0].Pods == nil {
		t.Fatalf("HPA metrics %+v: want one Pods metric", hpa.Spec.Metrics)
	}
	pm := hpa.Spec.Metrics[0].Pods
	if pm.Metric.Name != "loopgate_app_requests_in_flight" || pm.Target.Type != autoscalingv2.AverageValueMetricType || pm.Target.AverageValue == nil || pm.Target.AverageValue.Sign() <= 0 {
		t.Errorf("HPA metric %s target %+v: want loopgate_app_requests_in_flight with a positive AverageValue", pm.Metric.Name, pm.Target)
	}

	// prometheus-adapter serves that metric from loopgate's gauge, which
	// /metrics exports under that name.
	adapter := k8sObjects(t, "../../deploy/kubernetes/prometheus-adapter.yaml")
	cm, _ := adapter["ConfigMap"].(*corev1.ConfigMap)
	if cm == nil {
		t.Fatal("prometheus-adapter.yaml: no ConfigMap")
	}
	var rules struct {
		Rules []struct {
			SeriesQuery string `json:"seriesQuery"`
			Name        struct {
				As string `json:"as"`
			} `json:"name"`
			MetricsQuery string `json:"metricsQuery"`
		} `json:"rules"`
	}
	if err := yaml.Unmarshal([]byte(cm.Data["config.yaml"]), &rules); err != nil {
		t.Fatalf("adapter config.yaml: %v", err)
	}
	served := false
	for _, r := range rules.Rules {
		if r.Name.As == pm.Metric.Name && strings.HasPrefix(r.SeriesQuery, pm.Metric.Name+"{") && strings.Contains(r.MetricsQuery, "sum(") {
			served = true
		}
	}
	if !served {
		t.Errorf("no prometheus-adapter rule serves %s as the sum over the pod's apps: %+v", pm.Metric.Name, rules.Rules)
	}
}

// TestNomadJob checks deploy/nomad/loopgate.nomad.hcl the same way, by
// pattern (there is no HCL decoder among the dependencies): the args
// parse, the checks are /readyz and /livez on the admin port, and
// kill_timeout covers the delay, the drain and the backends' shutdown.
func TestNomadJob(t *testing.T) {
	raw, err := os.ReadFile("../../deploy/nomad/loopgate.nomad.hcl")
	if err != nil {
		t.Fatal(err)
	}
	job := string(raw)
	m := regexp.MustCompile(`(?s)args = \[(.*?)\]`).FindStringSubmatch(job)
	if m == nil {
		t.Fatal("no task args")
	}
	var args []string
	for _, q := range regexp.MustCompile(`"([^"]*)"`).FindAllStringSubmatch(m[1], -1) {
		args = append(args, q[1])
	}
	if len(args) < 2 || args[0] != "serve" {
		t.Fatalf("args %q", args)
	}
	cfg, err := parseServe(args[1:])
	if err != nil {
		t.Fatalf("args %q: %v", args, err)
	}
	km := regexp.MustCompile(`kill_timeout\s*=\s*"([^"]+)"`).FindStringSubmatch(job)
	if km == nil {
		t.Fatal("no kill_timeout")
	}
	kill, err := time.ParseDuration(km[1])
	if err != nil {
		t.Fatal(err)
	}
	if need := cfg.ShutdownDelay + cfg.DrainTimeout + 10*time.Second; kill <= need {
		t.Errorf("kill_timeout %v <= --shutdown-delay %v + --drain-timeout %v + 10 s", kill, cfg.ShutdownDelay, cfg.DrainTimeout)
	}
	if kill > 30*time.Second {
		t.Errorf("kill_timeout %v exceeds a Nomad client's default max_kill_timeout (30 s)", kill)
	}
	if !regexp.MustCompile(`kill_signal\s*=\s*"SIG(TERM|INT)"`).MatchString(job) {
		t.Error("kill_signal is not SIGTERM or SIGINT")
	}
	if !regexp.MustCompile(`(?s)port\s*=\s*"admin"\s*path\s*=\s*"/readyz"`).MatchString(job) {
		t.Error("no /readyz check on the admin port")
	}
	if !regexp.MustCompile(`(?s)port\s*=\s*"admin".*?path\s*=\s*"/livez".*?check_restart`).MatchString(job) {
		t.Error("no /livez check with check_restart on the admin service")
	}
	if !regexp.MustCompile(`(?s)port "admin" \{\s*to = 9180`).MatchString(job) || !strings.HasSuffix(cfg.Admin, ":9180") {
		t.Errorf("admin port mapping does not match --admin %s", cfg.Admin)
	}
}
