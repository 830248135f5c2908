#!/usr/bin/env python3
"""Offline checks of the Kubernetes manifests (run by scripts/validate-manifests.sh
inside its kubernetes-validate venv).

    validate_manifests.py --k8s-versions 1.30,1.37 --config deploy/kubernetes/base/gateway.toml \
        --defaults config/default.toml --cargo Cargo.toml --secret deploy/kubernetes/secret.example.yaml \
        base=rendered-base.yaml istio=rendered-istio.yaml

What is checked, and what is not:

1. Kubernetes objects: each one against the OpenAPI schemas of every Kubernetes
   version given, strict (an unknown field is an error, as `kubectl apply
   --validate=strict` would say), with the schemas kubernetes-validate ships. An
   apiVersion/kind without a schema is an error, not a warning. Not checked:
   what only the API server or a controller decides (admission, defaulting,
   immutable fields, quotas, whether the image exists).
2. Istio objects (DestinationRule, VirtualService, PeerAuthentication): apiVersion,
   kind, required fields, the fields and enums of the parts these manifests use,
   one-of rules (one hash key, one load-balancer kind, one string match), duration
   syntax, against the JSON Schema below (written here from Istio's API reference:
   no Istio CRD schemas ship offline). Unknown fields are errors. Not checked:
   istiod's own validation beyond that, and what Envoy does with the result.
3. Across objects and against the gateway's configuration (gateway.toml over
   config/default.toml): names and selectors that must meet (Service, PDB, HPA,
   NetworkPolicy, Istio host, subsets and selectors against the pods), the
   ConfigMap and Secret keys the pods and the `*_file` keys use, probe and
   scrape ports, the security context, resources, the grace period against
   shutdown_delay + shutdown_grace, the caches against the memory limit, ingest
   replicas against topics.partitions, keys of gateway.toml unknown to
   config/default.toml, the mesh settings, the image tag against Cargo.toml.
"""

from __future__ import annotations

import argparse
import copy
import functools
import ipaddress
import json
import re
import sys
import tomllib

import jsonschema
import yaml

import kubernetes_validate.utils as kv

# kubernetes-validate reads _definitions.json (1.8 MB) for every object: once is enough.
kv.schema_contents = functools.lru_cache(maxsize=None)(kv.schema_contents)

SECRET_NAME = "order-gateway-secrets"
SECRET_DIR = "/var/run/secrets/order-gateway"

errors: list[str] = []


def error(where: str, msg: str) -> None:
    errors.append(f"{where}: {msg}")


def ident(obj: dict) -> str:
    return f"{obj.get('kind', '?')}/{(obj.get('metadata') or {}).get('name', '?')}"


# ---------------------------------------------------------------- Istio schema

DURATION = {"type": "string", "pattern": r"^([0-9]+(\.[0-9]+)?(h|m|s|ms|us|µs|ns))+$"}
LABELS = {"type": "object", "additionalProperties": {"type": "string"}}
STRING_MATCH = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "maxProperties": 1,
    "properties": {"exact": {"type": "string"}, "prefix": {"type": "string"}, "regex": {"type": "string"}},
}
LOAD_BALANCER = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "simple": {"enum": ["UNSPECIFIED", "RANDOM", "PASSTHROUGH", "ROUND_ROBIN", "LEAST_REQUEST", "LEAST_CONN"]},
        "consistentHash": {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "httpHeaderName": {"type": "string", "minLength": 1},
                "httpCookie": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {"name": {"type": "string", "minLength": 1}, "path": {"type": "string"}, "ttl": DURATION},
                },
                "useSourceIp": {"type": "boolean"},
                "httpQueryParameterName": {"type": "string", "minLength": 1},
                "ringHash": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"minimumRingSize": {"type": "integer", "minimum": 1}},
                },
                "maglev": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"tableSize": {"type": "integer", "minimum": 1}},
                },
                "minimumRingSize": {"type": "integer", "minimum": 1},
            },
            # Exactly one hash key; at most one of the ring kinds.
            "oneOf": [
                {"required": ["httpHeaderName"]},
                {"required": ["httpCookie"]},
                {"required": ["useSourceIp"]},
                {"required": ["httpQueryParameterName"]},
            ],
            "not": {
                "anyOf": [
                    {"required": ["ringHash", "maglev"]},
                    {"required": ["ringHash", "minimumRingSize"]},
                    {"required": ["maglev", "minimumRingSize"]},
                ]
            },
        },
        "localityLbSetting": {"type": "object"},
        "warmupDurationSecs": DURATION,
        "warmup": {"type": "object"},
    },
    "not": {"required": ["simple", "consistentHash"]},
}
TRAFFIC_POLICY = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "loadBalancer": LOAD_BALANCER,
        "connectionPool": {"type": "object"},
        "outlierDetection": {"type": "object"},
        "tls": {"type": "object"},
        "portLevelSettings": {"type": "array", "items": {"type": "object"}},
        "tunnel": {"type": "object"},
        "proxyProtocol": {"type": "object"},
        "retryBudget": {"type": "object"},
    },
}
DESTINATION = {
    "type": "object",
    "required": ["host"],
    "additionalProperties": False,
    "properties": {
        "host": {"type": "string", "minLength": 1},
        "subset": {"type": "string", "minLength": 1},
        "port": {
            "type": "object",
            "additionalProperties": False,
            "properties": {"number": {"type": "integer", "minimum": 1, "maximum": 65535}},
        },
    },
}
HTTP_MATCH = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "uri": STRING_MATCH,
        "scheme": STRING_MATCH,
        "method": STRING_MATCH,
        "authority": STRING_MATCH,
        "headers": {"type": "object", "additionalProperties": STRING_MATCH},
        "withoutHeaders": {"type": "object", "additionalProperties": STRING_MATCH},
        "queryParams": {"type": "object", "additionalProperties": STRING_MATCH},
        "port": {"type": "integer", "minimum": 1, "maximum": 65535},
        "sourceLabels": LABELS,
        "sourceNamespace": {"type": "string"},
        "gateways": {"type": "array", "items": {"type": "string"}},
        "ignoreUriCase": {"type": "boolean"},
        "statPrefix": {"type": "string"},
    },
}
HTTP_ROUTE = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "name": {"type": "string"},
        "match": {"type": "array", "items": HTTP_MATCH},
        "route": {
            "type": "array",
            "minItems": 1,
            "items": {
                "type": "object",
                "required": ["destination"],
                "additionalProperties": False,
                "properties": {
                    "destination": DESTINATION,
                    "weight": {"type": "integer", "minimum": 0},
                    "headers": {"type": "object"},
                },
            },
        },
        "redirect": {"type": "object"},
        "directResponse": {"type": "object"},
        "delegate": {"type": "object"},
        "rewrite": {"type": "object"},
        "timeout": DURATION,
        "retries": {"type": "object"},
        "fault": {"type": "object"},
        "mirror": DESTINATION,
        "mirrors": {"type": "array"},
        "mirrorPercentage": {"type": "object"},
        "corsPolicy": {"type": "object"},
        "headers": {"type": "object"},
    },
    "oneOf": [
        {"required": ["route"]},
        {"required": ["redirect"]},
        {"required": ["directResponse"]},
        {"required": ["delegate"]},
    ],
}
METADATA = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$", "maxLength": 253},
        "namespace": {"type": "string"},
        "labels": LABELS,
        "annotations": LABELS,
    },
}
MTLS_MODE = {"enum": ["UNSET", "DISABLE", "PERMISSIVE", "STRICT"]}


def istio_object(api_versions: list[str], kind: str, spec: dict) -> dict:
    return {
        "type": "object",
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": {"enum": api_versions},
            "kind": {"const": kind},
            "metadata": METADATA,
            "spec": spec,
        },
    }


ISTIO_SCHEMAS = {
    "DestinationRule": istio_object(
        ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"],
        "DestinationRule",
        {
            "type": "object",
            "required": ["host"],
            "additionalProperties": False,
            "properties": {
                "host": {"type": "string", "minLength": 1},
                "trafficPolicy": TRAFFIC_POLICY,
                "subsets": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["name"],
                        "additionalProperties": False,
                        "properties": {
                            "name": {"type": "string", "pattern": r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"},
                            "labels": LABELS,
                            "trafficPolicy": TRAFFIC_POLICY,
                        },
                    },
                },
                "exportTo": {"type": "array", "items": {"type": "string"}},
                "workloadSelector": {"type": "object"},
            },
        },
    ),
    "VirtualService": istio_object(
        ["networking.istio.io/v1", "networking.istio.io/v1beta1", "networking.istio.io/v1alpha3"],
        "VirtualService",
        {
            "type": "object",
            "required": ["hosts"],
            "additionalProperties": False,
            "properties": {
                "hosts": {"type": "array", "minItems": 1, "items": {"type": "string", "minLength": 1}},
                "gateways": {"type": "array", "items": {"type": "string"}},
                "http": {"type": "array", "items": HTTP_ROUTE},
                "tls": {"type": "array"},
                "tcp": {"type": "array"},
                "exportTo": {"type": "array", "items": {"type": "string"}},
            },
        },
    ),
    "PeerAuthentication": istio_object(
        ["security.istio.io/v1", "security.istio.io/v1beta1"],
        "PeerAuthentication",
        {
            "type": "object",
            "additionalProperties": False,
            "properties": {
                "selector": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {"matchLabels": LABELS},
                },
                "mtls": {"type": "object", "additionalProperties": False, "properties": {"mode": MTLS_MODE}},
                "portLevelMtls": {
                    "type": "object",
                    "propertyNames": {"pattern": "^[0-9]+$"},
                    "additionalProperties": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {"mode": MTLS_MODE},
                    },
                },
            },
        },
    ),
}
for _schema in ISTIO_SCHEMAS.values():
    jsonschema.Draft202012Validator.check_schema(_schema)


def is_istio(obj: dict) -> bool:
    return str(obj.get("apiVersion", "")).split("/")[0].endswith("istio.io")


def validate_istio(obj: dict, where: str) -> None:
    schema = ISTIO_SCHEMAS.get(obj.get("kind"))
    if schema is None:
        error(where, f"{obj.get('apiVersion')} {obj.get('kind')}: no schema for this Istio kind here "
                     "(add one to ISTIO_SCHEMAS in scripts/validate_manifests.py)")
        return
    validator = jsonschema.Draft202012Validator(schema)
    for e in sorted(validator.iter_errors(obj), key=lambda e: list(e.absolute_path)):
        path = ".".join(str(p) for p in e.absolute_path) or "(object)"
        error(where, f"{path}: {e.message}")


# ------------------------------------------------------------ Kubernetes schema

def validate_kubernetes(obj: dict, where: str, versions: list[str]) -> None:
    for version in versions:
        try:
            kv.validate(obj, version, strict=True)
        except kv.ValidationError as e:
            path = ".".join(str(p) for p in e.path) or "(object)"
            error(where, f"Kubernetes {e.version} (strict): {path}: {e.message}")
        except kv.SchemaNotFoundError as e:
            error(where, f"no Kubernetes {version} schema for {e.api_version} {e.kind}: a typo, or an API that is gone")
        except kv.VersionNotSupportedError:
            error(where, f"kubernetes-validate has no schemas for Kubernetes {version}")


# --------------------------------------------------------- the gateway's config

def merged(defaults: dict, override: dict) -> dict:
    out = copy.deepcopy(defaults)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = merged(out[k], v)
        else:
            out[k] = v
    return out


def unknown_keys(cfg: dict, defaults: dict, path: str = "") -> list[str]:
    """Keys of cfg that config/default.toml does not have (the binary refuses them)."""
    out = []
    for k, v in cfg.items():
        p = f"{path}{k}"
        if k not in defaults:
            out.append(p)
        elif isinstance(v, dict) and isinstance(defaults[k], dict) and p != "kafka.options":
            out.extend(unknown_keys(v, defaults[k], p + "."))
    return out


def duration_seconds(text: str) -> float:
    units = {"ms": 0.001, "s": 1, "m": 60, "min": 60, "h": 3600, "d": 86400, "days": 86400}
    total, rest = 0.0, text.replace(" ", "")
    for num, unit in re.findall(r"([0-9.]+)([a-z]+)", rest):
        if unit not in units:
            raise ValueError(f"unknown unit in {text!r}")
        total += float(num) * units[unit]
    if not re.fullmatch(r"([0-9.]+[a-z]+)+", rest):
        raise ValueError(f"not a duration: {text!r}")
    return total


def quantity_bytes(q) -> int:
    m = re.fullmatch(r"([0-9.]+)([KMGTE]i?|k)?", str(q))
    if not m:
        raise ValueError(f"not a memory quantity: {q!r}")
    mult = {None: 1, "k": 1000, "K": 1000, "M": 1000**2, "G": 1000**3, "T": 1000**4, "E": 1000**6,
            "Ki": 1024, "Mi": 1024**2, "Gi": 1024**3, "Ti": 1024**4, "Ei": 1024**6}[m.group(2)]
    return int(float(m.group(1)) * mult)


def port_of(addr: str) -> int:
    return int(addr.rsplit(":", 1)[1])


# ------------------------------------------------------------- object checks

def selects(selector: dict | None, labels: dict) -> bool:
    """matchLabels only (what these manifests use); matchExpressions is reported."""
    if not selector:
        return False
    return all(labels.get(k) == v for k, v in (selector.get("matchLabels") or {}).items())


def pod_templates(objs: list[dict]):
    for o in objs:
        if o.get("kind") in ("Deployment", "Job", "StatefulSet", "DaemonSet"):
            yield o, o["spec"]["template"]


def check_security(where: str, pod: dict) -> None:
    psc = pod["spec"].get("securityContext") or {}
    if psc.get("runAsNonRoot") is not True:
        error(where, "pod securityContext.runAsNonRoot must be true")
    if psc.get("runAsUser") != 10001:
        error(where, "pod securityContext.runAsUser must be 10001 (the image's user)")
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        error(where, "pod securityContext.seccompProfile.type must be RuntimeDefault")
    for c in pod["spec"]["containers"]:
        sc = c.get("securityContext") or {}
        cw = f"{where}: container {c['name']}"
        if sc.get("allowPrivilegeEscalation") is not False:
            error(cw, "securityContext.allowPrivilegeEscalation must be false")
        if sc.get("readOnlyRootFilesystem") is not True:
            error(cw, "securityContext.readOnlyRootFilesystem must be true")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            error(cw, "securityContext.capabilities.drop must contain ALL")
        res = c.get("resources") or {}
        for kind in ("requests", "limits"):
            for r in ("cpu", "memory"):
                if r not in (res.get(kind) or {}):
                    error(cw, f"resources.{kind}.{r} is not set")


def container_ports(c: dict) -> dict:
    return {p.get("name"): p["containerPort"] for p in c.get("ports") or [] if p.get("name")}


def probe_port(c: dict, probe: dict) -> int | None:
    port = (probe.get("httpGet") or {}).get("port")
    if isinstance(port, str):
        return container_ports(c).get(port)
    return port


def check_set(name: str, objs: list[dict], cfg: dict, secret_keys: set[str], version: str, config_text: str) -> None:
    by_kind: dict[str, dict[str, dict]] = {}
    for o in objs:
        by_kind.setdefault(o["kind"], {})[o["metadata"]["name"]] = o
    configmaps = by_kind.get("ConfigMap", {})
    w = lambda o: f"{name}: {ident(o)}"  # noqa: E731

    # Pods: security, resources, configuration file, Secret and ConfigMap references, image.
    mounts_secret_dirs = []
    commands = {}
    for owner, pod in pod_templates(objs):
        where = w(owner)
        check_security(where, pod)
        spec = pod["spec"]
        volumes = {v["name"]: v for v in spec.get("volumes") or []}
        for v in volumes.values():
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                error(where, f"volume {v['name']}: ConfigMap {v['configMap']['name']} is not in the rendered set")
            if "secret" in v and v["secret"]["secretName"] != SECRET_NAME:
                error(where, f"volume {v['name']}: Secret {v['secret']['secretName']} is not {SECRET_NAME}")
        for c in spec["containers"]:
            cw = f"{where}: container {c['name']}"
            args = c.get("args") or []
            commands[args[0] if args else ""] = (owner, pod, c)
            if not str(c.get("image", "")).endswith(":" + version):
                error(cw, f"image {c.get('image')!r} is not tagged {version} (Cargo.toml's version): "
                          "set images[].newTag in the kustomization")
            env = {e["name"]: e for e in c.get("env") or []}
            cfg_env = env.get("ORDER_GATEWAY_CONFIG", {}).get("value")
            if not cfg_env:
                error(cw, "no ORDER_GATEWAY_CONFIG: the configuration file would not be read")
            mounts = {m["mountPath"].rstrip("/"): m for m in c.get("volumeMounts") or []}
            if cfg_env:
                directory, _, key = cfg_env.rpartition("/")
                m = mounts.get(directory)
                vol = volumes.get(m["name"]) if m else None
                cm = configmaps.get(((vol or {}).get("configMap") or {}).get("name", ""))
                if not cm:
                    error(cw, f"ORDER_GATEWAY_CONFIG={cfg_env}: {directory} is not a mounted ConfigMap")
                elif key not in (cm.get("data") or {}):
                    error(cw, f"ORDER_GATEWAY_CONFIG={cfg_env}: ConfigMap {cm['metadata']['name']} has no key {key}")
                elif cm["data"][key] != config_text:
                    error(cw, f"ConfigMap {cm['metadata']['name']} key {key} differs from deploy/kubernetes/base/gateway.toml")
            for e in env.values():
                ref = (e.get("valueFrom") or {}).get("secretKeyRef")
                if ref and (ref.get("name") != SECRET_NAME or ref.get("key") not in secret_keys):
                    error(cw, f"env {e['name']}: Secret key {ref.get('name')}/{ref.get('key')} is not in secret.example.yaml")
            for path, m in mounts.items():
                vol = volumes.get(m["name"])
                if vol is None:
                    error(cw, f"volumeMount {m['name']}: no such volume")
                elif "secret" in vol:
                    mounts_secret_dirs.append(path)
                    if path != SECRET_DIR:
                        error(cw, f"the Secret is mounted at {path}, but gateway.toml's *_file keys name {SECRET_DIR}")
            for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
                if probe in c and (c[probe].get("httpGet") and probe_port(c, c[probe]) is None):
                    error(cw, f"{probe}: port {c[probe]['httpGet'].get('port')!r} is not a container port")
            ann = pod["metadata"].get("annotations") or {}
            if ann.get("prometheus.io/scrape") == "true":
                port = int(ann.get("prometheus.io/port", 0))
                if port not in container_ports(c).values():
                    error(cw, f"prometheus.io/port {port} is not a container port")

    # Every *_file secret of gateway.toml is a key of the Secret.
    def walk(node, path=""):
        if isinstance(node, dict):
            for k, v in node.items():
                yield from walk(v, f"{path}{k}.")
        elif isinstance(node, str) and path.endswith("_file.") and node.startswith(SECRET_DIR + "/"):
            yield path[:-1], node

    for key, path in walk(cfg):
        if path[len(SECRET_DIR) + 1:] not in secret_keys:
            error(f"{name}: gateway.toml", f"{key} = {path!r}: secret.example.yaml has no key {path.rsplit('/', 1)[1]}")

    # serve
    serve = commands.get("serve")
    if not serve:
        error(name, "no Deployment runs `serve`")
    else:
        owner, pod, c = serve
        where = f"{w(owner)}: container {c['name']}"
        for probe, path in (("livenessProbe", "/healthz"), ("readinessProbe", "/readyz"), ("startupProbe", None)):
            p = c.get(probe)
            if not p:
                error(where, f"no {probe}")
            elif path and (p.get("httpGet") or {}).get("path") != path:
                error(where, f"{probe} must GET {path}")
        srv = cfg["server"]
        delay = duration_seconds(srv.get("shutdown_delay", "0s"))
        grace = duration_seconds(srv["shutdown_grace"])
        tgps = pod["spec"].get("terminationGracePeriodSeconds", 30)
        if tgps <= delay + grace:
            error(w(owner), f"terminationGracePeriodSeconds {tgps} must exceed server.shutdown_delay + "
                            f"server.shutdown_grace = {delay:g}s + {grace:g}s")
        limit = quantity_bytes(((c.get("resources") or {}).get("limits") or {}).get("memory", "0"))
        caches = int(cfg["cache"]["max_bytes"]) + int(cfg["analytics"]["cache_max_bytes"])
        if 2 * caches > limit:
            error(where, f"cache.max_bytes + analytics.cache_max_bytes = {caches / 2**20:.0f} MiB is more than half "
                         f"of the memory limit ({limit / 2**20:.0f} MiB): no headroom for the rest of the process")
        listen = cfg["server"]["listen"]
        if not listen.startswith("0.0.0.0:") or port_of(listen) not in container_ports(c).values():
            error(where, f"server.listen = {listen!r} is not 0.0.0.0 on a container port")
        keys = {t["topologyKey"] for t in pod["spec"].get("topologySpreadConstraints") or []}
        for k in ("topology.kubernetes.io/zone", "kubernetes.io/hostname"):
            if k not in keys:
                error(w(owner), f"no topologySpreadConstraint over {k}")
        env = {e["name"] for e in c.get("env") or []}
        if "ORDER_GATEWAY__API__CURSOR_SECRET" not in env and not cfg["api"].get("cursor_secret"):
            error(where, "api.cursor_secret is not shared: cursors of one replica would be refused by the others")
        labels = pod["metadata"]["labels"]
        svc = [s for s in by_kind.get("Service", {}).values() if s["spec"].get("selector") and
               all(labels.get(k) == v for k, v in s["spec"]["selector"].items())]
        if not svc:
            error(w(owner), "no Service selects the serve pods")
        for s in svc:
            for p in s["spec"]["ports"]:
                if not str(p.get("name", "")).startswith("http") or p.get("appProtocol") not in ("http", "http2", "kubernetes.io/h2c"):
                    error(w(s), f"port {p.get('name')}: name it http... with appProtocol http, so a mesh sees HTTP")
                tp = p.get("targetPort")
                if (container_ports(c).get(tp) if isinstance(tp, str) else tp) is None:
                    error(w(s), f"targetPort {tp!r} is not a port of the serve container")
        if not any(selects(p["spec"].get("selector"), labels) for p in by_kind.get("PodDisruptionBudget", {}).values()):
            error(w(owner), "no PodDisruptionBudget selects the serve pods")
        hpas = [h for h in by_kind.get("HorizontalPodAutoscaler", {}).values()
                if h["spec"]["scaleTargetRef"]["name"] == owner["metadata"]["name"]]
        if not hpas:
            error(w(owner), "no HorizontalPodAutoscaler scales it")
        elif "replicas" in owner["spec"]:
            error(w(owner), "spec.replicas is set although an HPA scales it: every apply would reset the count")
        netpols = [n for n in by_kind.get("NetworkPolicy", {}).values()
                   if selects(n["spec"].get("podSelector"), labels) and "Ingress" in n["spec"].get("policyTypes", [])]
        port = port_of(listen)
        if not any(port in [pp.get("port") for r in n["spec"].get("ingress") or [] for pp in r.get("ports") or []]
                   for n in netpols):
            error(w(owner), f"no NetworkPolicy lets anyone in on {port}")
    for h in by_kind.get("HorizontalPodAutoscaler", {}).values():
        ref = h["spec"]["scaleTargetRef"]
        if ref["name"] not in by_kind.get(ref["kind"], {}):
            error(w(h), f"scaleTargetRef {ref['kind']}/{ref['name']} is not in the rendered set")
    for kind in ("PodDisruptionBudget", "NetworkPolicy"):
        for o in by_kind.get(kind, {}).values():
            sel = o["spec"].get("selector") if kind == "PodDisruptionBudget" else o["spec"].get("podSelector")
            if (sel or {}).get("matchExpressions"):
                error(w(o), "matchExpressions: not understood by this check")
            if not any(selects(sel, pod["metadata"]["labels"]) for _, pod in pod_templates(objs)):
                error(w(o), "selects no pod of the rendered set")
    if not any(pp.get("port") == 53 and pp.get("protocol", "TCP") == "UDP"
               for n in by_kind.get("NetworkPolicy", {}).values() for r in n["spec"].get("egress") or []
               for pp in r.get("ports") or []):
        error(name, "no NetworkPolicy lets DNS (UDP 53) out")

    # ingest
    ingest = commands.get("ingest")
    if not ingest:
        error(name, "no Deployment runs `ingest`")
    else:
        owner, pod, c = ingest
        where = f"{w(owner)}: container {c['name']}"
        partitions = int(cfg["topics"]["partitions"])
        if owner["spec"].get("replicas", 1) > partitions:
            error(w(owner), f"replicas {owner['spec']['replicas']} > topics.partitions {partitions}: the extra consumers idle")
        ml = cfg["ingest"]["metrics_listen"]
        mport = port_of(ml)
        if not ml.startswith("0.0.0.0:"):
            error(where, f"ingest.metrics_listen = {ml!r}: only the pod itself could reach it")
        if container_ports(c).get("metrics") != mport:
            error(where, f"no container port named metrics on {mport} (ingest.metrics_listen)")
        lp = c.get("livenessProbe") or {}
        if (lp.get("httpGet") or {}).get("path") != "/healthz" or probe_port(c, lp) != mport:
            error(where, f"livenessProbe must GET /healthz on the metrics port {mport}")

    # setup
    setup = commands.get("setup")
    if not setup:
        error(name, "no Job runs `setup`")
    else:
        owner = setup[0]
        if owner["kind"] != "Job":
            error(w(owner), "setup runs once: a Job")
        for k in ("backoffLimit", "ttlSecondsAfterFinished"):
            if k not in owner["spec"]:
                error(w(owner), f"spec.{k} is not set")

    # Istio objects against the rest.
    services = by_kind.get("Service", {})
    pods = [pod for _, pod in pod_templates(objs)]
    drs = by_kind.get("DestinationRule", {})
    subsets = {}
    for dr in drs.values():
        host = dr["spec"]["host"].split(".")[0]
        if host not in services:
            error(w(dr), f"host {dr['spec']['host']!r} is not a Service of the rendered set")
        for s in dr["spec"].get("subsets") or []:
            subsets.setdefault(host, set()).add(s["name"])
            if s.get("labels") and not any(selects({"matchLabels": s["labels"]}, p["metadata"]["labels"]) for p in pods):
                error(w(dr), f"subset {s['name']}: its labels select no pod")
    for vs in by_kind.get("VirtualService", {}).values():
        for r in vs["spec"].get("http") or []:
            for d in r.get("route") or []:
                host = d["destination"]["host"].split(".")[0]
                if host not in services:
                    error(w(vs), f"route {r.get('name')}: host {host!r} is not a Service of the rendered set")
                sub = d["destination"].get("subset")
                if sub and sub not in subsets.get(host, set()):
                    error(w(vs), f"route {r.get('name')}: no DestinationRule defines subset {sub!r} of {host}")
    for pa in by_kind.get("PeerAuthentication", {}).values():
        sel = pa["spec"].get("selector")
        if sel and not any(selects(sel, p["metadata"]["labels"]) for p in pods):
            error(w(pa), "selector selects no pod")


def check_config(cfg_file: dict, cfg: dict, defaults: dict) -> None:
    where = "gateway.toml"
    for k in unknown_keys(cfg_file, defaults):
        error(where, f"{k}: not a key of config/default.toml (the gateway refuses unknown keys)")
    mesh = cfg["auth"]["mesh"]
    if mesh["identity_header"].lower() != "x-forwarded-client-cert":
        error(where, "auth.mesh.identity_header: Istio's sidecar sends x-forwarded-client-cert")
    if not mesh["trusted_peers"]:
        error(where, "auth.mesh.trusted_peers is empty: no identity would be believed")
    for p in mesh["trusted_peers"]:
        try:
            net = ipaddress.ip_network(p, strict=False)
        except ValueError as e:
            error(where, f"auth.mesh.trusted_peers: {p!r}: {e}")
            continue
        if not net.is_loopback:
            error(where, f"auth.mesh.trusted_peers: {p!r} is not loopback: the sidecar is in the pod")
    for i, k in enumerate(cfg["auth"]["keys"]):
        if not re.fullmatch(r"sha256:[0-9a-f]{64}", str(k.get("hash", ""))):
            error(where, f"auth.keys[{i}] ({k.get('name')}): hash must be sha256:<64 hex digits> (order-gateway hash-key)")
    for section in ("elasticsearch", "clickhouse", "schema_registry"):
        if not cfg[section]["url"].startswith("https://"):
            error(where, f"{section}.url: use https:// across the cluster network")
    if not cfg["kafka"]["security_protocol"].lower().endswith("ssl"):
        error(where, "kafka.security_protocol: use ssl or sasl_ssl across the cluster network")
    for section, keys in (("elasticsearch", ("password", "api_key")), ("clickhouse", ("password",)),
                          ("kafka", ("sasl_password",)), ("schema_registry", ("password",)), ("api", ("cursor_secret",))):
        for k in keys:
            if cfg[section].get(k):
                error(where, f"{section}.{k} holds a secret: use {section}.{k}_file or the Secret")


def load_yaml(path: str) -> list[dict]:
    with open(path) as f:
        try:
            return [d for d in yaml.safe_load_all(f) if d]
        except yaml.YAMLError as e:
            raise SystemExit(f"manifests: error: {path}: not YAML: {e}")


def check_all(config_text: str, defaults: dict, version: str, secret_docs: list[dict],
              sets: list[tuple[str, list[dict]]], versions: list[str]) -> tuple[list[str], dict]:
    """Every check; returns the errors and what was counted."""
    errors.clear()
    cfg_file = tomllib.loads(config_text)
    cfg = merged(defaults, cfg_file)
    check_config(cfg_file, cfg, defaults)
    secret_keys: set[str] = set()
    for s in secret_docs:
        if s.get("kind") == "Secret" and s["metadata"]["name"] == SECRET_NAME:
            secret_keys |= set((s.get("stringData") or {}).keys()) | set((s.get("data") or {}).keys())
    if not secret_keys:
        error("secret.example.yaml", f"no Secret {SECRET_NAME} with keys")
    seen: set[str] = set()
    counts = {"kubernetes": 0, "istio": 0, "sets": len(sets)}
    for name, objs in [("secret.example.yaml", secret_docs)] + sets:
        for o in objs:
            where = f"{name}: {ident(o) if isinstance(o, dict) else '?'}"
            if not isinstance(o, dict) or not all(k in o for k in ("apiVersion", "kind", "metadata")):
                error(where, "not an object with apiVersion, kind and metadata")
                continue
            key = json.dumps(o, sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            if is_istio(o):
                validate_istio(o, where)
                counts["istio"] += 1
            else:
                validate_kubernetes(o, where, versions)
                counts["kubernetes"] += 1
    for name, objs in sets:
        try:
            check_set(name, objs, cfg, secret_keys, version, config_text)
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            # A shape the schemas above already refused (or a missing required key).
            error(name, f"cross-checks stopped: {type(e).__name__}: {e}")
    return list(errors), counts


def find(objs: list[dict], kind: str, name: str) -> dict:
    return next(o for o in objs if o.get("kind") == kind and o["metadata"]["name"] == name)


def serve_container(objs: list[dict]) -> dict:
    return find(objs, "Deployment", "order-gateway")["spec"]["template"]["spec"]["containers"][0]


def self_test(config_text: str, defaults: dict, version: str, secret_docs: list[dict],
              sets: list[tuple[str, list[dict]]], versions: list[str]) -> list[str]:
    """Breaks the manifests in known ways (in memory) and expects each to be caught."""
    base = next(objs for name, objs in sets if not any(is_istio(o) for o in objs))
    istio = next((objs for name, objs in sets if any(is_istio(o) for o in objs)), None)

    def rename(d: dict, old: str, new: str) -> None:
        d[new] = d.pop(old)

    mutations = [
        ("an unknown field", "'readinesProbe' was unexpected",
         lambda o, c: (rename(serve_container(o), "readinessProbe", "readinesProbe"), c)[1]),
        ("a misspelt kind", "no Kubernetes",
         lambda o, c: (find(o, "PodDisruptionBudget", "order-gateway").update(kind="PodDisruptionBudgets"), c)[1]),
        ("a grace period below the drain", "terminationGracePeriodSeconds",
         lambda o, c: (find(o, "Deployment", "order-gateway")["spec"]["template"]["spec"]
                       .update(terminationGracePeriodSeconds=30), c)[1]),
        ("caches over half the memory limit", "half of the memory limit",
         lambda o, c: (serve_container(o)["resources"]["limits"].update(memory="512Mi"), c)[1]),
        ("more ingest replicas than partitions", "topics.partitions",
         lambda o, c: (find(o, "Deployment", "order-gateway-ingest")["spec"].update(replicas=9), c)[1]),
        ("a Service selecting nothing", "no Service selects",
         lambda o, c: (find(o, "Service", "order-gateway")["spec"]["selector"].update(
             {"app.kubernetes.io/component": "nothing"}), c)[1]),
        ("a Secret key that does not exist", "secret.example.yaml",
         lambda o, c: (serve_container(o)["env"][1]["valueFrom"]["secretKeyRef"].update(key="nope"), c)[1]),
        ("a trusted peer off the pod", "not loopback",
         lambda o, c: c.replace('trusted_peers = [', 'trusted_peers = ["10.0.0.0/8", ')),
        ("an unknown configuration key", "not a key of config/default.toml",
         lambda o, c: c.replace("[cache]\n", "[cache]\nmax_byte = 1\n")),
        ("a password in the file", "holds a secret",
         lambda o, c: c.replace("[clickhouse]\n", "[clickhouse]\npassword = \"x\"\n")),
    ]
    if istio is not None:
        mutations += [
            ("two hash keys", "consistentHash",
             lambda o, c: (find(o, "DestinationRule", "order-gateway")["spec"]["trafficPolicy"]["loadBalancer"]
                           ["consistentHash"].update(useSourceIp=True), c)[1]),
            ("an unknown subset", "no DestinationRule defines subset",
             lambda o, c: (find(o, "VirtualService", "order-gateway")["spec"]["http"][0]["route"][0]
                           ["destination"].update(subset="nope"), c)[1]),
            ("an unknown mTLS mode", "STRICTER",
             lambda o, c: (find(o, "PeerAuthentication", "order-gateway")["spec"]["mtls"].update(mode="STRICTER"), c)[1]),
        ]
    failures = []
    for what, expect, mutate in mutations:
        target = istio if expect in ("consistentHash", "no DestinationRule defines subset", "STRICTER") else base
        objs = copy.deepcopy(target)
        text = mutate(objs, config_text)
        if text == config_text and objs == target:
            failures.append(f"self-test: {what}: the mutation changed nothing (the manifests moved on?)")
            continue
        found, _ = check_all(text, defaults, version, secret_docs, [("self-test", objs)], versions)
        if not any(expect in e for e in found):
            failures.append(f"self-test: {what} was not reported (expected an error naming {expect!r}; got {found or 'none'})")
    errors.clear()
    return failures


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--k8s-versions", required=True, help="comma separated, e.g. 1.30,1.37")
    ap.add_argument("--config", required=True, help="deploy/kubernetes/base/gateway.toml")
    ap.add_argument("--defaults", required=True, help="config/default.toml")
    ap.add_argument("--cargo", required=True, help="Cargo.toml (the image tag)")
    ap.add_argument("--secret", required=True, help="deploy/kubernetes/secret.example.yaml")
    ap.add_argument("--self-test", action="store_true", help="also break the manifests in known ways and expect errors")
    ap.add_argument("rendered", nargs="+", help="NAME=FILE of a rendered kustomization")
    a = ap.parse_args()
    versions = [v.strip() for v in a.k8s_versions.split(",") if v.strip()]

    with open(a.config, "rb") as f:
        config_text = f.read().decode()
    with open(a.defaults, "rb") as f:
        defaults = tomllib.load(f)
    with open(a.cargo, "rb") as f:
        version = tomllib.load(f)["package"]["version"]
    secret_docs = load_yaml(a.secret)
    sets = []
    for spec in a.rendered:
        name, _, path = spec.partition("=")
        sets.append((name, load_yaml(path)))

    found, counts = check_all(config_text, defaults, version, secret_docs, sets, versions)
    if a.self_test and not found:
        found = self_test(config_text, defaults, version, secret_docs, sets, versions)
    for e in found:
        print(f"manifests: error: {e}", file=sys.stderr)
    summary = (f"{counts['kubernetes']} Kubernetes objects against Kubernetes {' and '.join(versions)} (strict), "
               f"{counts['istio']} Istio objects structurally, cross-checks over {counts['sets']} rendered sets"
               + (", self-test" if a.self_test else ""))
    if found:
        print(f"manifests: {len(found)} error(s); checked {summary}", file=sys.stderr)
        return 1
    print(f"manifests: ok: {summary}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
