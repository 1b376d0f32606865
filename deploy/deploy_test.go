package deploy

import (
	"bufio"
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	yaml3 "go.yaml.in/yaml/v3"
	appsv1 "k8s.io/api/apps/v1"
	batchv1 "k8s.io/api/batch/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/fedstat/fedstat/internal/config"
)

// ---- the fedstat binary, built once ----

var (
	binOnce sync.Once
	binPath string
	binErr  error
)

func fedstatBinary(t *testing.T) string {
	t.Helper()
	binOnce.Do(func() {
		dir, err := os.MkdirTemp("", "fedstat-deploy-test")
		if err != nil {
			binErr = err
			return
		}
		binPath = filepath.Join(dir, "fedstat")
		out, err := exec.Command("go", "build", "-o", binPath, "../cmd/fedstat").CombinedOutput()
		if err != nil {
			binErr = fmt.Errorf("go build: %v\n%s", err, out)
		}
	})
	if binErr != nil {
		t.Fatal(binErr)
	}
	return binPath
}

func TestMain(m *testing.M) {
	code := m.Run()
	if binPath != "" {
		os.RemoveAll(filepath.Dir(binPath))
	}
	os.Exit(code)
}

// checkCommand checks that args (without the leading "fedstat") name a real
// subcommand and that every --flag it uses exists.
func checkCommand(t *testing.T, where string, args []string) {
	t.Helper()
	bin := fedstatBinary(t)
	var path []string
	for _, a := range args {
		if strings.HasPrefix(a, "-") {
			break
		}
		path = append(path, a)
	}
	// Positional arguments may follow the subcommand path (node import
	// PATH...): shorten the path until it names a command.
	var help string
	for n := len(path); n > 0; n-- {
		out, err := exec.Command(bin, append(slices.Clone(path[:n]), "--help")...).CombinedOutput()
		if err != nil {
			continue
		}
		if strings.Contains(string(out), "\n  fedstat "+strings.Join(path[:n], " ")) {
			help = string(out)
			path = path[:n]
			break
		}
	}
	if help == "" {
		t.Errorf("%s: %q is not a fedstat subcommand", where, strings.Join(args, " "))
		return
	}
	for _, a := range args {
		if !strings.HasPrefix(a, "--") {
			continue
		}
		flag, _, _ := strings.Cut(a, "=")
		if !regexp.MustCompile(`(?m)^\s+(-\w, )?` + regexp.QuoteMeta(flag) + `\b`).MatchString(help) {
			t.Errorf("%s: fedstat %s has no flag %s", where, strings.Join(path, " "), flag)
		}
	}
}

func portOf(t *testing.T, where, addr string) int {
	t.Helper()
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		t.Fatalf("%s: address %q: %v", where, addr, err)
	}
	n, err := strconv.Atoi(p)
	if err != nil {
		t.Fatalf("%s: port %q: %v", where, p, err)
	}
	return n
}

// loadTOML loads a config strictly (unknown keys are errors) with no
// environment overrides.
func loadTOML(t *testing.T, path string, cfg any) {
	t.Helper()
	if err := config.Load(path, cfg, []string{"PATH=/usr/bin"}); err != nil {
		t.Fatalf("config.Load(%s): %v", path, err)
	}
}

func loadTOMLString(t *testing.T, where, text string, cfg any) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := config.Load(p, cfg, []string{"PATH=/usr/bin"}); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// ---- example configs ----

func TestExampleConfigs(t *testing.T) {
	var c config.Coordinator
	loadTOML(t, "coordinator.example.toml", &c)
	if c.Name != "coordinator" || c.DataDir == "" || c.PKIDir == "" || c.Gossip == nil || c.Gossip.KeyFile == "" {
		t.Errorf("coordinator example misses required keys: %+v", c)
	}
	var n config.Node
	loadTOML(t, "node.example.toml", &n)
	if n.Name == "" || n.DataDir == "" || n.PKIDir == "" || n.Gossip == nil || n.Gossip.KeyFile == "" {
		t.Errorf("node example misses required keys: %+v", n)
	}
	if !slices.Equal(c.Regions, n.Regions) {
		t.Errorf("regions differ: coordinator %v, node %v", c.Regions, n.Regions)
	}
	for _, cc := range []*config.Common{&c.Common, &n.Common} {
		if err := cc.RequireMaxNodesPerPatient(); err != nil {
			t.Error(err)
		}
	}
	if c.MaxNodesPerPatient != n.MaxNodesPerPatient {
		t.Errorf("max_nodes_per_patient differs: coordinator %d, node %d", c.MaxNodesPerPatient, n.MaxNodesPerPatient)
	}
	var out config.Node
	loadTOML(t, "node-outbound.example.toml", &out)
	if err := out.CheckNetwork(); err != nil || !out.Outbound() || !slices.Equal(c.Regions, out.Regions) || out.MaxNodesPerPatient != c.MaxNodesPerPatient {
		t.Errorf("outbound node example: %v %+v", err, out)
	}
	if err := n.CheckNetwork(); err != nil || n.Outbound() {
		t.Errorf("node example: %v", err)
	}
	// Every key carries a comment on the line before (or a section header).
	for _, f := range []string{"coordinator.example.toml", "node.example.toml", "node-outbound.example.toml"} {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(string(b), "\n")
		for i, l := range lines {
			if l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, "[") {
				continue
			}
			if i == 0 || !strings.HasPrefix(lines[i-1], "#") {
				t.Errorf("%s:%d: key without a comment: %s", f, i+1, l)
			}
		}
	}
	// The daemons accept them too (--print-config loads without starting).
	bin := fedstatBinary(t)
	for _, c := range [][]string{
		{"coordinator", "--config", "coordinator.example.toml", "--print-config"},
		{"node", "--config", "node.example.toml", "--print-config"},
		{"node", "--config", "node-outbound.example.toml", "--print-config"},
	} {
		cmd := exec.Command(bin, c...)
		cmd.Env = []string{"PATH=/usr/bin:/bin", "HOME=" + t.TempDir()}
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Errorf("fedstat %s: %v\n%s", strings.Join(c, " "), err, out)
		}
	}
}

// ---- Kubernetes ----

type k8sObjects struct {
	deployments  []*appsv1.Deployment
	statefulsets []*appsv1.StatefulSet
	jobs         []*batchv1.Job
	services     []*corev1.Service
	configmaps   map[string]*corev1.ConfigMap
	secrets      map[string]*corev1.Secret
	pvcs         map[string]*corev1.PersistentVolumeClaim
	namespaces   []*corev1.Namespace
}

func splitYAMLDocs(b []byte) [][]byte {
	var docs [][]byte
	var cur bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(b))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	flush := func() {
		if len(bytes.TrimSpace(stripComments(cur.Bytes()))) > 0 {
			docs = append(docs, slices.Clone(cur.Bytes()))
		}
		cur.Reset()
	}
	for sc.Scan() {
		if strings.TrimRight(sc.Text(), " ") == "---" {
			flush()
			continue
		}
		cur.WriteString(sc.Text())
		cur.WriteByte('\n')
	}
	flush()
	return docs
}

func stripComments(b []byte) []byte {
	var out bytes.Buffer
	for l := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "#") {
			continue
		}
		out.WriteString(l + "\n")
	}
	return out.Bytes()
}

func strictInto(t *testing.T, where string, doc []byte, obj any) {
	t.Helper()
	if err := yaml.UnmarshalStrict(doc, obj); err != nil {
		t.Fatalf("%s: %v", where, err)
	}
}

// strictNew decodes doc strictly (see strictInto) into a new T.
func strictNew[T any](t *testing.T, where string, doc []byte) *T {
	t.Helper()
	x := new(T)
	strictInto(t, where, doc, x)
	return x
}

func loadK8s(t *testing.T) *k8sObjects {
	t.Helper()
	files, err := filepath.Glob("k8s/*.yaml")
	if err != nil || len(files) == 0 {
		t.Fatalf("no manifests in k8s/: %v", err)
	}
	o := &k8sObjects{
		configmaps: map[string]*corev1.ConfigMap{},
		secrets:    map[string]*corev1.Secret{},
		pvcs:       map[string]*corev1.PersistentVolumeClaim{},
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		for i, doc := range splitYAMLDocs(b) {
			where := fmt.Sprintf("%s#%d", f, i)
			var tm metav1.TypeMeta
			if err := yaml.Unmarshal(doc, &tm); err != nil {
				t.Fatalf("%s: %v", where, err)
			}
			switch tm.APIVersion + "/" + tm.Kind {
			case "apps/v1/Deployment":
				o.deployments = append(o.deployments, strictNew[appsv1.Deployment](t, where, doc))
			case "apps/v1/StatefulSet":
				o.statefulsets = append(o.statefulsets, strictNew[appsv1.StatefulSet](t, where, doc))
			case "batch/v1/Job":
				o.jobs = append(o.jobs, strictNew[batchv1.Job](t, where, doc))
			case "v1/Service":
				o.services = append(o.services, strictNew[corev1.Service](t, where, doc))
			case "v1/ConfigMap":
				x := strictNew[corev1.ConfigMap](t, where, doc)
				o.configmaps[x.Name] = x
			case "v1/Secret":
				x := strictNew[corev1.Secret](t, where, doc)
				o.secrets[x.Name] = x
			case "v1/PersistentVolumeClaim":
				x := strictNew[corev1.PersistentVolumeClaim](t, where, doc)
				o.pvcs[x.Name] = x
			case "v1/Namespace":
				o.namespaces = append(o.namespaces, strictNew[corev1.Namespace](t, where, doc))
			default:
				t.Fatalf("%s: unexpected kind %s %s", where, tm.APIVersion, tm.Kind)
			}
		}
	}
	return o
}

// TestKubernetesStrictDecode checks that unknown fields are caught at all.
func TestKubernetesStrictDecode(t *testing.T) {
	doc := []byte("apiVersion: apps/v1\nkind: Deployment\nmetadata: {name: x}\nspec:\n  replicas: 1\n  replicaz: 2\n")
	var d appsv1.Deployment
	if err := yaml.UnmarshalStrict(doc, &d); err == nil {
		t.Fatal("UnmarshalStrict accepted an unknown field")
	}
}

type podSource struct {
	where     string
	spec      *corev1.PodSpec
	labels    map[string]string
	claims    []string // volumeClaimTemplates
	daemonCfg string   // "coordinator" or "node" when the pod runs a daemon
}

func TestKubernetesManifests(t *testing.T) {
	o := loadK8s(t)
	if len(o.deployments) != 1 || len(o.statefulsets) != 1 {
		t.Fatalf("want one Deployment (coordinator) and one StatefulSet (nodes), have %d and %d", len(o.deployments), len(o.statefulsets))
	}
	dep, sts := o.deployments[0], o.statefulsets[0]
	if len(sts.Spec.VolumeClaimTemplates) == 0 {
		t.Error("the node StatefulSet has no volumeClaimTemplate")
	}
	if *dep.Spec.Replicas != 1 {
		t.Error("the coordinator must run one replica (single-writer store)")
	}
	var pods []podSource
	pods = append(pods, podSource{"Deployment/" + dep.Name, &dep.Spec.Template.Spec, dep.Spec.Template.Labels, nil, "coordinator"})
	var claims []string
	for _, c := range sts.Spec.VolumeClaimTemplates {
		claims = append(claims, c.Name)
	}
	pods = append(pods, podSource{"StatefulSet/" + sts.Name, &sts.Spec.Template.Spec, sts.Spec.Template.Labels, claims, "node"})
	for _, j := range o.jobs {
		pods = append(pods, podSource{"Job/" + j.Name, &j.Spec.Template.Spec, j.Spec.Template.Labels, nil, ""})
	}
	for _, x := range []struct {
		sel  *metav1.LabelSelector
		tmpl map[string]string
		name string
	}{{dep.Spec.Selector, dep.Spec.Template.Labels, dep.Name}, {sts.Spec.Selector, sts.Spec.Template.Labels, sts.Name}} {
		for k, v := range x.sel.MatchLabels {
			if x.tmpl[k] != v {
				t.Errorf("%s: selector %s=%s does not match the pod template", x.name, k, v)
			}
		}
	}
	ns := map[string]bool{}
	for _, n := range o.namespaces {
		ns[n.Name] = true
	}

	var image string
	for _, p := range pods {
		sc := p.spec.SecurityContext
		if sc == nil || sc.RunAsNonRoot == nil || !*sc.RunAsNonRoot || sc.RunAsUser == nil || *sc.RunAsUser == 0 {
			t.Errorf("%s: pod securityContext must set runAsNonRoot and a non-zero runAsUser", p.where)
		}
		vols := map[string]corev1.Volume{}
		for _, v := range p.spec.Volumes {
			vols[v.Name] = v
			switch {
			case v.ConfigMap != nil:
				if o.configmaps[v.ConfigMap.Name] == nil {
					t.Errorf("%s: volume %s: no ConfigMap %s", p.where, v.Name, v.ConfigMap.Name)
				}
			case v.Secret != nil:
				if o.secrets[v.Secret.SecretName] == nil {
					t.Errorf("%s: volume %s: no Secret %s", p.where, v.Name, v.Secret.SecretName)
				}
			}
		}
		for _, c := range p.spec.Containers {
			where := p.where + "/" + c.Name
			if image == "" {
				image = c.Image
			} else if c.Image != image {
				t.Errorf("%s: image %s, others use %s", where, c.Image, image)
			}
			if !strings.Contains(c.Image, "fedstat") {
				t.Errorf("%s: image %s is not fedstat's", where, c.Image)
			}
			csc := c.SecurityContext
			if csc == nil || csc.ReadOnlyRootFilesystem == nil || !*csc.ReadOnlyRootFilesystem ||
				csc.AllowPrivilegeEscalation == nil || *csc.AllowPrivilegeEscalation {
				t.Errorf("%s: container securityContext must set readOnlyRootFilesystem and forbid privilege escalation", where)
			}
			if len(c.Resources.Requests) == 0 {
				t.Errorf("%s: no resource requests", where)
			}
			checkCommand(t, where, c.Args)
			mounts := map[string]string{} // mount path -> volume
			for _, m := range c.VolumeMounts {
				if _, ok := vols[m.Name]; !ok && !slices.Contains(p.claims, m.Name) {
					t.Errorf("%s: volumeMount %s: no such volume", where, m.Name)
				}
				mounts[m.MountPath] = m.Name
			}
			ports := map[string]int32{}
			for _, cp := range c.Ports {
				ports[cp.Name] = cp.ContainerPort
			}
			if p.daemonCfg == "" {
				continue
			}
			// The config the daemon reads comes from a mounted ConfigMap.
			i := slices.Index(c.Args, "--config")
			if i < 0 || i+1 >= len(c.Args) {
				t.Errorf("%s: no --config", where)
				continue
			}
			cfgPath := c.Args[i+1]
			vol := vols[mounts[filepath.Dir(cfgPath)]]
			if vol.ConfigMap == nil {
				t.Errorf("%s: %s is not in a mounted ConfigMap", where, cfgPath)
				continue
			}
			text, ok := o.configmaps[vol.ConfigMap.Name].Data[filepath.Base(cfgPath)]
			if !ok {
				t.Errorf("%s: ConfigMap %s has no key %s", where, vol.ConfigMap.Name, filepath.Base(cfgPath))
				continue
			}
			var common *config.Common
			if p.daemonCfg == "coordinator" {
				var cfg config.Coordinator
				loadTOMLString(t, where, text, &cfg)
				common = &cfg.Common
				if ports["grpc"] != int32(portOf(t, where, cfg.Listen)) || ports["https"] != int32(portOf(t, where, cfg.HTTPListen)) {
					t.Errorf("%s: container ports %v do not match listen %s / http_listen %s", where, ports, cfg.Listen, cfg.HTTPListen)
				}
			} else {
				var cfg config.Node
				loadTOMLString(t, where, text, &cfg)
				common = &cfg.Common
				if ports["grpc"] != int32(portOf(t, where, cfg.Listen)) {
					t.Errorf("%s: container port grpc %d, listen %s", where, ports["grpc"], cfg.Listen)
				}
				env := map[string]string{}
				for _, e := range c.Env {
					env[e.Name] = e.Value
				}
				if env["FEDSTAT_NAME"] == "" || env["FEDSTAT_ADVERTISE"] == "" {
					t.Errorf("%s: nodes need FEDSTAT_NAME and FEDSTAT_ADVERTISE", where)
				}
			}
			if err := common.RequireMaxNodesPerPatient(); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			ops := portOf(t, where, common.OpsListen)
			if ports["ops"] != int32(ops) {
				t.Errorf("%s: container port ops %d, ops_listen %s", where, ports["ops"], common.OpsListen)
			}
			if common.Gossip == nil || ports["gossip-tcp"] != int32(portOf(t, where, common.Gossip.Bind)) {
				t.Errorf("%s: gossip port does not match the config", where)
			}
			for name, pr := range map[string]*corev1.Probe{"readiness": c.ReadinessProbe, "liveness": c.LivenessProbe} {
				if pr == nil || pr.HTTPGet == nil {
					t.Errorf("%s: no %s httpGet probe", where, name)
					continue
				}
				pp := pr.HTTPGet.Port
				if !(pp.StrVal == "ops" || pp.IntValue() == ops) {
					t.Errorf("%s: %s probe on port %s, not the ops port %d", where, name, pp.String(), ops)
				}
				want := map[string]string{"readiness": "/readyz", "liveness": "/healthz"}[name]
				if pr.HTTPGet.Path != want {
					t.Errorf("%s: %s probe path %s, want %s", where, name, pr.HTTPGet.Path, want)
				}
			}
			// Every path in the config lies in a mount.
			inMount := func(path string) bool {
				for m := range mounts {
					if path == m || strings.HasPrefix(path, m+"/") {
						return true
					}
				}
				return false
			}
			for _, pth := range []string{common.DataDir, common.PKIDir, common.Gossip.KeyFile} {
				if !inMount(pth) {
					t.Errorf("%s: %s is not on a mounted volume", where, pth)
				}
			}
			if v := vols[mounts[common.DataDir]]; v.Name != "" && v.PersistentVolumeClaim == nil && !slices.Contains(p.claims, mounts[common.DataDir]) {
				t.Errorf("%s: data_dir is not on a persistent volume", where)
			}
			if v := vols[mounts[common.DataDir]]; v.PersistentVolumeClaim != nil && o.pvcs[v.PersistentVolumeClaim.ClaimName] == nil {
				t.Errorf("%s: no PersistentVolumeClaim %s", where, v.PersistentVolumeClaim.ClaimName)
			}
			// The certificate Secret holds ca.crt and the holder's files.
			pkiVol := vols[mounts[common.PKIDir]]
			if pkiVol.Secret == nil {
				t.Errorf("%s: pki_dir is not a Secret", where)
			} else if s := o.secrets[pkiVol.Secret.SecretName]; s != nil {
				names := []string{"coordinator"}
				if p.daemonCfg == "node" {
					names = nil
					for i := range *sts.Spec.Replicas {
						names = append(names, fmt.Sprintf("%s-%d", sts.Name, i))
					}
				}
				for _, n := range append([]string{"ca"}, names...) {
					for _, ext := range []string{".crt", ".key"} {
						if n == "ca" && ext == ".key" {
							continue
						}
						if _, ok := s.StringData[n+ext]; !ok {
							t.Errorf("Secret %s: no %s", s.Name, n+ext)
						}
					}
				}
			}
		}
	}
	for _, s := range o.services {
		var target *podSource
		for i := range pods {
			match := len(s.Spec.Selector) > 0
			for k, v := range s.Spec.Selector {
				if pods[i].labels[k] != v {
					match = false
				}
			}
			if match {
				target = &pods[i]
			}
		}
		if target == nil {
			t.Errorf("Service %s selects no pods", s.Name)
			continue
		}
		names := map[string]bool{}
		for _, c := range target.spec.Containers {
			for _, p := range c.Ports {
				names[p.Name] = true
			}
		}
		for _, p := range s.Spec.Ports {
			if p.TargetPort.StrVal != "" && !names[p.TargetPort.StrVal] {
				t.Errorf("Service %s: targetPort %s is not a container port", s.Name, p.TargetPort.StrVal)
			}
		}
	}
	if sts.Spec.ServiceName == "" || !slices.ContainsFunc(o.services, func(s *corev1.Service) bool {
		return s.Name == sts.Spec.ServiceName && s.Spec.ClusterIP == corev1.ClusterIPNone
	}) {
		t.Errorf("StatefulSet %s: no headless Service %q", sts.Name, sts.Spec.ServiceName)
	}
	// Namespaces are consistent.
	check := func(kind, name, n string) {
		if len(ns) > 0 && !ns[n] {
			t.Errorf("%s %s: namespace %q is not defined", kind, name, n)
		}
	}
	check("Deployment", dep.Name, dep.Namespace)
	check("StatefulSet", sts.Name, sts.Namespace)
	for _, s := range o.services {
		check("Service", s.Name, s.Namespace)
	}
	for _, s := range o.secrets {
		check("Secret", s.Name, s.Namespace)
	}
	for _, s := range o.configmaps {
		check("ConfigMap", s.Name, s.Namespace)
	}
}

// ---- systemd ----

// knownDirectives is the fallback check when systemd-analyze cannot run.
var knownDirectives = map[string][]string{
	"Unit": {"Description", "Documentation", "After", "Before", "Wants", "Requires", "BindsTo", "PartOf", "Conflicts",
		"ConditionPathExists", "StartLimitIntervalSec", "StartLimitBurst"},
	"Service": {"Type", "ExecStart", "ExecStartPre", "ExecStartPost", "ExecReload", "ExecStop", "Restart", "RestartSec",
		"TimeoutStartSec", "TimeoutStopSec", "User", "Group", "DynamicUser", "StateDirectory", "StateDirectoryMode",
		"ConfigurationDirectory", "ConfigurationDirectoryMode", "LogsDirectory", "RuntimeDirectory", "LimitNOFILE", "UMask",
		"NoNewPrivileges", "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "ProtectKernelTunables",
		"ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectClock", "ProtectHostname", "ProtectProc",
		"ProcSubset", "RestrictAddressFamilies", "RestrictNamespaces", "RestrictRealtime", "RestrictSUIDSGID",
		"LockPersonality", "MemoryDenyWriteExecute", "SystemCallArchitectures", "SystemCallFilter", "CapabilityBoundingSet",
		"AmbientCapabilities", "Environment", "EnvironmentFile", "ReadWritePaths", "ReadOnlyPaths", "WorkingDirectory"},
	"Install": {"WantedBy", "RequiredBy", "Alias", "DefaultInstance"},
}

func parseUnit(t *testing.T, path string) map[string]map[string][]string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	sections := map[string]map[string][]string{}
	var cur string
	for i, l := range strings.Split(string(b), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case l == "" || strings.HasPrefix(l, "#") || strings.HasPrefix(l, ";"):
		case strings.HasPrefix(l, "[") && strings.HasSuffix(l, "]"):
			cur = l[1 : len(l)-1]
			if _, ok := knownDirectives[cur]; !ok {
				t.Errorf("%s:%d: unknown section [%s]", path, i+1, cur)
			}
			sections[cur] = map[string][]string{}
		default:
			k, v, ok := strings.Cut(l, "=")
			if !ok || cur == "" {
				t.Errorf("%s:%d: not a directive: %s", path, i+1, l)
				continue
			}
			if !slices.Contains(knownDirectives[cur], k) {
				t.Errorf("%s:%d: unknown directive %s in [%s]", path, i+1, k, cur)
			}
			sections[cur][k] = append(sections[cur][k], v)
		}
	}
	return sections
}

func TestSystemdUnits(t *testing.T) {
	units := []string{"systemd/fedstat-coordinator.service", "systemd/fedstat-node@.service"}
	bin := fedstatBinary(t)
	dir := t.TempDir()
	var toVerify []string
	for _, u := range units {
		s := parseUnit(t, u)
		svc := s["Service"]
		for _, k := range []string{"NoNewPrivileges", "ProtectSystem", "StateDirectory", "DynamicUser", "ExecStart"} {
			if len(svc[k]) == 0 {
				t.Errorf("%s: no %s", u, k)
			}
		}
		if svc["ProtectSystem"][0] != "strict" {
			t.Errorf("%s: ProtectSystem=%s, want strict", u, svc["ProtectSystem"][0])
		}
		exec := strings.Fields(svc["ExecStart"][0])
		if exec[0] != "/usr/local/bin/fedstat" {
			t.Errorf("%s: ExecStart runs %s", u, exec[0])
		}
		checkCommand(t, u, exec[1:])
		// data_dir of the config must be the StateDirectory.
		state := "/var/lib/" + svc["StateDirectory"][0]
		if strings.Contains(u, "coordinator") {
			if state != "/var/lib/fedstat/coordinator" {
				t.Errorf("%s: StateDirectory %s", u, state)
			}
		} else if state != "/var/lib/fedstat/%i" || !strings.Contains(svc["ExecStart"][0], "/etc/fedstat/%i.toml") {
			t.Errorf("%s: StateDirectory %s / ExecStart %s do not follow the instance", u, state, svc["ExecStart"][0])
		}
		// A copy for systemd-analyze, running the binary just built
		// (verify checks that ExecStart's program exists).
		b, _ := os.ReadFile(u)
		name := filepath.Base(u)
		if strings.HasSuffix(name, "@.service") {
			name = strings.Replace(name, "@.service", "@node-1.service", 1)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, bytes.ReplaceAll(b, []byte("/usr/local/bin/fedstat"), []byte(bin)), 0o644); err != nil {
			t.Fatal(err)
		}
		toVerify = append(toVerify, p)
	}
	// The example configs match the units' paths.
	var c config.Coordinator
	loadTOML(t, "coordinator.example.toml", &c)
	if c.DataDir != "/var/lib/fedstat/coordinator" {
		t.Errorf("coordinator.example.toml: data_dir %s is not the unit's StateDirectory", c.DataDir)
	}
	var n config.Node
	loadTOML(t, "node.example.toml", &n)
	if n.DataDir != "/var/lib/fedstat/"+n.Name {
		t.Errorf("node.example.toml: data_dir %s is not the unit's StateDirectory for %s", n.DataDir, n.Name)
	}

	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is missing (scripts/test.sh installs Debian's systemd package)")
		}
		t.Log("systemd-analyze is missing: checked the units with the strict directive list only")
		return
	}
	cmd := exec.Command(sa, append([]string{"verify", "--man=no"}, toVerify...)...)
	out, err := cmd.CombinedOutput()
	if err != nil || len(bytes.TrimSpace(out)) > 0 {
		s := string(out)
		if strings.Contains(s, "Failed to initialize manager") || strings.Contains(s, "Operation not permitted") ||
			strings.Contains(s, "Failed to setup working directory") {
			t.Logf("systemd-analyze verify cannot run in this container (%v): checked the units with the strict directive list only\n%s", err, s)
			return
		}
		t.Errorf("systemd-analyze verify: %v\n%s", err, s)
		return
	}
	t.Logf("systemd-analyze verify: %d units OK", len(toVerify))
}

// ---- compose ----

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image      string            `yaml:"image"`
	Build      map[string]string `yaml:"build"`
	User       string            `yaml:"user"`
	Command    []string          `yaml:"command"`
	Entrypoint []string          `yaml:"entrypoint"`
	DependsOn  map[string]struct {
		Condition string `yaml:"condition"`
	} `yaml:"depends_on"`
	Volumes     []string          `yaml:"volumes"`
	Ports       []string          `yaml:"ports"`
	Environment map[string]string `yaml:"environment"`
	Healthcheck *struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
}

func TestCompose(t *testing.T) {
	b, err := os.ReadFile("compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var cf composeFile
	if err := yaml3.Unmarshal(b, &cf); err != nil {
		t.Fatalf("compose.yaml: %v", err)
	}
	if len(cf.Services) == 0 {
		t.Fatal("compose.yaml: no services")
	}
	stages := dockerStages(t)
	nodes := 0
	for name, s := range cf.Services {
		where := "compose " + name
		if s.Image == "" || s.Build["dockerfile"] == "" {
			t.Errorf("%s: needs image and build", where)
		} else {
			if _, err := os.Stat(filepath.Join(s.Build["context"], s.Build["dockerfile"])); err != nil {
				t.Errorf("%s: %v", where, err)
			}
			if tg := s.Build["target"]; tg != "" && !slices.ContainsFunc(stages, func(st dockerStage) bool { return st.name == tg }) {
				t.Errorf("%s: build target %s is not a Dockerfile stage", where, tg)
			}
		}
		if s.User == "" || strings.HasPrefix(s.User, "0") || strings.HasPrefix(s.User, "root") {
			t.Errorf("%s: must run as non-root, user %q", where, s.User)
		}
		for dep := range s.DependsOn {
			if _, ok := cf.Services[dep]; !ok {
				t.Errorf("%s: depends on unknown service %s", where, dep)
			}
		}
		mounts := map[string]string{}
		for _, v := range s.Volumes {
			parts := strings.Split(v, ":")
			if len(parts) < 2 {
				t.Errorf("%s: volume %q", where, v)
				continue
			}
			src, dst := parts[0], parts[1]
			mounts[dst] = src
			if strings.HasPrefix(src, ".") || strings.HasPrefix(src, "/") {
				if strings.HasPrefix(src, "./data/") {
					continue // the operator's records
				}
				if _, err := os.Stat(src); err != nil {
					t.Errorf("%s: bind mount %v", where, err)
				}
			} else if _, ok := cf.Volumes[src]; !ok {
				t.Errorf("%s: volume %s is not declared", where, src)
			}
		}
		if len(s.Entrypoint) > 0 {
			// The init script: every fedstat command in it is real.
			script := ""
			for dst, src := range mounts {
				if slices.Contains(s.Entrypoint, dst) {
					script = src
				}
			}
			if script == "" {
				t.Errorf("%s: entrypoint %v runs no mounted script", where, s.Entrypoint)
				continue
			}
			sb, err := os.ReadFile(script)
			if err != nil {
				t.Fatal(err)
			}
			for l := range strings.SplitSeq(string(sb), "\n") {
				f := strings.Fields(strings.TrimSpace(l))
				if len(f) > 1 && f[0] == "fedstat" {
					var args []string
					for _, a := range f[1:] {
						args = append(args, strings.Trim(a, `"`))
					}
					checkCommand(t, where+" "+script, args)
				}
			}
			continue
		}
		if len(s.Command) == 0 {
			t.Errorf("%s: no command", where)
			continue
		}
		checkCommand(t, where, s.Command)
		if s.Command[0] == "node" && len(s.Command) > 1 && s.Command[1] == "import" {
			i := slices.Index(s.Command, "--data-dir")
			if _, ok := mounts[s.Command[i+1]]; !ok {
				t.Errorf("%s: --data-dir %s is not a volume", where, s.Command[i+1])
			}
			continue
		}
		i := slices.Index(s.Command, "--config")
		if i < 0 {
			t.Errorf("%s: no --config", where)
			continue
		}
		src, ok := mounts[s.Command[i+1]]
		if !ok {
			t.Errorf("%s: config %s is not mounted", where, s.Command[i+1])
			continue
		}
		var common *config.Common
		published := map[int]bool{}
		for _, p := range s.Ports {
			parts := strings.Split(p, ":")
			n, _ := strconv.Atoi(parts[len(parts)-1])
			published[n] = true
		}
		switch s.Command[0] {
		case "coordinator":
			var c config.Coordinator
			loadTOML(t, src, &c)
			common = &c.Common
			for _, a := range []string{c.Listen, c.HTTPListen} {
				if !published[portOf(t, where, a)] {
					t.Errorf("%s: %s is not published", where, a)
				}
			}
		case "node":
			nodes++
			var c config.Node
			loadTOML(t, src, &c)
			common = &c.Common
			j := slices.Index(s.Command, "--name")
			if j < 0 || s.Command[j+1] != name {
				t.Errorf("%s: --name must be the service name", where)
			}
			if s.Environment["FEDSTAT_ADVERTISE"] != fmt.Sprintf("%s:%d", name, portOf(t, where, c.Listen)) {
				t.Errorf("%s: FEDSTAT_ADVERTISE %q does not match", where, s.Environment["FEDSTAT_ADVERTISE"])
			}
			imp := name + "-import"
			if _, ok := s.DependsOn[imp]; !ok {
				t.Errorf("%s: does not wait for %s", where, imp)
			} else if s.DependsOn[imp].Condition != "service_completed_successfully" {
				t.Errorf("%s: %s must complete first", where, imp)
			}
			if mounts[common.DataDir] != cf.Services[imp].volumeAt(common.DataDir) {
				t.Errorf("%s: %s imports into another volume", where, imp)
			}
		default:
			t.Errorf("%s: %s is not a daemon", where, s.Command[0])
			continue
		}
		if err := common.RequireMaxNodesPerPatient(); err != nil {
			t.Errorf("%s: %v", where, err)
		}
		if _, ok := mounts[common.DataDir]; !ok {
			t.Errorf("%s: data_dir %s is not a volume", where, common.DataDir)
		}
		if _, ok := mounts[common.PKIDir]; !ok {
			t.Errorf("%s: pki_dir %s is not a volume", where, common.PKIDir)
		}
		if s.Healthcheck == nil || !strings.Contains(strings.Join(s.Healthcheck.Test, " "),
			fmt.Sprintf(":%d/readyz", portOf(t, where, common.OpsListen))) {
			t.Errorf("%s: healthcheck must GET /readyz on the ops port (%s)", where, common.OpsListen)
		}
	}
	if nodes != 3 {
		t.Errorf("compose: %d nodes, want 3", nodes)
	}
}

func (s composeService) volumeAt(dst string) string {
	for _, v := range s.Volumes {
		parts := strings.Split(v, ":")
		if len(parts) >= 2 && parts[1] == dst {
			return parts[0]
		}
	}
	return ""
}

// ---- Dockerfile ----

type dockerStage struct {
	from, name string
	instrs     [][2]string // instruction, arguments
}

func dockerStages(t *testing.T) []dockerStage {
	t.Helper()
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	var stages []dockerStage
	var logical []string
	var cur strings.Builder
	for l := range strings.SplitSeq(string(b), "\n") {
		tl := strings.TrimSpace(l)
		if strings.HasPrefix(tl, "#") || (tl == "" && cur.Len() == 0) {
			continue
		}
		if strings.HasSuffix(tl, "\\") {
			cur.WriteString(strings.TrimSuffix(tl, "\\") + " ")
			continue
		}
		cur.WriteString(tl)
		logical = append(logical, cur.String())
		cur.Reset()
	}
	for _, l := range logical {
		instr, args, _ := strings.Cut(l, " ")
		instr = strings.ToUpper(instr)
		if instr == "FROM" {
			f := strings.Fields(args)
			st := dockerStage{from: f[0]}
			if len(f) == 3 && strings.EqualFold(f[1], "AS") {
				st.name = f[2]
			}
			stages = append(stages, st)
			continue
		}
		if len(stages) == 0 {
			t.Fatalf("Dockerfile: %s before FROM", instr)
		}
		stages[len(stages)-1].instrs = append(stages[len(stages)-1].instrs, [2]string{instr, strings.TrimSpace(args)})
	}
	return stages
}

func TestDockerfile(t *testing.T) {
	stages := dockerStages(t)
	if len(stages) < 2 {
		t.Fatalf("Dockerfile: %d stages, want a builder and a final stage", len(stages))
	}
	names := map[string]bool{}
	gomod, _ := os.ReadFile("../go.mod")
	goVer := regexp.MustCompile(`(?m)^go (\d+\.\d+)`).FindSubmatch(gomod)
	var builder string
	for _, st := range stages {
		for _, in := range st.instrs {
			if in[0] == "COPY" && strings.HasPrefix(in[1], "--from=") {
				from := strings.Fields(strings.TrimPrefix(in[1], "--from="))[0]
				if !names[from] {
					t.Errorf("Dockerfile: COPY --from=%s: no earlier stage", from)
				}
			}
			if in[0] == "RUN" && strings.Contains(in[1], "go build") {
				builder = st.name
				for _, want := range []string{"-trimpath", "-s -w", "./cmd/fedstat"} {
					if !strings.Contains(in[1], want) {
						t.Errorf("Dockerfile: go build lacks %s: %s", want, in[1])
					}
				}
				if !slices.Contains(st.instrs, [2]string{"ENV", "CGO_ENABLED=0"}) && !strings.Contains(in[1], "CGO_ENABLED=0") {
					t.Error("Dockerfile: the build does not set CGO_ENABLED=0")
				}
				if goVer == nil || !strings.HasPrefix(st.from, "golang:"+string(goVer[1])) {
					t.Errorf("Dockerfile: builder %s does not match go.mod's go %s", st.from, goVer[1])
				}
			}
		}
		if st.name != "" {
			names[st.name] = true
		}
	}
	if builder == "" {
		t.Fatal("Dockerfile: no stage runs go build")
	}
	for i, st := range stages {
		if st.name == builder {
			continue
		}
		final := i == len(stages)-1
		var user, entry string
		var copied, exposed bool
		for _, in := range st.instrs {
			switch in[0] {
			case "USER":
				user = in[1]
			case "ENTRYPOINT":
				entry = in[1]
			case "COPY":
				copied = copied || strings.HasPrefix(in[1], "--from="+builder)
			case "EXPOSE":
				exposed = true
				for _, p := range []string{"7443", "7444", "8443", "9090", "9091", "7946"} {
					if !strings.Contains(in[1], p) {
						t.Errorf("Dockerfile stage %s: EXPOSE lacks %s", st.name, p)
					}
				}
			}
		}
		if user == "" || user == "root" || user == "0" || strings.HasPrefix(user, "0:") || strings.HasPrefix(user, "root:") {
			t.Errorf("Dockerfile stage %s: runs as %q, want non-root", st.name, user)
		}
		if !copied || !exposed || entry != `["/fedstat"]` {
			t.Errorf("Dockerfile stage %s: want COPY --from=%s, EXPOSE and ENTRYPOINT [\"/fedstat\"], have entrypoint %s", st.name, builder, entry)
		}
		if final && !strings.Contains(st.from, "distroless") && st.from != "scratch" {
			t.Errorf("Dockerfile: final stage %s is not minimal", st.from)
		}
	}
	// The k8s manifests and compose use the default (final) or a named stage.
	t.Log("Dockerfile parsed statically: no Docker engine here to build it")
}
