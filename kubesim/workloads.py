"""Built-in kinds beyond RBAC, as kube-apiserver defaults and validates them.

Enough of apps/v1 Deployments, batch/v1 Jobs, core Services, ConfigMaps and Secrets,
policy/v1 PodDisruptionBudgets and networking.k8s.io/v1 NetworkPolicies for a server-side
dry-run of a real deployment to catch what the real server would refuse: required fields,
selectors that do not match their template, immutable fields (a Deployment's selector, a Job's
template, a Service's clusterIP, a Secret's type), volume mounts without a volume, quantities,
ports, probes and restart policies. Messages follow kube-apiserver's wording (`field: Reason:
detail`), so a test that reads them reads what `kubectl apply` would print.

Each kind has a `default(obj, old)` (mutating admission and defaulting, run before validation)
and a `validate(obj, old)` returning error strings; `old` is None on create.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import itertools
import json
import re
from collections.abc import Iterable, Mapping
from typing import Any

DNS1123_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
IANA_SVC_NAME = re.compile(r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$")
CONFIG_KEY = re.compile(r"^[-._a-zA-Z0-9]+$")
QUANTITY = re.compile(r"^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$")
ENV_NAME = re.compile(r"^[-._a-zA-Z][-._a-zA-Z0-9]*$")
PERCENT = re.compile(r"^[0-9]+%$")
PROTOCOLS = ("TCP", "UDP", "SCTP")
VOLUME_SOURCES = (
    "emptyDir",
    "secret",
    "configMap",
    "projected",
    "persistentVolumeClaim",
    "hostPath",
    "downwardAPI",
    "ephemeral",
    "csi",
    "nfs",
)
PROBE_HANDLERS = ("exec", "httpGet", "tcpSocket", "grpc")
ENV_SOURCES = ("configMapKeyRef", "secretKeyRef", "fieldRef", "resourceFieldRef")
_cluster_ips = itertools.count(10)


class BadRequest(Exception):
    """The body cannot be decoded into the kind (kube-apiserver answers 400, not 422)."""


# --- small helpers --------------------------------------------------------------------------------


def _go(value: Any) -> str:
    """A value as kube-apiserver's messages quote it."""
    if isinstance(value, str):
        return f'"{value}"'
    return json.dumps(value, sort_keys=True)


def invalid(path: str, value: Any, detail: str) -> str:
    return f"{path}: Invalid value: {_go(value)}: {detail}"


def required(path: str, detail: str = "") -> str:
    return f"{path}: Required value" + (f": {detail}" if detail else "")


def unsupported(path: str, value: Any, supported: Iterable[str]) -> str:
    return f"{path}: Unsupported value: {_go(value)}: supported values: " + ", ".join(
        f'"{s}"' for s in supported
    )


def forbidden(path: str, detail: str) -> str:
    return f"{path}: Forbidden: {detail}"


def immutable(path: str, value: Any) -> str:
    return invalid(path, value, "field is immutable")


def selector_matches(selector: Mapping[str, Any] | None, labels: Mapping[str, str]) -> bool:
    """A LabelSelector (matchLabels and matchExpressions) against a set of labels."""
    selector = selector or {}
    for key, value in (selector.get("matchLabels") or {}).items():
        if labels.get(key) != value:
            return False
    for expression in selector.get("matchExpressions") or []:
        key, operator = expression.get("key", ""), expression.get("operator", "")
        values = set(expression.get("values") or [])
        if operator == "In" and labels.get(key) not in values:
            return False
        if operator == "NotIn" and key in labels and labels[key] in values:
            return False
        if operator == "Exists" and key not in labels:
            return False
        if operator == "DoesNotExist" and key in labels:
            return False
    return True


def validate_selector(path: str, selector: Any) -> list[str]:
    if selector is None:
        return []
    if not isinstance(selector, dict):
        return [invalid(path, selector, "must be a label selector")]
    errors = []
    for i, expression in enumerate(selector.get("matchExpressions") or []):
        where = f"{path}.matchExpressions[{i}]"
        operator = expression.get("operator")
        if operator not in ("In", "NotIn", "Exists", "DoesNotExist"):
            errors.append(
                unsupported(
                    f"{where}.operator", operator, ("In", "NotIn", "Exists", "DoesNotExist")
                )
            )
        elif operator in ("In", "NotIn") and not expression.get("values"):
            errors.append(
                required(f"{where}.values", "must be specified when `operator` is 'In' or 'NotIn'")
            )
        elif operator in ("Exists", "DoesNotExist") and expression.get("values"):
            errors.append(
                forbidden(
                    f"{where}.values",
                    "may not be specified when `operator` is 'Exists' or 'DoesNotExist'",
                )
            )
    return errors


def parse_quantity(path: str, value: Any) -> float:
    """A resource quantity ("250m", "512Mi", "1") as a number; a malformed one is a 400."""
    text = str(value)
    match = QUANTITY.match(text)
    if not match:
        raise BadRequest(
            f"quantities must match the regular expression "
            f"'^([+-]?[0-9.]+)([eEinumkKMGTP]*[-+]?[0-9]*)$' ({path}: {text!r})"
        )
    number, suffix = float(match.group(1)), match.group(2)
    binary = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
    decimal = {"n": 1e-9, "u": 1e-6, "m": 1e-3, "": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12}
    if suffix in binary:
        return number * binary[suffix]
    if suffix in decimal:
        return number * decimal[suffix]
    if suffix[:1] in ("e", "E"):
        return number * 10 ** int(suffix[1:])
    raise BadRequest(f"unable to parse quantity's suffix ({path}: {text!r})")


def _port_ok(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and 1 <= value <= 65535


def _int_or_name(path: str, value: Any) -> list[str]:
    if isinstance(value, int) and not isinstance(value, bool):
        return [] if _port_ok(value) else [invalid(path, value, _PORT_RANGE)]
    if isinstance(value, str) and value and len(value) <= 15 and IANA_SVC_NAME.match(value):
        return []
    return [
        invalid(
            path, value, "must contain only alpha-numeric characters (a-z, 0-9), and hyphens (-)"
        )
    ]


_PORT_RANGE = "must be between 1 and 65535, inclusive"


def _non_negative(path: str, value: Any) -> list[str]:
    if value is None:
        return []
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        return [invalid(path, value, "must be greater than or equal to 0")]
    return []


# --- pod templates --------------------------------------------------------------------------------


def default_pod_spec(spec: dict[str, Any]) -> None:
    spec.setdefault("restartPolicy", "Always")
    spec.setdefault("dnsPolicy", "ClusterFirst")
    spec.setdefault("terminationGracePeriodSeconds", 30)
    spec.setdefault("schedulerName", "default-scheduler")
    spec.setdefault("securityContext", {})
    for container in itertools.chain(
        spec.get("initContainers") or [], spec.get("containers") or []
    ):
        container.setdefault("resources", {})
        container.setdefault("terminationMessagePath", "/dev/termination-log")
        container.setdefault("terminationMessagePolicy", "File")
        image = str(container.get("image") or "")
        tagged = ":" in image.rsplit("/", 1)[-1] or "@" in image
        latest = not tagged or image.endswith(":latest")
        container.setdefault("imagePullPolicy", "Always" if latest else "IfNotPresent")
        for port in container.get("ports") or []:
            port.setdefault("protocol", "TCP")


def validate_pod_template(path: str, template: Any, restart_policies: tuple[str, ...]) -> list[str]:
    if not isinstance(template, dict):
        return [required(path)]
    errors = []
    spec = template.get("spec")
    if not isinstance(spec, dict):
        return [required(f"{path}.spec")]
    spec_path = f"{path}.spec"
    volumes = spec.get("volumes") or []
    volume_names: set[str] = set()
    for i, volume in enumerate(volumes):
        where = f"{spec_path}.volumes[{i}]"
        name = volume.get("name", "")
        if not name:
            errors.append(required(f"{where}.name"))
        elif not DNS1123_LABEL.match(name) or len(name) > 63:
            errors.append(
                invalid(
                    f"{where}.name",
                    name,
                    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
                )
            )
        elif name in volume_names:
            errors.append(f"{where}.name: Duplicate value: {_go(name)}")
        volume_names.add(name)
        sources = [s for s in VOLUME_SOURCES if s in volume]
        if not sources:
            errors.append(required(where, "must specify a volume type"))
        elif len(sources) > 1:
            errors.append(
                forbidden(f"{where}.{sources[1]}", "may not specify more than 1 volume type")
            )
        if "secret" in volume and not (volume["secret"] or {}).get("secretName"):
            errors.append(required(f"{where}.secret.secretName"))
        if "configMap" in volume and not (volume["configMap"] or {}).get("name"):
            errors.append(required(f"{where}.configMap.name"))
    containers = spec.get("containers") or []
    if not containers:
        errors.append(required(f"{spec_path}.containers"))
    names: set[str] = set()
    for field_name in ("initContainers", "containers"):
        for i, container in enumerate(spec.get(field_name) or []):
            errors += _validate_container(
                f"{spec_path}.{field_name}[{i}]", container, names, volume_names
            )
    policy = spec.get("restartPolicy")
    if policy not in restart_policies and "Always" in restart_policies:
        errors.append(unsupported(f"{spec_path}.restartPolicy", policy, restart_policies))
    elif policy not in restart_policies:  # a Job's pods: kube-apiserver words it so
        valid = ", ".join(f'"{p}"' for p in restart_policies)
        errors.append(required(f"{spec_path}.restartPolicy", f"valid values: {valid}"))
    security = spec.get("securityContext") or {}
    for key in ("runAsUser", "runAsGroup", "fsGroup"):
        errors += _non_negative(f"{spec_path}.securityContext.{key}", security.get(key))
    if security.get("runAsNonRoot") and security.get("runAsUser") == 0:
        errors.append(
            forbidden(
                f"{spec_path}.securityContext.runAsNonRoot",
                "runAsNonRoot is true but runAsUser is 0",
            )
        )
    errors += _non_negative(
        f"{spec_path}.terminationGracePeriodSeconds", spec.get("terminationGracePeriodSeconds")
    )
    return errors


def _validate_container(
    path: str, container: dict[str, Any], names: set[str], volumes: set[str]
) -> list[str]:
    errors = []
    name = container.get("name", "")
    if not name:
        errors.append(required(f"{path}.name"))
    elif not DNS1123_LABEL.match(name) or len(name) > 63:
        errors.append(
            invalid(
                f"{path}.name",
                name,
                "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
            )
        )
    elif name in names:
        errors.append(f"{path}.name: Duplicate value: {_go(name)}")
    names.add(name)
    if not container.get("image"):
        errors.append(required(f"{path}.image"))
    port_names: set[str] = set()
    for i, port in enumerate(container.get("ports") or []):
        where = f"{path}.ports[{i}]"
        if not _port_ok(port.get("containerPort")):
            errors.append(invalid(f"{where}.containerPort", port.get("containerPort"), _PORT_RANGE))
        port_name = port.get("name")
        if port_name is not None:
            if len(port_name) > 15 or not IANA_SVC_NAME.match(port_name):
                errors.append(
                    invalid(f"{where}.name", port_name, "must be no more than 15 characters")
                )
            elif port_name in port_names:
                errors.append(f"{where}.name: Duplicate value: {_go(port_name)}")
            port_names.add(port_name)
        if port.get("protocol", "TCP") not in PROTOCOLS:
            errors.append(unsupported(f"{where}.protocol", port.get("protocol"), PROTOCOLS))
    for i, var in enumerate(container.get("env") or []):
        where = f"{path}.env[{i}]"
        if not var.get("name"):
            errors.append(required(f"{where}.name"))
        elif not ENV_NAME.match(var["name"]):
            errors.append(
                invalid(
                    f"{where}.name",
                    var["name"],
                    "a valid environment variable name must consist of alphabetic characters, digits, '_', '-', or '.', and must not start with a digit",
                )
            )
        source = var.get("valueFrom")
        if source is not None:
            kinds = [k for k in ENV_SOURCES if k in source]
            if var.get("value"):
                errors.append(
                    invalid(
                        f"{where}.valueFrom", "", "may not be specified when `value` is not empty"
                    )
                )
            if len(kinds) != 1:
                errors.append(
                    invalid(
                        f"{where}.valueFrom",
                        "",
                        "may not have more than one field specified at a time"
                        if kinds
                        else "must specify one of: `fieldRef`, `resourceFieldRef`, `configMapKeyRef` or `secretKeyRef`",
                    )
                )
            for ref in ("configMapKeyRef", "secretKeyRef"):
                if ref in source and not (source[ref] or {}).get("key"):
                    errors.append(required(f"{where}.valueFrom.{ref}.key"))
    mount_paths: set[str] = set()
    for i, mount in enumerate(container.get("volumeMounts") or []):
        where = f"{path}.volumeMounts[{i}]"
        if mount.get("name") not in volumes:
            errors.append(f"{where}.name: Not found: {_go(mount.get('name', ''))}")
        mount_path = mount.get("mountPath", "")
        if not mount_path:
            errors.append(required(f"{where}.mountPath"))
        elif mount_path in mount_paths:
            errors.append(invalid(f"{where}.mountPath", mount_path, "must be unique"))
        mount_paths.add(mount_path)
    for probe_name in ("livenessProbe", "readinessProbe", "startupProbe"):
        probe = container.get(probe_name)
        if probe is None:
            continue
        where = f"{path}.{probe_name}"
        handlers = [h for h in PROBE_HANDLERS if h in probe]
        if not handlers:
            errors.append(required(where, "must specify a handler type"))
        elif len(handlers) > 1:
            errors.append(
                forbidden(f"{where}.{handlers[1]}", "may not specify more than 1 handler type")
            )
        if "httpGet" in probe:
            errors += _int_or_name(f"{where}.httpGet.port", (probe["httpGet"] or {}).get("port"))
        if "tcpSocket" in probe:
            errors += _int_or_name(
                f"{where}.tcpSocket.port", (probe["tcpSocket"] or {}).get("port")
            )
        for key in ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "failureThreshold"):
            errors += _non_negative(f"{where}.{key}", probe.get(key))
        if (
            probe_name in ("livenessProbe", "startupProbe")
            and probe.get("successThreshold", 1) != 1
        ):
            errors.append(
                invalid(f"{where}.successThreshold", probe.get("successThreshold"), "must be 1")
            )
    resources = container.get("resources") or {}
    limits = {
        k: parse_quantity(f"{path}.resources.limits[{k}]", v)
        for k, v in (resources.get("limits") or {}).items()
    }
    for key, value in (resources.get("requests") or {}).items():
        amount = parse_quantity(f"{path}.resources.requests[{key}]", value)
        if key in limits and amount > limits[key]:
            errors.append(
                invalid(
                    f"{path}.resources.requests",
                    str(value),
                    f"must be less than or equal to {key} limit of {resources['limits'][key]}",
                )
            )
    security = container.get("securityContext") or {}
    errors += _non_negative(f"{path}.securityContext.runAsUser", security.get("runAsUser"))
    if security.get("privileged") and security.get("allowPrivilegeEscalation") is False:
        errors.append(
            invalid(
                f"{path}.securityContext",
                "",
                "cannot set `allowPrivilegeEscalation` to false and `privileged` to true",
            )
        )
    if security.get("runAsNonRoot") and security.get("runAsUser") == 0:
        errors.append(
            forbidden(
                f"{path}.securityContext.runAsNonRoot", "runAsNonRoot is true but runAsUser is 0"
            )
        )
    return errors


# --- apps/v1 Deployment ---------------------------------------------------------------------------


def default_deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("replicas", 1)
    spec.setdefault("revisionHistoryLimit", 10)
    spec.setdefault("progressDeadlineSeconds", 600)
    strategy = spec.setdefault("strategy", {})
    strategy.setdefault("type", "RollingUpdate")
    if strategy["type"] == "RollingUpdate":
        strategy.setdefault("rollingUpdate", {"maxUnavailable": "25%", "maxSurge": "25%"})
    template_spec = (spec.get("template") or {}).get("spec")
    if isinstance(template_spec, dict):
        default_pod_spec(template_spec)
    _generation(obj, old)
    obj.setdefault("status", {})


def validate_deployment(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    errors = _non_negative("spec.replicas", spec.get("replicas"))
    errors += _validate_controller_selector(spec, "deployment")
    strategy = spec.get("strategy") or {}
    if strategy.get("type") not in ("RollingUpdate", "Recreate"):
        errors.append(
            unsupported("spec.strategy.type", strategy.get("type"), ("Recreate", "RollingUpdate"))
        )
    if strategy.get("type") == "Recreate" and strategy.get("rollingUpdate") is not None:
        errors.append(
            forbidden(
                "spec.strategy.rollingUpdate",
                "may not be specified when strategy `type` is 'Recreate'",
            )
        )
    errors += validate_pod_template("spec.template", spec.get("template"), ("Always",))
    if old is not None and spec.get("selector") != (old.get("spec") or {}).get("selector"):
        errors.append(immutable("spec.selector", spec.get("selector")))
    return errors


def _validate_controller_selector(spec: dict[str, Any], what: str) -> list[str]:
    selector = spec.get("selector")
    if selector is None:
        return [required("spec.selector")]
    errors = validate_selector("spec.selector", selector)
    if not (selector.get("matchLabels") or selector.get("matchExpressions")):
        errors.append(invalid("spec.selector", selector, f"empty selector is invalid for {what}"))
        return errors
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    if not selector_matches(selector, labels):
        errors.append(
            invalid(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
        )
    return errors


def _generation(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    meta = obj.setdefault("metadata", {})
    if old is None:
        meta["generation"] = 1
    else:
        before = old["metadata"].get("generation", 1)
        meta["generation"] = before + (1 if obj.get("spec") != old.get("spec") else 0)


# --- batch/v1 Job ---------------------------------------------------------------------------------

JOB_UID_LABEL = "batch.kubernetes.io/controller-uid"


def default_job(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("backoffLimit", 6)
    spec.setdefault("completions", 1)
    spec.setdefault("parallelism", 1)
    spec.setdefault("completionMode", "NonIndexed")
    spec.setdefault("suspend", False)
    template = spec.setdefault("template", {})
    if isinstance(template.get("spec"), dict):
        default_pod_spec(template["spec"])
    if old is None and not spec.get("manualSelector") and "selector" not in spec:
        # The job controller's own selector: the object's uid, on the template's labels too.
        uid = obj["metadata"].get("uid") or "00000000-0000-0000-0000-000000000000"
        name = obj["metadata"].get("name", "")
        spec["selector"] = {"matchLabels": {JOB_UID_LABEL: uid}}
        labels = template.setdefault("metadata", {}).setdefault("labels", {})
        labels.update(
            {
                JOB_UID_LABEL: uid,
                "controller-uid": uid,
                "batch.kubernetes.io/job-name": name,
                "job-name": name,
            }
        )
    obj.setdefault("status", {})


def validate_job(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    errors = []
    generated = {"matchLabels": {JOB_UID_LABEL: obj["metadata"].get("uid")}}
    if old is None and not spec.get("manualSelector") and spec.get("selector") != generated:
        errors.append(
            invalid("spec.selector", spec.get("selector"), "`selector` not auto-generated")
        )
    for key in ("backoffLimit", "completions", "parallelism", "ttlSecondsAfterFinished"):
        errors += _non_negative(f"spec.{key}", spec.get(key))
    deadline = spec.get("activeDeadlineSeconds")
    if deadline is not None and (not isinstance(deadline, int) or deadline <= 0):
        errors.append(invalid("spec.activeDeadlineSeconds", deadline, "must be greater than 0"))
    errors += validate_pod_template("spec.template", spec.get("template"), ("OnFailure", "Never"))
    if old is not None:
        old_spec = old.get("spec") or {}
        if spec.get("template") != old_spec.get("template"):
            errors.append(immutable("spec.template", "core.PodTemplateSpec{...}"))
        if spec.get("selector") != old_spec.get("selector"):
            errors.append(immutable("spec.selector", spec.get("selector")))
    return errors


# --- core/v1 Service ------------------------------------------------------------------------------

SERVICE_TYPES = ("ClusterIP", "NodePort", "LoadBalancer", "ExternalName")


def default_service(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("type", "ClusterIP")
    spec.setdefault("sessionAffinity", "None")
    for port in spec.get("ports") or []:
        port.setdefault("protocol", "TCP")
        port.setdefault("targetPort", port.get("port"))
    if spec["type"] == "ExternalName":
        return
    old_ip = ((old or {}).get("spec") or {}).get("clusterIP")
    if not spec.get("clusterIP"):
        # The API server keeps an allocated address when an update leaves it out.
        n = next(_cluster_ips)
        spec["clusterIP"] = old_ip or f"10.96.{n // 250}.{n % 250 + 1}"
    spec["clusterIPs"] = [spec["clusterIP"]]
    spec.setdefault("ipFamilies", ["IPv4"])
    spec.setdefault("ipFamilyPolicy", "SingleStack")
    spec.setdefault("internalTrafficPolicy", "Cluster")
    obj.setdefault("status", {"loadBalancer": {}})


def validate_service(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    errors = []
    kind = spec.get("type")
    if kind not in SERVICE_TYPES:
        errors.append(unsupported("spec.type", kind, SERVICE_TYPES))
    ports = spec.get("ports") or []
    if kind == "ExternalName":
        if not spec.get("externalName"):
            errors.append(required("spec.externalName"))
    elif not ports and spec.get("clusterIP") != "None":
        errors.append(required("spec.ports"))
    names: set[str] = set()
    for i, port in enumerate(ports):
        where = f"spec.ports[{i}]"
        if not _port_ok(port.get("port")):
            errors.append(invalid(f"{where}.port", port.get("port"), _PORT_RANGE))
        name = port.get("name")
        if len(ports) > 1 and not name:
            errors.append(required(f"{where}.name"))
        if name:
            if not DNS1123_LABEL.match(name):
                errors.append(
                    invalid(
                        f"{where}.name",
                        name,
                        "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-'",
                    )
                )
            elif name in names:
                errors.append(f"{where}.name: Duplicate value: {_go(name)}")
            names.add(name)
        if port.get("protocol") not in PROTOCOLS:
            errors.append(unsupported(f"{where}.protocol", port.get("protocol"), PROTOCOLS))
        errors += _int_or_name(f"{where}.targetPort", port.get("targetPort"))
    for key, value in (spec.get("selector") or {}).items():
        if not isinstance(value, str) or len(value) > 63:
            errors.append(
                invalid(f"spec.selector[{key}]", value, "must be no more than 63 characters")
            )
    ip = spec.get("clusterIP")
    if ip and ip != "None":
        try:
            ipaddress.ip_address(ip)
        except ValueError:
            errors.append(
                invalid(
                    "spec.clusterIPs[0]",
                    ip,
                    "must be a valid IP address, (e.g. 10.9.8.7 or 2001:db8::ffff)",
                )
            )
    if old is not None:
        old_ip = (old.get("spec") or {}).get("clusterIP")
        if old_ip and ip != old_ip and kind != "ExternalName":
            errors.append(invalid("spec.clusterIPs[0]", [ip], "may not change once set"))
    return errors


# --- core/v1 ConfigMap and Secret -----------------------------------------------------------------


def _validate_keys(data: Mapping[str, Any], field_name: str, seen: set[str]) -> list[str]:
    errors = []
    for key in data:
        if not CONFIG_KEY.match(key) or len(key) > 253:
            errors.append(
                invalid(
                    f"{field_name}[{key}]",
                    key,
                    "a valid config key must consist of alphanumeric characters, '-', '_' or '.' (e.g. 'key.name',  or 'KEY_NAME',  or 'key-name', regex used for validation is '[-._a-zA-Z0-9]+')",
                )
            )
        elif key in seen:
            errors.append(invalid(f"{field_name}[{key}]", key, "duplicate of key present in data"))
        seen.add(key)
    return errors


def validate_config_map(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    seen: set[str] = set()
    errors = _validate_keys(obj.get("data") or {}, "data", seen)
    errors += _validate_keys(obj.get("binaryData") or {}, "binaryData", seen)
    for key, value in (obj.get("binaryData") or {}).items():
        _base64(f"binaryData[{key}]", value)
    errors += _immutable_data(obj, old, ("data", "binaryData"))
    return errors


def default_secret(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    obj.setdefault("type", "Opaque")
    # stringData is write-only: the API server folds it into data (base64) and drops it.
    plain = obj.pop("stringData", None) or {}
    if plain:
        data = obj.setdefault("data", {}) or {}
        obj["data"] = data
        for key, value in plain.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def validate_secret(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    errors = _validate_keys(obj.get("data") or {}, "data", set())
    for key, value in (obj.get("data") or {}).items():
        _base64(f"data[{key}]", value)
    if old is not None and obj.get("type") != old.get("type"):
        errors.append(immutable("type", obj.get("type")))
    errors += _immutable_data(obj, old, ("data",))
    return errors


def _base64(path: str, value: Any) -> None:
    try:
        base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BadRequest(f"illegal base64 data in {path}") from exc


def _immutable_data(
    obj: dict[str, Any], old: dict[str, Any] | None, fields: tuple[str, ...]
) -> list[str]:
    if old is None or not old.get("immutable"):
        return []
    errors = []
    if not obj.get("immutable"):
        errors.append(forbidden("immutable", "field is immutable when `immutable` is set"))
    for name in fields:
        if (obj.get(name) or {}) != (old.get(name) or {}):
            errors.append(forbidden(name, "field is immutable when `immutable` is set"))
    return errors


# --- policy/v1 PodDisruptionBudget ----------------------------------------------------------------


def default_pdb(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    obj.setdefault("spec", {})
    _generation(obj, old)
    obj.setdefault(
        "status",
        {"currentHealthy": 0, "desiredHealthy": 0, "disruptionsAllowed": 0, "expectedPods": 0},
    )


def validate_pdb(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    errors = validate_selector("spec.selector", spec.get("selector"))
    if spec.get("minAvailable") is not None and spec.get("maxUnavailable") is not None:
        errors.append(
            invalid(
                "spec",
                "policy.PodDisruptionBudgetSpec{...}",
                "minAvailable and maxUnavailable cannot be both set",
            )
        )
    for key in ("minAvailable", "maxUnavailable"):
        value = spec.get(key)
        if value is None:
            continue
        if isinstance(value, str):
            if not PERCENT.match(value):
                errors.append(
                    invalid(
                        f"spec.{key}",
                        value,
                        "a valid percent string must be a numeric string followed by an ending '%' (e.g. '1%',  or '93%', regex used for validation is '[0-9]+%')",
                    )
                )
            elif int(value[:-1]) > 100:
                errors.append(invalid(f"spec.{key}", value, "must not be greater than 100%"))
        else:
            errors += _non_negative(f"spec.{key}", value)
    policy = spec.get("unhealthyPodEvictionPolicy")
    if policy is not None and policy not in ("IfHealthyBudget", "AlwaysAllow"):
        errors.append(
            unsupported(
                "spec.unhealthyPodEvictionPolicy", policy, ("AlwaysAllow", "IfHealthyBudget")
            )
        )
    return errors


# --- networking.k8s.io/v1 NetworkPolicy -----------------------------------------------------------


def default_network_policy(obj: dict[str, Any], old: dict[str, Any] | None) -> None:
    spec = obj.setdefault("spec", {})
    spec.setdefault("podSelector", {})
    if "policyTypes" not in spec:
        spec["policyTypes"] = ["Ingress"] + (["Egress"] if "egress" in spec else [])
    for direction in ("ingress", "egress"):
        for rule in spec.get(direction) or []:
            for port in rule.get("ports") or []:
                port.setdefault("protocol", "TCP")
    _generation(obj, old)


def validate_network_policy(obj: dict[str, Any], old: dict[str, Any] | None) -> list[str]:
    spec = obj.get("spec") or {}
    errors = validate_selector("spec.podSelector", spec.get("podSelector"))
    for i, kind in enumerate(spec.get("policyTypes") or []):
        if kind not in ("Ingress", "Egress"):
            errors.append(unsupported(f"spec.policyTypes[{i}]", kind, ("Egress", "Ingress")))
    for direction, peers_key in (("ingress", "from"), ("egress", "to")):
        for i, rule in enumerate(spec.get(direction) or []):
            where = f"spec.{direction}[{i}]"
            for j, port in enumerate(rule.get("ports") or []):
                if port.get("protocol") not in PROTOCOLS:
                    errors.append(
                        unsupported(f"{where}.ports[{j}].protocol", port.get("protocol"), PROTOCOLS)
                    )
                if "port" in port:
                    errors += _int_or_name(f"{where}.ports[{j}].port", port["port"])
                end = port.get("endPort")
                if end is not None and (
                    not isinstance(port.get("port"), int) or end < port["port"]
                ):
                    errors.append(
                        invalid(
                            f"{where}.ports[{j}].endPort",
                            end,
                            "must be greater than or equal to `port`",
                        )
                    )
            for j, peer in enumerate(rule.get(peers_key) or []):
                peer_path = f"{where}.{peers_key}[{j}]"
                kinds = [k for k in ("podSelector", "namespaceSelector", "ipBlock") if k in peer]
                if not kinds:
                    errors.append(required(peer_path, "must specify a peer"))
                if "ipBlock" in peer and len(kinds) > 1:
                    errors.append(
                        forbidden(peer_path, "may not specify both ipBlock and another peer")
                    )
                for selector_key in ("podSelector", "namespaceSelector"):
                    errors += validate_selector(
                        f"{peer_path}.{selector_key}", peer.get(selector_key)
                    )
                block = peer.get("ipBlock")
                if block is not None:
                    errors += _validate_ip_block(f"{peer_path}.ipBlock", block)
    return errors


def _validate_ip_block(path: str, block: dict[str, Any]) -> list[str]:
    try:
        network = ipaddress.ip_network(block.get("cidr", ""), strict=False)
    except ValueError:
        return [
            invalid(
                f"{path}.cidr",
                block.get("cidr", ""),
                "must be a valid CIDR value, (e.g. 10.9.8.0/24 or 2001:db8::/64)",
            )
        ]
    errors = []
    for i, text in enumerate(block.get("except") or []):
        try:
            inner = ipaddress.ip_network(text, strict=False)
        except ValueError:
            errors.append(invalid(f"{path}.except[{i}]", text, "must be a valid CIDR value"))
            continue
        if inner.version != network.version or not inner.subnet_of(network):  # type: ignore[arg-type]
            errors.append(invalid(f"{path}.except[{i}]", text, "must be a strict subset of `cidr`"))
    return errors
