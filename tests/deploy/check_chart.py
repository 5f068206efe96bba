#!/usr/bin/env python3
"""Checks the Helm chart deploy/helm/system-info-exporter with real Helm
binaries: `helm lint --strict`, `helm template` of the default values and of
each feature, every rendering validated against the Kubernetes schemas
(kubernetes-validate, strict), the promises the chart makes (least
privilege, probes, labels, the Prometheus Operator objects only where the
cluster has the operator), the schema's rejections, the chart version, the
rules and dashboard read from their one source, and the DaemonSet, Service
and ServiceMonitor equal to those of deploy/kubernetes (kustomize) in
substance. Run by tests/deploy.rs; prints what it checked, exits 1 on the
first failure with the reason.

  check_chart.py [HELM...]   Helm binaries; default: helm. The first gets
                             every check, each other one lints, packages and
                             must render exactly what the first renders."""
import copy
import json
import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib

import yaml

ROOT = pathlib.Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy/helm/system-info-exporter"
ALERTS = ROOT / "deploy/prometheus/alerts.yml"
DASHBOARD = ROOT / "deploy/grafana/dashboard.json"
NAME = "system-info-exporter"
OPERATOR = ["--api-versions", "monitoring.coreos.com/v1"]
# The Prometheus Operator's CRDs: kubernetes-validate has no schema for them,
# so their fields are checked here instead.
CRD_KINDS = {"ServiceMonitor", "PrometheusRule"}
TLS_VALUES = {
    "webConfig": {"existingSecret": f"{NAME}-web"},
    "tls": {"existingSecret": f"{NAME}-tls"},
    "serviceMonitor": {
        "tlsConfig": {"serverName": NAME, "ca": {"secret": {"name": f"{NAME}-scrape", "key": "ca.crt"}}},
        "basicAuth": {
            "username": {"name": f"{NAME}-scrape", "key": "username"},
            "password": {"name": f"{NAME}-scrape", "key": "password"},
        },
    },
}
EXTRA_VALUES = {
    "image": {"repository": "registry.example/sie", "tag": "0.1.0-rc1", "pullPolicy": "Always"},
    "imagePullSecrets": [{"name": "registry"}],
    "resources": {"requests": {"cpu": "20m", "memory": "32Mi"}, "limits": {"cpu": "200m", "memory": "128Mi"}},
    "nodeSelector": {"pool": "gpu"},
    "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "gpu", "effect": "NoExecute"}],
    "affinity": None,
    "priorityClassName": "",
    "podAnnotations": {"example.com/owner": "gpu-team"},
    # The selector labels cannot be overridden.
    "podLabels": {"team": "gpu", "app.kubernetes.io/name": "other", "app.kubernetes.io/instance": "other"},
    "extraArgs": ["--collect.interval=10s", "--log.level=debug"],
    "extraEnv": [{"name": "SIE_EXTRA", "value": "1"}],
    "runtimeClassName": "nvidia",
    "hostNetwork": True,
    "port": 9400,
    "podResources": {"enabled": False},
    "runAsRoot": True,
}
# name: (values, helm template flags)
CASES = {
    "default": ({}, []),
    "operator": ({}, OPERATOR),
    "operator-offline": ({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": True}}, []),
    "operator-off": ({"serviceMonitor": {"enabled": False}, "prometheusRule": {"enabled": False}}, OPERATOR),
    "monitor-only": ({"serviceMonitor": {"enabled": True}, "prometheusRule": {"enabled": False}}, []),
    "tls": (TLS_VALUES, OPERATOR),
    "processes": ({"processes": {"enabled": True}}, OPERATOR),
    "nvidia-runtime": ({"runtimeClassName": "nvidia"}, OPERATOR),
    "extras": (EXTRA_VALUES, []),
    "dashboard": ({"dashboard": {"enabled": True}}, []),
    "release-name": ({}, ["--name-template", "gpu"]),
    # dcgm-exporter's chart's ConfigMap, and the GPU Operator's key.
    "dcgm": ({"dcgm": {"countersConfigMap": "exporter-metrics-config-map"}}, OPERATOR),
    "dcgm-operator-key": ({"dcgm": {"countersConfigMap": "dcgm-metrics", "countersKey": "dcgm-metrics.csv"}}, []),
    "dra": ({"dra": {"enabled": True}}, OPERATOR),
}
# The kustomize variant each chart rendering must equal in substance.
KUSTOMIZE = {
    "operator": "deploy/kubernetes",
    "default": "deploy/kubernetes/overlays/no-operator",
    "tls": "deploy/kubernetes/overlays/tls-basic-auth",
    "processes": "deploy/kubernetes/overlays/processes",
    "nvidia-runtime": "deploy/kubernetes/overlays/nvidia-runtime",
    "dra": "deploy/kubernetes/overlays/dra",
}


def fail(message):
    print(f"FAIL: {message}")
    sys.exit(1)


def check(condition, message):
    if not condition:
        fail(message)


def run(command, **kwargs):
    return subprocess.run(command, capture_output=True, text=True, **kwargs)


def values_file(tmp, name, values):
    path = pathlib.Path(tmp) / f"{name}.yaml"
    path.write_text(yaml.safe_dump(values))
    return str(path)


def template(helm, tmp, name, values, flags, chart=CHART):
    command = [helm, "template", *([] if "--name-template" in flags else [NAME]), str(chart),
               "--namespace", "monitoring", "-f", values_file(tmp, name, values), *flags]
    out = run(command)
    check(out.returncode == 0, f"{helm} template ({name}): {out.stderr}")
    return out.stdout


def validate(text, name):
    """Strict schema validation, against the newest and the oldest Kubernetes
    release kubernetes-validate knows; only the CRDs may lack a schema."""
    with tempfile.NamedTemporaryFile("w", suffix=".yaml", delete=False) as f:
        f.write(text)
    try:
        for version in ([], ["-k", "1.25.0"]):
            out = run([sys.executable, "-m", "kubernetes_validate", "--strict", "--quiet", *version, f.name])
            check(out.returncode == 0, f"{name} does not validate {version}: {out.stdout}{out.stderr}")
            for line in (out.stdout + out.stderr).splitlines():
                known = re.search(r"Couldn't find schema for kind (\w+) with api version monitoring.coreos.com/v1", line)
                check(known and known.group(1) in CRD_KINDS, f"{name}: kubernetes-validate says: {line}")
    finally:
        pathlib.Path(f.name).unlink()


def objects_of(text):
    docs = [d for d in yaml.safe_load_all(text) if d]
    objects = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    check(len(objects) == len(docs), "two objects with one kind and name")
    return objects


def kinds(objects):
    return {kind for kind, _ in objects}


def kustomize(directory):
    out = run(["kubectl", "kustomize", str(ROOT / directory)])
    check(out.returncode == 0, f"kubectl kustomize {directory}: {out.stderr}")
    return objects_of(out.stdout)


def only(objects, kind):
    (obj,) = [o for (k, _), o in objects.items() if k == kind]
    return obj


def check_hardening(objects, name, values):
    """What every rendering keeps, whatever the values."""
    ds = only(objects, "DaemonSet")
    pod = ds["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    security = container["securityContext"]
    root = values.get("runAsRoot", False) or values.get("dra", {}).get("enabled", False)
    check(pod["automountServiceAccountToken"] is False, f"{name}: no service-account token")
    check(only(objects, "ServiceAccount")["automountServiceAccountToken"] is False, f"{name}: ServiceAccount without token")
    check(pod["securityContext"]["runAsNonRoot"] is (not root), f"{name}: runAsNonRoot")
    check(pod["securityContext"]["runAsUser"] == (0 if root else 65532), f"{name}: runAsUser")
    check(pod["securityContext"]["seccompProfile"]["type"] == "RuntimeDefault", f"{name}: seccomp RuntimeDefault")
    check(security["readOnlyRootFilesystem"] is True, f"{name}: readOnlyRootFilesystem")
    check(security["allowPrivilegeEscalation"] is False, f"{name}: allowPrivilegeEscalation false")
    check(security["privileged"] is False and security["capabilities"] == {"drop": ["ALL"]}, f"{name}: all capabilities dropped, none added")
    check(pod.get("hostPID", False) is values.get("processes", {}).get("enabled", False), f"{name}: hostPID only with processes")
    check(pod.get("hostNetwork", False) is values.get("hostNetwork", False), f"{name}: hostNetwork only when asked")
    check(set(container["resources"]) == {"requests", "limits"}, f"{name}: requests and limits")
    check(container["livenessProbe"]["httpGet"]["path"] == "/health", f"{name}: liveness on /health")
    check(container["readinessProbe"]["httpGet"]["path"] == "/ready", f"{name}: readiness on /ready")
    env = {e["name"]: e for e in container["env"]}
    check(env["NODE_NAME"]["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName", f"{name}: NODE_NAME from the downward API")
    check(env["SIE_HOST_NAME"]["value"] == "$(NODE_NAME)", f"{name}: host name from NODE_NAME")
    check("--require-gpu" in container["args"], f"{name}: --require-gpu")
    mounts = {m["name"]: m for m in container.get("volumeMounts", [])}
    check(all(m.get("readOnly") is True for m in mounts.values()), f"{name}: every mount read-only")
    if values.get("podResources", {}).get("enabled", True):
        check(mounts["pod-resources"]["mountPath"] == "/var/lib/kubelet/pod-resources", f"{name}: pod-resources mounted")
    else:
        check("pod-resources" not in mounts and "--no-collector.pods" in container["args"], f"{name}: podResources off")
    labels = ds["metadata"]["labels"]
    for key in ("app.kubernetes.io/name", "app.kubernetes.io/instance", "app.kubernetes.io/version",
                "app.kubernetes.io/managed-by", "helm.sh/chart"):
        check(key in labels, f"{name}: label {key}")
    release = labels["app.kubernetes.io/instance"]
    selector = {"app.kubernetes.io/name": NAME, "app.kubernetes.io/instance": release}
    check(ds["spec"]["selector"]["matchLabels"] == selector, f"{name}: selector is name and instance only")
    pod_labels = ds["spec"]["template"]["metadata"]["labels"]
    check(selector.items() <= pod_labels.items(), f"{name}: pod labels hold the selector")
    service = only(objects, "Service")
    check(service["spec"]["selector"] == selector and service["spec"]["clusterIP"] == "None", f"{name}: headless Service selects the pods")
    check(service["spec"]["ports"] == [{"name": "metrics", "port": values.get("port", 8080), "targetPort": "metrics", "protocol": "TCP"}], f"{name}: Service port metrics")
    return ds, pod, container


def check_operator_objects(objects, name):
    service = only(objects, "Service")
    monitor = only(objects, "ServiceMonitor")
    spec = monitor["spec"]
    check(spec["jobLabel"] == "app.kubernetes.io/name" and service["metadata"]["labels"]["app.kubernetes.io/name"] == NAME,
          f"{name}: job label system-info-exporter, as in the alerts")
    check(spec["selector"]["matchLabels"].items() <= service["metadata"]["labels"].items(), f"{name}: ServiceMonitor selects the Service")
    check(not spec.get("namespaceSelector"), f"{name}: ServiceMonitor in its own namespace")
    fields = {"port", "path", "interval", "scrapeTimeout", "honorLabels", "scheme", "tlsConfig", "basicAuth", "relabelings"}
    for endpoint in spec["endpoints"]:
        check(set(endpoint) <= fields, f"{name}: ServiceMonitor endpoint fields {sorted(endpoint)}")
        check(endpoint["port"] == "metrics", f"{name}: ServiceMonitor scrapes the named port")
        check(endpoint.get("honorLabels") is True, f"{name}: ServiceMonitor honors the namespace, pod and container of allocations")
    if "PrometheusRule" not in kinds(objects):
        return
    groups = only(objects, "PrometheusRule")["spec"]["groups"]
    check(groups == yaml.safe_load(ALERTS.read_text())["groups"], f"{name}: PrometheusRule differs from deploy/prometheus/alerts.yml")
    for group in groups:
        check(group["name"] and group["rules"], "PrometheusRule groups have a name and rules")
        for rule in group["rules"]:
            check((rule.get("alert") or rule.get("record")) and rule.get("expr"), f"PrometheusRule rule {rule} has alert or record, and expr")


def scrape_annotations(ds):
    return ds["spec"]["template"]["metadata"].get("annotations", {})


def pod_substance(ds):
    """The pod spec and annotations of a DaemonSet, with the one flag the
    chart adds: it names its port, the exporter's default, explicitly."""
    pod = copy.deepcopy(ds["spec"]["template"]["spec"])
    container = pod["containers"][0]
    container["args"] = [a for a in container["args"] if a != "--web.listen-address=:8080"]
    return {"pod": pod, "annotations": scrape_annotations(ds), "strategy": ds["spec"]["updateStrategy"]}


def check_like_kustomize(chart, case):
    """The chart renders what kustomize renders, less the labels."""
    directory = KUSTOMIZE[case]
    base = kustomize(directory)
    ds = only(chart, "DaemonSet")
    args = ds["spec"]["template"]["spec"]["containers"][0]["args"]
    check("--web.listen-address=:8080" in args, f"{case}: the chart names port 8080")
    theirs, ours = pod_substance(only(base, "DaemonSet")), pod_substance(ds)
    for key in theirs:
        check(theirs[key] == ours[key], f"{case}: DaemonSet {key} differs from {directory}:\n"
              f"kustomize: {json.dumps(theirs[key], sort_keys=True)}\nchart:     {json.dumps(ours[key], sort_keys=True)}")
    for kind in ("DaemonSet", "Service", "ServiceAccount"):
        check(only(base, kind)["metadata"]["name"] == only(chart, kind)["metadata"]["name"], f"{case}: {kind} name")
        check(only(base, kind)["metadata"]["namespace"] == only(chart, kind)["metadata"]["namespace"], f"{case}: {kind} namespace")
        check(only(base, kind)["metadata"]["labels"]["app.kubernetes.io/name"] == only(chart, kind)["metadata"]["labels"]["app.kubernetes.io/name"], f"{case}: {kind} name label")
    check(only(base, "Service")["spec"]["ports"] == only(chart, "Service")["spec"]["ports"], f"{case}: Service ports")
    check(kinds(base) - {"Secret"} == kinds(chart), f"{case}: kinds {sorted(kinds(base))} and {sorted(kinds(chart))}")
    if "ServiceMonitor" in kinds(base):
        theirs, ours = only(base, "ServiceMonitor")["spec"], only(chart, "ServiceMonitor")["spec"]
        check(theirs["endpoints"] == ours["endpoints"] and theirs["jobLabel"] == ours["jobLabel"], f"{case}: ServiceMonitor differs from {directory}")
        # Both PrometheusRules are compared with alerts.yml itself (here and
        # in check_manifests.py), not with each other.


def check_cases(rendered):
    operator = {"ServiceMonitor", "PrometheusRule"}
    plain = {"ServiceAccount", "Service", "DaemonSet"}
    expected_kinds = {
        "default": plain, "operator": plain | operator, "operator-offline": plain | operator,
        "operator-off": plain, "monitor-only": plain | {"ServiceMonitor"}, "tls": plain | operator,
        "processes": plain | operator, "nvidia-runtime": plain | operator, "extras": plain,
        "dashboard": plain | {"ConfigMap"}, "release-name": plain,
        "dcgm": plain | operator, "dcgm-operator-key": plain,
        "dra": plain | operator | {"ClusterRole", "ClusterRoleBinding"},
    }
    for case, objects in rendered.items():
        check(kinds(objects) == expected_kinds[case], f"{case}: kinds {sorted(kinds(objects))}")
        ds, _, _ = check_hardening(objects, case, CASES[case][0])
        annotations = scrape_annotations(ds)
        if "ServiceMonitor" in kinds(objects):
            check_operator_objects(objects, case)
            check(not any(k.startswith("prometheus.io/") for k in annotations), f"{case}: no scrape annotations with a ServiceMonitor")
        else:
            check(annotations.get("prometheus.io/scrape") == "true", f"{case}: scrape annotations without a ServiceMonitor")
    print("every rendering: hardening, labels, selector, Service; ServiceMonitor and PrometheusRule only where the operator is")

    _, pod, container = check_hardening(rendered["tls"], "tls", TLS_VALUES)
    args = container["args"]
    check("--web.config.file=/etc/system-info-exporter/web/web.yml" in args and "--web.probes-without-auth" in args, "tls: web config and probes without auth")
    check(container["livenessProbe"]["httpGet"]["scheme"] == container["readinessProbe"]["httpGet"]["scheme"] == "HTTPS", "tls: HTTPS probes")
    (web,) = [v for v in pod["volumes"] if v["name"] == "web"]
    sources = {s["secret"]["name"]: [i["path"] for i in s["secret"]["items"]] for s in web["projected"]["sources"]}
    check(sources == {f"{NAME}-web": ["web.yml"], f"{NAME}-tls": ["tls.crt", "tls.key"]}, "tls: one projected volume with web.yml, tls.crt, tls.key")
    (endpoint,) = only(rendered["tls"], "ServiceMonitor")["spec"]["endpoints"]
    check(endpoint["scheme"] == "https", "tls: ServiceMonitor scheme https")
    check(endpoint["tlsConfig"] == TLS_VALUES["serviceMonitor"]["tlsConfig"] and endpoint["basicAuth"] == TLS_VALUES["serviceMonitor"]["basicAuth"], "tls: tlsConfig and basicAuth passed through")
    print("tls: web config and certificate in one projected volume, HTTPS probes without auth, the scrape's TLS and basic auth")

    _, pod, container = check_hardening(rendered["processes"], "processes", CASES["processes"][0])
    state = {m["name"]: m for m in container["volumeMounts"]}["containerd-state"]
    check(pod["hostPID"] is True and "--collector.processes" in container["args"] and state["readOnly"], "processes: hostPID, collector, container state read-only")
    print("processes: hostPID, --collector.processes, container state read-only, no capability")

    ds, pod, container = check_hardening(rendered["extras"], "extras", EXTRA_VALUES)
    image = EXTRA_VALUES["image"]
    check(container["image"] == f"{image['repository']}:{image['tag']}" and container["imagePullPolicy"] == "Always", "extras: image")
    check(ds["metadata"]["labels"]["app.kubernetes.io/version"] == image["tag"], "extras: version label from the image tag")
    check(pod["imagePullSecrets"] == EXTRA_VALUES["imagePullSecrets"], "extras: imagePullSecrets")
    check(container["resources"] == EXTRA_VALUES["resources"], "extras: resources")
    check(pod["nodeSelector"] == EXTRA_VALUES["nodeSelector"] and pod["tolerations"] == EXTRA_VALUES["tolerations"], "extras: nodeSelector, tolerations")
    check("affinity" not in pod and "priorityClassName" not in pod, "extras: affinity and priorityClassName removable")
    meta = ds["spec"]["template"]["metadata"]
    check(meta["annotations"]["example.com/owner"] == "gpu-team" and meta["labels"]["team"] == "gpu", "extras: podAnnotations, podLabels")
    check(meta["labels"]["app.kubernetes.io/name"] == NAME and meta["labels"]["app.kubernetes.io/instance"] == NAME, "extras: podLabels cannot change the selector labels")
    check(meta["annotations"]["prometheus.io/port"] == "9400", "extras: scrape annotation on the port")
    check(container["args"][-2:] == EXTRA_VALUES["extraArgs"] and "--web.listen-address=:9400" in container["args"], "extras: extraArgs, listen address")
    check(container["env"][-1] == EXTRA_VALUES["extraEnv"][0], "extras: extraEnv")
    check(container["ports"] == [{"name": "metrics", "containerPort": 9400, "protocol": "TCP"}], "extras: container port")
    check(pod["runtimeClassName"] == "nvidia" and pod["hostNetwork"] is True and pod["dnsPolicy"] == "ClusterFirstWithHostNet", "extras: runtimeClassName, hostNetwork")
    check("volumes" not in pod and "volumeMounts" not in container, "extras: no volume without podResources")
    print("extras: image, pull secrets, resources, scheduling, pod labels and annotations, args, env, runtime class, host network, port, root")

    (configmap,) = [o for (k, _), o in rendered["dashboard"].items() if k == "ConfigMap"]
    check(configmap["metadata"]["labels"]["grafana_dashboard"] == "1", "dashboard: grafana_dashboard label")
    (text,) = configmap["data"].values()
    check(text == DASHBOARD.read_text().rstrip("\n"), "dashboard: ConfigMap differs from deploy/grafana/dashboard.json")
    print(f"dashboard: ConfigMap {configmap['metadata']['name']} holds deploy/grafana/dashboard.json ({len(text)} bytes)")

    for case, key in (("dcgm", "metrics"), ("dcgm-operator-key", "dcgm-metrics.csv")):
        values = CASES[case][0]
        _, pod, container = check_hardening(rendered[case], case, values)
        env = {e["name"]: e.get("value") for e in container["env"]}
        check(env.get("SIE_METRICS_FORMAT") == "dcgm", f"{case}: the dcgm view, through the environment (a flag in extraArgs overrides it)")
        (volume,) = [v for v in pod["volumes"] if v["name"] == "dcgm-counters"]
        check(volume["configMap"]["name"] == values["dcgm"]["countersConfigMap"], f"{case}: the ConfigMap named")
        (item,) = volume["configMap"]["items"]
        check(item["key"] == key, f"{case}: ConfigMap key {item['key']}, expected {key}")
        (mount,) = [m for m in container["volumeMounts"] if m["name"] == "dcgm-counters"]
        path = f"{mount['mountPath']}/{item['path']}"
        check(f"--dcgm.counters={path}" in container["args"], f"{case}: --dcgm.counters names the mounted file {path}")
    for case in CASES:
        if "dcgm" not in CASES[case][0]:
            _, pod, container = check_hardening(rendered[case], case, CASES[case][0])
            check(not any(a.startswith("--dcgm.") for a in container["args"]) and "SIE_METRICS_FORMAT" not in {e["name"] for e in container["env"]},
                  f"{case}: no dcgm view unless asked")
    print("dcgm: the counters ConfigMap (key metrics, or the GPU Operator's) mounted read-only, --dcgm.counters names it, SIE_METRICS_FORMAT=dcgm")

    _, pod, container = check_hardening(rendered["dra"], "dra", CASES["dra"][0])
    api = {m["name"]: m for m in container["volumeMounts"]}["kube-api-access"]
    check(api["mountPath"] == "/var/run/secrets/kubernetes.io/serviceaccount", "dra: token mounted where the exporter looks")
    sources = {v["name"]: v for v in pod["volumes"]}["kube-api-access"]["projected"]["sources"]
    check(any(s.get("serviceAccountToken", {}).get("expirationSeconds", 1e9) <= 3607 for s in sources), "dra: a short-lived projected token")
    role = only(rendered["dra"], "ClusterRole")
    check(role["rules"] == [{"apiGroups": ["resource.k8s.io"], "resources": ["resourceslices"], "verbs": ["get", "list"]}], "dra: get and list on resourceslices only")
    (subject,) = only(rendered["dra"], "ClusterRoleBinding")["subjects"]
    check(subject["name"] == only(rendered["dra"], "ServiceAccount")["metadata"]["name"], "dra: bound to the exporter's service account")
    for case in CASES:
        if case != "dra":
            check(not {"ClusterRole", "ClusterRoleBinding"} & kinds(rendered[case]), f"{case}: no RBAC unless dra.enabled")
    print("dra: a short-lived token mounted read-only, a ClusterRole with get and list on resourceslices only, none without it")

    gpu = rendered["release-name"]
    check(only(gpu, "DaemonSet")["metadata"]["name"] == f"gpu-{NAME}", "release gpu: object names")
    check(only(gpu, "Service")["metadata"]["labels"]["app.kubernetes.io/name"] == NAME, "release gpu: same name label (job)")

    for case in KUSTOMIZE:
        check_like_kustomize(rendered[case], case)
    print(f"equal to kustomize in substance (pod spec, annotations, names, ports, ServiceMonitor): {', '.join(KUSTOMIZE.values())}")


def check_sources():
    """One source of truth: the chart links to the rules and the dashboard."""
    for link, target in (("files/alerts.yml", ALERTS), ("files/dashboard.json", DASHBOARD)):
        path = CHART / link
        check(path.is_symlink() and path.resolve() == target.resolve(), f"{link} must be a symlink to {target.relative_to(ROOT)}")
    cargo = tomllib.loads((ROOT / "Cargo.toml").read_text())["package"]["version"]
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    check(chart["apiVersion"] == "v2", "Chart.yaml apiVersion v2")
    check(chart["version"] == chart["appVersion"] == cargo, f"Chart.yaml version {chart['version']} and appVersion {chart['appVersion']} must equal Cargo.toml's {cargo}")
    print(f"sources: files/ links to alerts.yml and dashboard.json; chart version = appVersion = Cargo.toml = {cargo}")


def check_schema(helm, tmp):
    for setting, words in (("port=abc", ["port", "integer"]), ("nosuchkey=1", ["nosuchkey"]),
                           ("serviceMonitor.enabled=maybe", ["enabled", "boolean"]),
                           ("hostNetwork=1", ["hostNetwork", "boolean"]), ("extraArgs=--x", ["extraArgs", "array"]),
                           ("dcgm.countersConfigMap=Bad_Name", ["countersConfigMap"]), ("dcgm.countersKey=a/b", ["countersKey"])):
        out = run([helm, "template", NAME, str(CHART), "--set", setting])
        message = out.stderr.lower()
        check(out.returncode != 0 and "schema" in message and all(w.lower() in message for w in words),
              f"{helm}: --set {setting} must fail naming {words}: {out.stderr}")
    out = run([helm, "template", NAME, str(CHART), "--set", "global.imageRegistry=x"])
    check(out.returncode == 0, f"{helm}: global (from a parent chart) must be allowed: {out.stderr}")
    out = run([helm, "template", NAME, str(CHART), "--set", "tls.existingSecret=x"])
    check(out.returncode != 0 and "needs webConfig.existingSecret" in out.stderr, f"{helm}: TLS without a web config must fail: {out.stderr}")
    print(f"{helm}: schema rejects wrong types and unknown keys, allows global; TLS without a web config fails")


def check_package(helm, tmp, reference):
    """helm package copies the linked files in; the package renders alike."""
    out = run([helm, "package", str(CHART), "--destination", tmp])
    check(out.returncode == 0, f"{helm} package: {out.stderr}")
    (package,) = pathlib.Path(tmp).glob(f"{NAME}-*.tgz")
    with tarfile.open(package) as tar:
        for member, source in (("files/alerts.yml", ALERTS), ("files/dashboard.json", DASHBOARD)):
            info = tar.getmember(f"{NAME}/{member}")
            check(info.isfile() and tar.extractfile(info).read() == source.read_bytes(), f"{helm} package: {member} is not a copy of {source.name}")
    for case in ("operator", "dashboard"):
        values, flags = CASES[case]
        check(template(helm, tmp, case, values, flags, chart=package) == reference[case], f"{helm}: the package renders {case} differently")
    package.unlink()
    # A copy of the chart whose links were dropped (as some Git-based
    # loaders do) must fail with the reason, not render empty rules.
    copy_dir = pathlib.Path(tempfile.mkdtemp(dir=tmp)) / NAME
    shutil.copytree(CHART, copy_dir, symlinks=True)
    for link in (copy_dir / "files").iterdir():
        link.unlink()
    for case in ("operator", "dashboard"):
        values, flags = CASES[case]
        out = run([helm, "template", NAME, str(copy_dir), "-f", values_file(tmp, case, values), *flags])
        check(out.returncode != 0 and "without following symlinks" in out.stderr, f"{helm}: a chart without its linked files must fail: {out.stderr}")
    print(f"{helm}: package holds the linked files and renders alike; a chart without them fails")


def check_notes(helm):
    """NOTES.txt, through a client-only dry run (Helm 4; Helm 3 either lacks
    it or still asks a cluster). The API server address is one where nothing
    listens, so that no dry run ever reaches a real cluster."""
    nowhere = ["--kube-apiserver", "https://127.0.0.1:1"]
    out = run([helm, "install", NAME, str(CHART), "--dry-run=client", "--namespace", "monitoring", *nowhere])
    if out.returncode != 0 and any(s in out.stderr for s in ('invalid argument "client"', "cluster unreachable")):
        print(f"{helm}: no client-only dry run; NOTES.txt checked with the other binary")
        return False
    check(out.returncode == 0, f"{helm} install --dry-run=client: {out.stderr}")
    notes = out.stdout.split("NOTES:", 1)[-1]
    for text in ("port-forward ds/system-info-exporter 8080:8080", "http://localhost:8080/metrics", "/health", "gpu_count", "nvidia_gpus"):
        check(text in notes, f"NOTES.txt does not say {text!r}:\n{notes}")
    out = run([helm, "install", NAME, str(CHART), "--dry-run=client", "--set", "webConfig.existingSecret=w,tls.existingSecret=t", *nowhere])
    check(out.returncode == 0 and "curl -sk -u USER:PASSWORD https://localhost:8080/metrics" in out.stdout, f"NOTES.txt with TLS: {out.stdout}{out.stderr}")
    print(f"{helm}: NOTES.txt says how to reach /metrics and check the GPUs")
    return True


def lint(helm, tmp):
    for case, (values, _) in CASES.items():
        out = run([helm, "lint", "--strict", str(CHART), "-f", values_file(tmp, case, values)])
        check(out.returncode == 0, f"{helm} lint --strict ({case}): {out.stdout}{out.stderr}")
    print(f"{helm}: lint --strict passes for {len(CASES)} sets of values")


def main():
    helms = sys.argv[1:] or ["helm"]
    for helm in helms:
        check(shutil.which(helm), f"{helm} not found (tests/deploy/fetch-helm.sh fetches it)")
        version = run([helm, "version", "--short"]).stdout.strip()
        print(f"{helm}: {version}")
    check_sources()
    with tempfile.TemporaryDirectory() as tmp:
        first = helms[0]
        texts = {case: template(first, tmp, case, values, flags) for case, (values, flags) in CASES.items()}
        for case, text in texts.items():
            validate(text, case)
        print(f"{first}: {len(texts)} renderings validate (kubernetes-validate --strict, 1.25 and newest): {', '.join(texts)}")
        check_cases({case: objects_of(text) for case, text in texts.items()})
        notes_checked = False
        for helm in helms:
            lint(helm, tmp)
            check_schema(helm, tmp)
            check_package(helm, tmp, texts)
            notes_checked = check_notes(helm) or notes_checked
            if helm != first:
                for case, (values, flags) in CASES.items():
                    check(template(helm, tmp, case, values, flags) == texts[case], f"{helm} renders {case} differently from {first}")
                print(f"{helm}: renders all {len(CASES)} cases exactly as {first}")
        check(notes_checked, "no Helm binary could render NOTES.txt")
    print("chart: all checks passed")


if __name__ == "__main__":
    main()
