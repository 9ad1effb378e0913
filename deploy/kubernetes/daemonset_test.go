// Package kubernetes holds only the test of the manifests beside it.
package kubernetes

import (
	"errors"
	"fmt"
	"maps"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	kjson "sigs.k8s.io/json"
	"sigs.k8s.io/yaml"

	"github.com/hck-bpf/hck-bpf/internal/config"
)

// manifest is daemonset.yaml decoded strictly: each document into its
// kind's API type (k8s.io/api), an unknown or misspelt field (in any
// letter case) or a duplicate key an error.
type manifest struct {
	ns  *corev1.Namespace
	sa  *corev1.ServiceAccount
	cm  *corev1.ConfigMap
	ds  *appsv1.DaemonSet
	all int
}

var docSep = regexp.MustCompile(`(?m)^---[ \t]*$`)

func decode(text string) (*manifest, error) {
	m := &manifest{}
	for i, doc := range docSep.Split(text, -1) {
		var head struct {
			APIVersion string `json:"apiVersion"`
			Kind       string `json:"kind"`
		}
		if err := yaml.Unmarshal([]byte(doc), &head); err != nil {
			return nil, fmt.Errorf("document %d: %w", i+1, err)
		}
		var obj any
		switch head.APIVersion + " " + head.Kind {
		case "v1 Namespace":
			m.ns = &corev1.Namespace{}
			obj = m.ns
		case "v1 ServiceAccount":
			m.sa = &corev1.ServiceAccount{}
			obj = m.sa
		case "v1 ConfigMap":
			m.cm = &corev1.ConfigMap{}
			obj = m.cm
		case "apps/v1 DaemonSet":
			m.ds = &appsv1.DaemonSet{}
			obj = m.ds
		case " ":
			if strings.TrimSpace(stripComments(doc)) == "" {
				continue // an empty document
			}
			fallthrough
		default:
			return nil, fmt.Errorf("document %d: unexpected %q %q", i+1, head.APIVersion, head.Kind)
		}
		// As the API server decodes: field names case-sensitive (encoding/json
		// would take hostPid for hostPID), unknown and duplicate fields errors.
		data, err := yaml.YAMLToJSONStrict([]byte(doc))
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, head.Kind, err)
		}
		strict, err := kjson.UnmarshalStrict(data, obj, kjson.DisallowDuplicateFields, kjson.DisallowUnknownFields)
		if err == nil {
			err = errors.Join(strict...)
		}
		if err != nil {
			return nil, fmt.Errorf("document %d (%s): %w", i+1, head.Kind, err)
		}
		m.all++
	}
	if m.ns == nil || m.sa == nil || m.cm == nil || m.ds == nil || m.all != 4 {
		return nil, fmt.Errorf("want one Namespace, ServiceAccount, ConfigMap and DaemonSet, got %d documents", m.all)
	}
	return m, nil
}

func stripComments(doc string) string {
	var b strings.Builder
	for _, l := range strings.Split(doc, "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			b.WriteString(l + "\n")
		}
	}
	return b.String()
}

func readManifest(t *testing.T) string {
	t.Helper()
	b, err := os.ReadFile("daemonset.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// A misspelt field, a field at the wrong level, a duplicate key or a
// value of the wrong type is refused: a typo is a test failure, not a
// field the API server would drop or refuse at apply.
func TestManifestStrict(t *testing.T) {
	text := readManifest(t)
	if _, err := decode(text); err != nil {
		t.Fatalf("decode daemonset.yaml: %v", err)
	}
	for _, c := range []struct{ name, old, new, want string }{
		{"misspelt field", "      hostPID: true\n", "      hostPid: true\n", `unknown field "spec.template.spec.hostPid"`},
		{"misspelt nested field", "mountPropagation: HostToContainer\n            # Kernel BTF", "mountPropogation: HostToContainer\n            # Kernel BTF", `unknown field "spec.template.spec.containers[0].volumeMounts[0].mountPropogation"`},
		{"letter case", "      hostNetwork: true\n", "      hostnetwork: true\n", `unknown field "spec.template.spec.hostnetwork"`},
		{"field at the wrong level", "          image: hck-bpf:IMAGE-TAG\n          # Start", "          image: hck-bpf:IMAGE-TAG\n          hostPID: true\n          # Start", `unknown field "spec.template.spec.containers[0].hostPID"`},
		{"duplicate key", "      hostPID: true\n", "      hostPID: true\n      hostPID: false\n", `key "hostPID" already set`},
		{"wrong type", "containerPort: 9477", "containerPort: metrics", "cannot unmarshal string"},
		{"unknown kind", "kind: ServiceAccount", "kind: ServiceAcount", `unexpected "v1" "ServiceAcount"`},
	} {
		t.Run(c.name, func(t *testing.T) {
			if strings.Count(text, c.old) != 1 {
				t.Fatalf("the manifest has %d of %q, want 1", strings.Count(text, c.old), c.old)
			}
			_, err := decode(strings.Replace(text, c.old, c.new, 1))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("decode: %v, want an error with %q", err, c.want)
			}
		})
	}
}

// The properties the README promises: what --all-netns needs from the
// host, the pins on the host's bpffs, the metrics port as annotated, the
// probes on /healthz, every node tolerated.
func TestManifestInvariants(t *testing.T) {
	m, err := decode(readManifest(t))
	if err != nil {
		t.Fatal(err)
	}
	const ns = "hck-bpf"
	for kind, got := range map[string]string{"ServiceAccount": m.sa.Namespace, "ConfigMap": m.cm.Namespace, "DaemonSet": m.ds.Namespace} {
		if got != ns || m.ns.Name != ns {
			t.Errorf("%s in namespace %q, Namespace %q: want %q", kind, got, m.ns.Name, ns)
		}
	}
	if got := m.ns.Labels["pod-security.kubernetes.io/enforce"]; got != "privileged" {
		t.Errorf("namespace's pod-security enforce level %q, want privileged (hostPID, hostNetwork, capabilities)", got)
	}

	ds := m.ds
	spec := ds.Spec.Template.Spec
	for k, v := range ds.Spec.Selector.MatchLabels {
		if ds.Spec.Template.Labels[k] != v {
			t.Errorf("selector %s=%s does not match the template's labels %v", k, v, ds.Spec.Template.Labels)
		}
	}
	if !spec.HostPID || !spec.HostNetwork {
		t.Errorf("hostPID %v, hostNetwork %v: --all-netns needs both", spec.HostPID, spec.HostNetwork)
	}
	if spec.DNSPolicy != corev1.DNSClusterFirstWithHostNet {
		t.Errorf("dnsPolicy %q, want ClusterFirstWithHostNet with hostNetwork", spec.DNSPolicy)
	}
	if spec.ServiceAccountName != m.sa.Name {
		t.Errorf("serviceAccountName %q, the ServiceAccount is %q", spec.ServiceAccountName, m.sa.Name)
	}
	if spec.PriorityClassName != "system-node-critical" {
		t.Errorf("priorityClassName %q", spec.PriorityClassName)
	}
	if !slices.ContainsFunc(spec.Tolerations, func(t corev1.Toleration) bool {
		return t.Operator == corev1.TolerationOpExists && t.Key == "" && t.Effect == ""
	}) {
		t.Errorf("tolerations %+v: want one that tolerates every taint (operator Exists, no key, no effect)", spec.Tolerations)
	}
	us := ds.Spec.UpdateStrategy
	if us.Type != appsv1.RollingUpdateDaemonSetStrategyType || us.RollingUpdate == nil ||
		us.RollingUpdate.MaxUnavailable == nil || us.RollingUpdate.MaxUnavailable.String() != "10%" {
		t.Errorf("updateStrategy %+v: want RollingUpdate, maxUnavailable 10%%", us)
	}

	// The API server's rule: Bidirectional only in a privileged container;
	// only the init container that mounts bpffs is privileged.
	for _, c := range append(slices.Clone(spec.InitContainers), spec.Containers...) {
		privileged := c.SecurityContext != nil && c.SecurityContext.Privileged != nil && *c.SecurityContext.Privileged
		for _, vm := range c.VolumeMounts {
			if vm.MountPropagation != nil && *vm.MountPropagation == corev1.MountPropagationBidirectional && !privileged {
				t.Errorf("container %s: Bidirectional mount of %s in an unprivileged container (the API server refuses it)", c.Name, vm.MountPath)
			}
		}
	}
	if len(spec.InitContainers) != 1 || mount(spec.InitContainers[0], "/sys/fs/bpf") == nil ||
		prop(mount(spec.InitContainers[0], "/sys/fs/bpf")) != corev1.MountPropagationBidirectional {
		t.Errorf("want one init container mounting bpffs at /sys/fs/bpf with Bidirectional propagation")
	}

	if len(spec.Containers) != 1 {
		t.Fatalf("%d containers, want 1", len(spec.Containers))
	}
	c := spec.Containers[0]
	if c.Image != spec.InitContainers[0].Image {
		t.Errorf("images %q and %q: both containers run the same image", c.Image, spec.InitContainers[0].Image)
	}
	sc := c.SecurityContext
	if sc == nil || sc.Privileged == nil || *sc.Privileged || sc.Capabilities == nil {
		t.Fatalf("the service's container: want privileged: false and capabilities, got %+v", sc)
	}
	wantCaps := []corev1.Capability{"BPF", "NET_ADMIN", "PERFMON", "SYS_ADMIN", "SYS_PTRACE"}
	gotCaps := slices.Sorted(slices.Values(sc.Capabilities.Add))
	if !slices.Equal(gotCaps, wantCaps) || !slices.Equal(sc.Capabilities.Drop, []corev1.Capability{"ALL"}) {
		t.Errorf("capabilities add %v drop %v, want add %v drop [ALL]", gotCaps, sc.Capabilities.Drop, wantCaps)
	}

	// Mounts: name -> host path, where, read-only, propagation.
	for _, w := range []struct {
		host, at string
		ro       bool
		prop     corev1.MountPropagationMode
	}{
		{"/sys/fs/bpf", "/sys/fs/bpf", false, corev1.MountPropagationHostToContainer},
		{"/sys/kernel/btf", "/sys/kernel/btf", true, ""},
		{"/run/netns", "/run/netns", true, corev1.MountPropagationHostToContainer},
	} {
		vm := mount(c, w.at)
		if vm == nil {
			t.Errorf("no mount at %s", w.at)
			continue
		}
		v := volume(spec, vm.Name)
		if v == nil || v.HostPath == nil || v.HostPath.Path != w.host {
			t.Errorf("mount at %s: volume %q is not hostPath %s", w.at, vm.Name, w.host)
		}
		if vm.ReadOnly != w.ro || prop(vm) != w.prop {
			t.Errorf("mount at %s: readOnly %v propagation %q, want %v %q", w.at, vm.ReadOnly, prop(vm), w.ro, w.prop)
		}
	}

	// Args: the service, live, every namespace, the pins on the host's
	// bpffs, the config from the ConfigMap, metrics on the port declared.
	args := c.Args
	if len(args) == 0 || args[0] != "run" || !slices.Contains(args, "--live") || !slices.Contains(args, "--all-netns") {
		t.Errorf("args %q: want run --live --all-netns", args)
	}
	if pin := flagValue(args, "--pin-dir"); !strings.HasPrefix(pin, "/sys/fs/bpf/") {
		t.Errorf("--pin-dir %q: want a directory on the host's bpffs, /sys/fs/bpf/...", pin)
	}
	cfgPath := flagValue(args, "--config")
	cfgMount := mount(c, "/etc/hck-bpf")
	if cfgMount == nil || volume(spec, cfgMount.Name) == nil || volume(spec, cfgMount.Name).ConfigMap == nil ||
		volume(spec, cfgMount.Name).ConfigMap.Name != m.cm.Name {
		t.Errorf("no ConfigMap %s mounted at /etc/hck-bpf", m.cm.Name)
	} else if key, ok := strings.CutPrefix(cfgPath, "/etc/hck-bpf/"); !ok || m.cm.Data[key] == "" {
		t.Errorf("--config %q: not a key of ConfigMap %s (%v)", cfgPath, m.cm.Name, slices.Sorted(maps.Keys(m.cm.Data)))
	} else if _, err := config.Parse("configmap:"+key, []byte(m.cm.Data[key]), config.Checks{}); err != nil {
		// The service would exit 2 on it: every pod in CrashLoopBackOff.
		t.Errorf("ConfigMap %s: %v", m.cm.Name, err)
	}
	addr := flagValue(args, "--metrics-addr")
	_, portText, ok := strings.Cut(addr, ":")
	port, err := strconv.Atoi(portText)
	if !ok || err != nil || !strings.HasPrefix(addr, "0.0.0.0:") {
		t.Fatalf("--metrics-addr %q: want 0.0.0.0:PORT (scraped on the node's address)", addr)
	}
	if len(c.Ports) != 1 || c.Ports[0].Name != "metrics" || int(c.Ports[0].ContainerPort) != port {
		t.Errorf("ports %+v: want one named metrics on %d", c.Ports, port)
	}
	ann := ds.Spec.Template.Annotations
	if ann["prometheus.io/scrape"] != "true" || ann["prometheus.io/port"] != portText || ann["prometheus.io/path"] != "/metrics" {
		t.Errorf("prometheus annotations %v: want scrape true, port %s, path /metrics", ann, portText)
	}
	for name, p := range map[string]*corev1.Probe{"liveness": c.LivenessProbe, "readiness": c.ReadinessProbe} {
		if p == nil || p.HTTPGet == nil || p.HTTPGet.Path != "/healthz" ||
			(p.HTTPGet.Port.String() != "metrics" && p.HTTPGet.Port.IntValue() != port) {
			t.Errorf("%s probe %+v: want an HTTP GET of /healthz on the metrics port", name, p)
		}
	}
	if lim := c.Resources.Limits.Memory(); lim.IsZero() || c.Resources.Requests.Memory().Cmp(*lim) > 0 {
		t.Errorf("resources %+v: want a memory limit at least the request", c.Resources)
	}
}

func mount(c corev1.Container, at string) *corev1.VolumeMount {
	for i := range c.VolumeMounts {
		if c.VolumeMounts[i].MountPath == at {
			return &c.VolumeMounts[i]
		}
	}
	return nil
}

func prop(vm *corev1.VolumeMount) corev1.MountPropagationMode {
	if vm == nil || vm.MountPropagation == nil {
		return ""
	}
	return *vm.MountPropagation
}

func volume(spec corev1.PodSpec, name string) *corev1.Volume {
	for i := range spec.Volumes {
		if spec.Volumes[i].Name == name {
			return &spec.Volumes[i]
		}
	}
	return nil
}

// flagValue is the value after flag in args ("--flag value" or
// "--flag=value"), "" when absent.
func flagValue(args []string, flag string) string {
	for i, a := range args {
		if a == flag && i+1 < len(args) {
			return args[i+1]
		}
		if v, ok := strings.CutPrefix(a, flag+"="); ok {
			return v
		}
	}
	return ""
}
