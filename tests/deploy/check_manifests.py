#!/usr/bin/env python3
"""Renders deploy/kubernetes and its overlays with `kubectl kustomize`,
validates the Kubernetes objects against the schemas (kubernetes-validate,
strict), checks the Prometheus Operator objects for the fields the operator
needs, and checks the promises the manifests make (least privilege, GPU nodes
only, probes). Run by tests/deploy.rs; prints what it checked, exits 1 on the
first failure with the reason."""
import json
import pathlib
import subprocess
import sys
import tempfile

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
KUSTOMIZE_DIRS = [
    "deploy/kubernetes",
    "deploy/kubernetes/overlays/no-operator",
    "deploy/kubernetes/overlays/nvidia-runtime",
    "deploy/kubernetes/overlays/processes",
    "deploy/kubernetes/overlays/tls-basic-auth",
    "deploy/kubernetes/overlays/dra",
]


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def render(directory):
    out = subprocess.run(["kubectl", "kustomize", str(ROOT / directory)], capture_output=True, text=True)
    check(out.returncode == 0, f"kubectl kustomize {directory}: {out.stderr}")
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(out.stdout)
    valid = subprocess.run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", "--no-warn", f.name], capture_output=True, text=True)
    pathlib.Path(f.name).unlink()
    check(valid.returncode == 0, f"{directory} does not validate: {valid.stdout}{valid.stderr}")
    return {(doc["kind"], doc["metadata"]["name"]): doc for doc in yaml.safe_load_all(out.stdout) if doc}


def check_daemonset(objects, directory, root=False):
    ds = objects[("DaemonSet", "system-info-exporter")]
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    check(pod["securityContext"]["runAsNonRoot"] is (not root), f"{directory}: runAsNonRoot {not root}")
    check(pod["automountServiceAccountToken"] is False, f"{directory}: no service-account token mounted by default")
    check(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", "seccomp RuntimeDefault")
    check(security["readOnlyRootFilesystem"] is True, "readOnlyRootFilesystem")
    check(security["allowPrivilegeEscalation"] is False, "allowPrivilegeEscalation false")
    check(security["capabilities"]["drop"] == ["ALL"], "all capabilities dropped")
    check(not security.get("privileged") and not pod.get("hostPID") and not pod.get("hostNetwork"), "no privileged, hostPID or hostNetwork")
    check(pod["priorityClassName"] == "system-node-critical", "priorityClassName")
    check(ds["spec"]["updateStrategy"]["type"] == "RollingUpdate", "RollingUpdate")
    terms = pod["affinity"]["nodeAffinity"]["requiredDuringSchedulingIgnoredDuringExecution"]["nodeSelectorTerms"]
    check({"key": "nvidia.com/gpu.present", "operator": "In", "values": ["true"]} in terms[0]["matchExpressions"], "GPU nodes only")
    check(any(t["key"] == "nvidia.com/gpu" for t in pod["tolerations"]), "tolerates the nvidia.com/gpu taint")
    env = {e["name"]: e for e in container["env"]}
    check(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", "NODE_NAME from the downward API")
    check(env["SIE_HOST_NAME"]["value"] == "$(NODE_NAME)", "host name from NODE_NAME")
    check(env["NVIDIA_VISIBLE_DEVICES"]["value"] == "all" and env["NVIDIA_DRIVER_CAPABILITIES"]["value"] == "utility", "NVIDIA env")
    check("--require-gpu" in container["args"], "--require-gpu")
    check(container["livenessProbe"]["httpGet"]["path"] == "/health", "liveness on /health")
    check(container["readinessProbe"]["httpGet"]["path"] == "/ready", "readiness on /ready")
    resources = container["resources"]
    check(set(resources) == {"requests", "limits"}, "requests and limits")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    check(mounts["pod-resources"]["readOnly"] is True, "pod-resources mounted read-only")
    volumes = {v["name"]: v for v in pod["volumes"]}
    check(volumes["pod-resources"]["hostPath"]["path"] == "/var/lib/kubelet/pod-resources", "pod-resources hostPath")
    return pod


def check_operator_objects(objects):
    service = objects[("Service", "system-info-exporter")]
    check(service["spec"]["clusterIP"] == "None", "headless Service")
    port_names = {p["name"] for p in service["spec"]["ports"]}
    monitor = objects[("ServiceMonitor", "system-info-exporter")]
    selector = monitor["spec"]["selector"]["matchLabels"]
    check(all(service["metadata"]["labels"].get(k) == v for k, v in selector.items()), "ServiceMonitor selects the Service")
    for endpoint in monitor["spec"]["endpoints"]:
        check(endpoint["port"] in port_names, f"ServiceMonitor port {endpoint['port']} is a named Service port")
        check(endpoint.get("honorLabels") is True, "ServiceMonitor honors the namespace, pod and container of allocations")
    rule = objects[("PrometheusRule", "system-info-exporter")]
    groups = rule["spec"]["groups"]
    for group in groups:
        check(group["name"] and group["rules"], "PrometheusRule groups have a name and rules")
        for r in group["rules"]:
            check((r.get("alert") or r.get("record")) and r.get("expr"), f"PrometheusRule rule {r} has alert or record, and expr")
    alerts = yaml.safe_load((ROOT / "deploy/prometheus/alerts.yml").read_text())
    check(groups == alerts["groups"], "PrometheusRule and deploy/prometheus/alerts.yml differ")


def check_tls_basic_auth(objects):
    """The TLS and basic-auth variant: the exporter reads its web config and
    certificate from one projected directory, probes use HTTPS without
    credentials, and the ServiceMonitor scrapes over TLS with basic auth."""
    pod = check_daemonset(objects, "tls-basic-auth")
    check_operator_objects(objects)
    (container,) = pod["containers"]
    check("--web.config.file=/etc/system-info-exporter/web/web.yml" in container["args"], "--web.config.file")
    check("--web.probes-without-auth" in container["args"], "--web.probes-without-auth")
    for probe in ("livenessProbe", "readinessProbe"):
        check(container[probe]["httpGet"]["scheme"] == "HTTPS", f"{probe} over HTTPS")
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    check(mounts["web"]["mountPath"] == "/etc/system-info-exporter/web" and mounts["web"]["readOnly"], "web mounted read-only")
    volumes = {v["name"]: v for v in pod["volumes"]}
    paths = {item["path"] for source in volumes["web"]["projected"]["sources"] for item in source["secret"]["items"]}
    check(paths == {"web.yml", "tls.crt", "tls.key"}, "web.yml, tls.crt and tls.key in one directory")
    web = yaml.safe_load(objects[("Secret", "system-info-exporter-web")]["stringData"]["web.yml"])
    check(web["tls_server_config"]["cert_file"] == "tls.crt" and web["tls_server_config"]["key_file"] == "tls.key", "web.yml names the mounted certificate")
    (endpoint,) = objects[("ServiceMonitor", "system-info-exporter")]["spec"]["endpoints"]
    check(endpoint["scheme"] == "https", "ServiceMonitor scheme https")
    check(endpoint["tlsConfig"]["ca"]["secret"]["name"] == "system-info-exporter-scrape", "ServiceMonitor tlsConfig CA")
    auth = endpoint["basicAuth"]
    check(auth["username"]["name"] == auth["password"]["name"] == "system-info-exporter-scrape", "ServiceMonitor basicAuth")


def check_dra(objects):
    """The DRA variant: a short-lived projected token, read-only, and a
    ClusterRole that can get and list ResourceSlices and nothing else."""
    pod = check_daemonset(objects, "dra", root=True)
    check(pod["securityContext"]["runAsUser"] == 0, "dra: root, for the kubelet's socket")
    (container,) = pod["containers"]
    mounts = {m["name"]: m for m in container["volumeMounts"]}
    api = mounts["kube-api-access"]
    check(api["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount" and api["readOnly"] is True, "dra: token mounted read-only where the exporter looks")
    sources = {v["name"]: v for v in pod["volumes"]}["kube-api-access"]["projected"]["sources"]
    token = [s["serviceAccountToken"] for s in sources if "serviceAccountToken" in s]
    check(len(token) == 1 and token[0]["path"] == "token" and token[0]["expirationSeconds"] <= 3607, "dra: a short-lived projected token")
    check(any(s.get("configMap", {}).get("name") == "kube-root-ca.crt" for s in sources), "dra: the cluster CA")
    role = objects[("ClusterRole", "system-info-exporter-resourceslices")]
    check(role["rules"] == [{"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"], "verbs": ["get", "list"]}], "dra: get and list on resourceslices only")
    binding = objects[("ClusterRoleBinding", "system-info-exporter-resourceslices")]
    check(binding["subjects"] == [{"kind": "ServiceAccount", "name": "system-info-exporter", "namespace": "monitoring"}], "dra: bound to the exporter's service account")
    check(binding["roleRef"]["name"] == role["metadata"]["name"], "dra: the binding names the role")


def check_compose():
    """No Compose engine here: check the file's structure and its paths."""
    path = ROOT / "deploy/compose/docker-compose.yml"
    compose = yaml.safe_load(path.read_text())
    services = compose["services"]
    check(set(services) == {"exporter", "prometheus", "grafana"}, "Compose services")
    devices = services["exporter"]["deploy"]["resources"]["reservations"]["devices"]
    check(devices == [{"driver": "nvidia", "count": "all", "capabilities": ["utility"]}], "gpus: all reservation")
    for name, service in services.items():
        check("limits" in service["deploy"]["resources"], f"{name} has resource limits")
        check(service["logging"]["options"]["max-size"], f"{name} rotates its logs")
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith("."):
                check((path.parent / source).exists(), f"{name} mounts {source}, which does not exist")


def main():
    check_compose()
    rendered = {d: render(d) for d in KUSTOMIZE_DIRS}
    base = rendered["deploy/kubernetes"]
    check_daemonset(base, "deploy/kubernetes")
    check_operator_objects(base)
    no_operator = rendered["deploy/kubernetes/overlays/no-operator"]
    check(not any(kind in ("ServiceMonitor", "PrometheusRule") for kind, _ in no_operator), "no-operator has no CRDs")
    annotations = no_operator[("DaemonSet", "system-info-exporter")]["spec"]["template"]["metadata"]["annotations"]
    check(annotations == {"prometheus.io/scrape": "true", "prometheus.io/port": "8080", "prometheus.io/path": "/metrics"}, "scrape annotations")
    check_daemonset(no_operator, "no-operator")
    runtime = check_daemonset(rendered["deploy/kubernetes/overlays/nvidia-runtime"], "nvidia-runtime")
    check(runtime["runtimeClassName"] == "nvidia", "runtimeClassName nvidia")
    # The one overlay that opts into hostPID, for per-process metrics.
    processes = rendered["deploy/kubernetes/overlays/processes"][("DaemonSet", "system-info-exporter")]
    pod = processes["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    check(pod["hostPID"] is True and "--collector.processes" in container["args"], "processes overlay: hostPID and the collector")
    state = {m["name"]: m for m in container["volumeMounts"]}["containerd-state"]
    check(state["readOnly"] is True, "container state mounted read-only")
    check(not container["securityContext"].get("privileged"), "processes overlay: not privileged")
    check_tls_basic_auth(rendered["deploy/kubernetes/overlays/tls-basic-auth"])
    check_dra(rendered["deploy/kubernetes/overlays/dra"])
    print(json.dumps({d: sorted(f"{k}/{n}" for k, n in objs) for d, objs in rendered.items()}, indent=1))
    print("manifests: all checks passed")


if __name__ == "__main__":
    main()
