"""Check Kubernetes manifests before they reach a cluster: KubeRay objects against the
KubeRay v1.7.0 CRD schemas and the operator's own rules, core objects against the
Kubernetes API schemas of ``kubernetes-validate``.

What the API server would do is done here too: unknown fields are errors (kubectl's
strict field validation), quantities are integers or quantity strings (a YAML ``0.5`` is
not), lists keyed by fields (``x-kubernetes-list-type: map``) hold each key once, and
names and labels follow Kubernetes' syntax. The KubeRay operator then refuses more
(``ValidateRayClusterSpec``, ``ValidateRayJobSpec``, ...): a TTL without
``shutdownAfterJobFinishes``, labels in ``rayStartParams``, and so on; those are checked
as well. Each problem names the document and the field path.

Example:
    >>> problems = validate_objects([{"apiVersion": "ray.io/v1", "kind": "RayCluster",
    ...                               "metadata": {"name": "c"}, "spec": {}}])
    >>> print(problems[0])
    document 1 (RayCluster c): spec.headGroupSpec: required field is missing
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator, Mapping, Sequence
from functools import cache
from importlib.resources import files
from pathlib import Path
from typing import Any

import yaml
from croniter import croniter

from raypipe.kuberay.errors import ManifestProblem, ManifestValidationError
from raypipe.kuberay.names import DNS1035, check_namespace

__all__ = [
    "KUBERNETES_VERSION",
    "RAY_KINDS",
    "check_objects",
    "check_text",
    "load_manifest",
    "validate_file",
    "validate_objects",
]

KUBERNETES_VERSION = "1.33"
"""The Kubernetes API version core objects are checked against."""

RAY_KINDS = {"RayCluster": 53, "RayJob": 47, "RayService": 47, "RayCronJob": 47}
"""KubeRay kinds with a schema here, and the longest name KubeRay accepts for each."""

_SUBMISSION_MODES = ("K8sJobMode", "HTTPMode", "InteractiveMode", "SidecarMode")
_OBJECT_META = {
    "name",
    "generateName",
    "namespace",
    "labels",
    "annotations",
    "finalizers",
    "ownerReferences",
}
_DNS1123_SUBDOMAIN = re.compile(
    r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"
)
_LABEL_NAME = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)$")
_LABEL_VALUE = re.compile(r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$")
_RAY_START_RESOURCES = ("num-cpus", "num-gpus", "memory", "resources")


def validate_file(path: str | Path) -> list[dict[str, Any]]:
    """The objects of a (multi-document) YAML file, each checked.

    Example:
        >>> [o["kind"] for o in validate_file("deploy/raycluster.yaml")]  # doctest: +SKIP
        ['RayCluster', 'ConfigMap']

    Raises:
        ManifestValidationError: every problem of every document (numbered as in the
            file, from 1), with field paths.
    """
    source = str(path)
    try:
        text = Path(source).read_text(encoding="utf-8")
    except OSError as exc:
        problem = ManifestProblem(f"cannot read the file: {exc.strerror or exc}", document=0)
        raise ManifestValidationError([problem], source=source) from exc
    return check_text(text, source=source)


def check_text(text: str, *, source: str = "<string>") -> list[dict[str, Any]]:
    """Like :func:`validate_file`, for the text of a manifest."""
    numbered = _documents(text, source)
    problems: list[ManifestProblem] = []
    for number, obj in numbered:
        problems += _validate_object(obj, number)
    if problems:
        raise ManifestValidationError(problems, source=source)
    return [obj for _, obj in numbered]


def load_manifest(text: str, *, source: str = "<string>") -> list[dict[str, Any]]:
    """The objects of a multi-document YAML text (empty documents left out).

    Raises:
        ManifestValidationError: the YAML is malformed, or a document is not an object.
    """
    return [obj for _, obj in _documents(text, source)]


def _documents(text: str, source: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        documents = list(yaml.safe_load_all(text))
    except yaml.YAMLError as exc:
        problem = ManifestProblem(f"not valid YAML: {exc}", document=0)
        raise ManifestValidationError([problem], source=source) from exc
    objects: list[tuple[int, dict[str, Any]]] = []
    problems: list[ManifestProblem] = []
    for number, document in enumerate(documents, start=1):
        if document is None:
            continue
        if not isinstance(document, dict):
            kind = type(document).__name__
            problems.append(ManifestProblem(f"expected an object, got {kind}", document=number))
            continue
        objects.append((number, document))
    if problems:
        raise ManifestValidationError(problems, source=source)
    return objects


def check_objects(objects: Sequence[Any], *, source: str = "<manifest>") -> None:
    """Raise :class:`ManifestValidationError` unless every object is valid."""
    problems = validate_objects(objects)
    if problems:
        raise ManifestValidationError(problems, source=source)


def validate_objects(objects: Sequence[Any]) -> list[ManifestProblem]:
    """Every problem of every object; an empty list when all are valid."""
    problems: list[ManifestProblem] = []
    for index, obj in enumerate(objects, start=1):
        problems += _validate_object(obj, index)
    return problems


def _validate_object(obj: Any, document: int) -> list[ManifestProblem]:
    if not isinstance(obj, Mapping):
        return [ManifestProblem(f"expected an object, got {type(obj).__name__}", document)]
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    metadata = obj.get("metadata")
    name = metadata.get("name") if isinstance(metadata, Mapping) else None

    def problem(path: str, message: str) -> ManifestProblem:
        return ManifestProblem(message, document, _text(kind), _text(name), path)

    missing = [f for f in ("apiVersion", "kind", "metadata") if f not in obj]
    if missing:
        return [problem(f, "required field is missing") for f in missing]
    if not isinstance(kind, str) or not isinstance(api_version, str):
        return [problem("kind", "apiVersion and kind must be strings")]
    if api_version.startswith("ray.io/"):
        if api_version != "ray.io/v1" or kind not in RAY_KINDS:
            known = ", ".join(RAY_KINDS)
            return [problem("kind", f"no schema for {api_version} {kind} (ray.io/v1: {known})")]
        found = [problem(p, m) for p, m in _metadata_problems(metadata, kind)]
        found += [problem(p, m) for p, m in _schema_problems(obj, kind)]
        if not found:  # the operator's rules read a well-formed object
            found += [problem(p, m) for p, m in _operator_problems(obj, kind)]
        return found
    return [problem(p, m) for p, m in _core_problems(obj)]


# -- KubeRay objects: the CRD schema --------------------------------------------------


@cache
def _crd_schema(kind: str) -> dict[str, Any]:
    """The CRD's openAPIV3Schema, made strict: unknown fields are errors."""
    text = (files("raypipe.kuberay") / "crds" / f"{kind.lower()}.json").read_text("utf-8")
    schema: dict[str, Any] = json.loads(text)["openAPIV3Schema"]
    strict = copy.deepcopy(schema)
    _forbid_unknown_fields(strict)
    strict["properties"]["metadata"] = {"type": "object"}  # checked by _metadata_problems
    return strict


def _forbid_unknown_fields(schema: Any) -> None:
    if isinstance(schema, dict):
        if (
            "properties" in schema
            and "additionalProperties" not in schema
            and not schema.get("x-kubernetes-preserve-unknown-fields")
        ):
            schema["additionalProperties"] = False
        for value in schema.values():
            _forbid_unknown_fields(value)
    elif isinstance(schema, list):
        for item in schema:
            _forbid_unknown_fields(item)


@cache
def _validator_class() -> Any:
    from jsonschema import Draft7Validator, validators
    from jsonschema.exceptions import ValidationError

    def list_map_keys(
        validator: Any, keys: list[str], instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        if not isinstance(instance, list):
            return
        item_schema = schema.get("items", {}).get("properties", {})
        seen: dict[tuple[Any, ...], int] = {}
        for position, item in enumerate(instance):
            if not isinstance(item, dict):
                continue
            key = tuple(item.get(k, item_schema.get(k, {}).get("default")) for k in keys)
            if key in seen:
                shown = ", ".join(f"{k}={v!r}" for k, v in zip(keys, key, strict=True))
                yield ValidationError(
                    f"duplicate entry ({shown}): items {seen[key]} and {position} share the key",
                    path=[position],
                )
            else:
                seen[key] = position

    def list_type(
        validator: Any, kind: str, instance: Any, schema: dict[str, Any]
    ) -> Iterator[ValidationError]:
        if kind == "set" and isinstance(instance, list):
            values = [json.dumps(v, sort_keys=True) for v in instance]
            if len(set(values)) != len(values):
                yield ValidationError("duplicate values in a set")

    return validators.extend(  # type: ignore[no-untyped-call]
        Draft7Validator,
        {"x-kubernetes-list-map-keys": list_map_keys, "x-kubernetes-list-type": list_type},
    )


def _schema_problems(obj: Mapping[str, Any], kind: str) -> list[tuple[str, str]]:
    validator = _validator_class()(_crd_schema(kind))
    found: list[tuple[str, str]] = []
    for error in validator.iter_errors(obj):
        found += _describe(error)
    return sorted(set(found))


def _describe(error: Any) -> list[tuple[str, str]]:
    path = _path(error.absolute_path)
    keyword, instance, schema = error.validator, error.instance, error.schema
    if keyword == "additionalProperties" and isinstance(instance, dict):
        known = set(schema.get("properties", {}))
        return [(_join(path, k), "unknown field") for k in sorted(set(instance) - known)]
    if keyword == "required" and isinstance(instance, dict):
        return [
            (_join(path, k), "required field is missing")
            for k in error.validator_value
            if k not in instance
        ]
    if keyword == "anyOf" and schema.get("x-kubernetes-int-or-string"):
        quantity = "an integer or a quantity string such as '500m'"
        return [(path, f"expected {quantity}, got {instance!r}")]
    if keyword == "pattern" and schema.get("x-kubernetes-int-or-string"):
        return [(path, f"{instance!r} is not a quantity such as '500m', '2' or '4Gi'")]
    if keyword == "type":
        wanted = error.validator_value
        expected = (
            wanted
            if isinstance(wanted, str)
            else " or ".join(
                t
                for t in wanted
                if t != "null"  # Kubernetes drops nulls before checking
            )
        )
        return [(path, f"expected {expected}, got {type(instance).__name__} ({instance!r:.60})")]
    return [(path, error.message)]


def _path(parts: Sequence[Any]) -> str:
    text = ""
    for part in parts:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _join(path: str, field: str) -> str:
    return f"{path}.{field}" if path else field


def _metadata_problems(metadata: Any, kind: str) -> list[tuple[str, str]]:
    if not isinstance(metadata, Mapping):
        return [("metadata", f"expected an object, got {type(metadata).__name__}")]
    found = [(f"metadata.{k}", "unknown field") for k in sorted(set(metadata) - _OBJECT_META)]
    name, generate = metadata.get("name"), metadata.get("generateName")
    if name is None and generate is None:
        found.append(("metadata.name", "required field is missing (or generateName)"))
    if name is not None:
        limit = RAY_KINDS.get(kind, 253)
        if not isinstance(name, str) or len(name) > limit:
            found.append(("metadata.name", f"must be a string of at most {limit} characters"))
        elif not (DNS1035 if kind in RAY_KINDS else _DNS1123_SUBDOMAIN).match(name):
            rule = "DNS-1035 label" if kind in RAY_KINDS else "DNS-1123 subdomain"
            found.append(("metadata.name", f"{name!r} is not a {rule}"))
    namespace = metadata.get("namespace")
    if namespace is not None and not (
        isinstance(namespace, str) and check_namespace(namespace) is None
    ):
        found.append(("metadata.namespace", f"{namespace!r} is not a DNS-1123 label"))
    found += _label_problems(metadata.get("labels"), "metadata.labels")
    annotations = metadata.get("annotations")
    if annotations is not None and not (
        isinstance(annotations, Mapping) and all(isinstance(v, str) for v in annotations.values())
    ):
        found.append(("metadata.annotations", "expected a map of strings"))
    return found


def _label_problems(labels: Any, path: str) -> list[tuple[str, str]]:
    if labels is None:
        return []
    if not isinstance(labels, Mapping):
        return [(path, "expected a map of strings")]
    found: list[tuple[str, str]] = []
    for key, value in labels.items():
        prefix, _, label = str(key).rpartition("/")
        if (
            len(label) > 63
            or not _LABEL_NAME.match(label)
            or (prefix and (len(prefix) > 253 or not _DNS1123_SUBDOMAIN.match(prefix)))
        ):
            found.append((f"{path}.{key}", "not a valid label key ([prefix/]name)"))
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            found.append((f"{path}.{key}", f"{value!r} is not a valid label value"))
    return found


# -- KubeRay objects: the operator's rules ---------------------------------------------


def _operator_problems(obj: Mapping[str, Any], kind: str) -> list[tuple[str, str]]:
    spec = obj.get("spec") or {}
    if kind == "RayCluster":
        return _cluster_rules(spec, "spec")
    if kind == "RayService":
        return _cluster_rules(spec.get("rayClusterConfig") or {}, "spec.rayClusterConfig")
    if kind == "RayJob":
        return _job_rules(spec, "spec")
    # RayCronJob
    found: list[tuple[str, str]] = []
    schedule = spec.get("schedule", "")
    if not croniter.is_valid(schedule) or len(schedule.split()) not in (1, 5):
        found.append(("spec.schedule", f"{schedule!r} is not a standard cron expression"))
    return found + _job_rules(spec.get("jobTemplate") or {}, "spec.jobTemplate")


def _cluster_rules(spec: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    autoscaling = bool(spec.get("enableInTreeAutoscaling"))
    v2 = autoscaling and (spec.get("autoscalerOptions") or {}).get("version") == "v2"
    groups: list[tuple[str, str, Mapping[str, Any]]] = [
        (f"{path}.headGroupSpec", "head", spec.get("headGroupSpec") or {})
    ]
    names: dict[str, int] = {}
    for i, group in enumerate(spec.get("workerGroupSpecs") or []):
        group_path = f"{path}.workerGroupSpecs[{i}]"
        groups.append((group_path, str(group.get("groupName")), group))
        if group.get("groupName") in names:
            found.append((f"{group_path}.groupName", "another worker group has this name"))
        names.setdefault(group.get("groupName"), i)
        low, high = group.get("minReplicas", 0), group.get("maxReplicas", 0)
        if low > high:
            found.append((f"{group_path}.minReplicas", f"{low} is more than maxReplicas {high}"))
        replicas = group.get("replicas")
        if replicas is not None and not low <= replicas <= high:
            found.append((f"{group_path}.replicas", f"{replicas} is not within [{low}, {high}]"))
        if autoscaling and group.get("suspend"):
            found.append((f"{group_path}.suspend", "a group cannot be suspended with autoscaling"))
    for group_path, _, group in groups:
        pod = (group.get("template") or {}).get("spec") or {}
        if not pod.get("containers"):
            found.append((f"{group_path}.template.spec.containers", "needs a container"))
        params = group.get("rayStartParams") or {}
        if "labels" in params:
            found.append(
                (f"{group_path}.rayStartParams.labels", "not supported: use the group's labels")
            )
        if group.get("resources") and any(params.get(k) for k in _RAY_START_RESOURCES):
            found.append(
                (
                    f"{group_path}.resources",
                    "resources set both here and in rayStartParams (num-cpus, num-gpus, "
                    "memory, resources); use one",
                )
            )
        found += _label_problems(group.get("labels"), f"{group_path}.labels")
        restart = pod.get("restartPolicy")
        if v2 and restart not in (None, "", "Never"):
            found.append(
                (
                    f"{group_path}.template.spec.restartPolicy",
                    "must be Never or unset with autoscaler v2",
                )
            )
    auth = (spec.get("authOptions") or {}).get("mode")
    if auth == "token" and not _version_at_least(spec.get("rayVersion"), (2, 52)):
        found.append((f"{path}.rayVersion", "token authentication needs Ray 2.52.0 or later"))
    return found


def _job_rules(spec: Mapping[str, Any], path: str) -> list[tuple[str, str]]:
    found: list[tuple[str, str]] = []
    mode = spec.get("submissionMode", "K8sJobMode")
    selector = spec.get("clusterSelector") or {}
    shutdown = bool(spec.get("shutdownAfterJobFinishes"))
    if mode not in _SUBMISSION_MODES:
        found.append((f"{path}.submissionMode", f"{mode!r} is not one of {_SUBMISSION_MODES}"))
    if spec.get("suspend") and not shutdown:
        found.append((f"{path}.suspend", "suspending needs shutdownAfterJobFinishes: true"))
    if spec.get("ttlSecondsAfterFinished", 0) > 0 and not shutdown:
        found.append((f"{path}.ttlSecondsAfterFinished", "needs shutdownAfterJobFinishes: true"))
    if not selector and spec.get("rayClusterSpec") is None:
        found.append((path, "needs rayClusterSpec or clusterSelector"))
    if selector:
        if not selector.get("ray.io/cluster"):
            found.append((f"{path}.clusterSelector", "needs the cluster's name as ray.io/cluster"))
        if mode == "SidecarMode":
            found.append((f"{path}.submissionMode", "SidecarMode cannot use a clusterSelector"))
        if spec.get("suspend"):
            found.append((f"{path}.suspend", "a job with a clusterSelector cannot be suspended"))
    if mode == "InteractiveMode" and spec.get("backoffLimit", 0) > 0:
        found.append((f"{path}.backoffLimit", "InteractiveMode allows no retries"))
    if mode == "SidecarMode":
        for field in ("submitterPodTemplate", "submitterConfig"):
            if field in spec:
                found.append((f"{path}.{field}", "not supported in SidecarMode"))
    if mode != "InteractiveMode" and not spec.get("entrypoint"):
        found.append((f"{path}.entrypoint", f"needs a command to run in {mode}"))
    if "activeDeadlineSeconds" in spec and spec["activeDeadlineSeconds"] <= 0:
        found.append((f"{path}.activeDeadlineSeconds", "must be a positive integer"))
    if spec.get("backoffLimit", 0) < 0:
        found.append((f"{path}.backoffLimit", "must not be negative"))
    if "runtimeEnvYAML" in spec:
        try:
            yaml.safe_load(spec["runtimeEnvYAML"])
        except yaml.YAMLError as exc:
            found.append((f"{path}.runtimeEnvYAML", f"not valid YAML: {exc}"))
    if spec.get("rayClusterSpec") is not None:
        found += _cluster_rules(spec["rayClusterSpec"], f"{path}.rayClusterSpec")
    return found


def _version_at_least(text: Any, minimum: tuple[int, int]) -> bool:
    match = re.match(r"^(\d+)\.(\d+)", str(text or ""))
    return match is not None and (int(match.group(1)), int(match.group(2))) >= minimum


# -- core objects: kubernetes-validate ---------------------------------------------------


def _core_problems(obj: Mapping[str, Any]) -> list[tuple[str, str]]:
    try:
        import kubernetes_validate  # type: ignore[import-untyped]
    except ImportError as exc:  # an optional dependency: say how to get it
        raise ImportError(
            "checking core Kubernetes objects needs kubernetes-validate: "
            "pip install 'raypipe[kuberay]'"
        ) from exc
    found = _metadata_problems(obj.get("metadata"), str(obj.get("kind")))
    try:
        kubernetes_validate.validate(dict(obj), KUBERNETES_VERSION, strict=True)
    except kubernetes_validate.ValidationError as exc:
        found += _describe(exc)
    except kubernetes_validate.SchemaNotFoundError as exc:
        found.append(("kind", exc.message))
    return list(dict.fromkeys(found))  # both checks may see the same metadata problem


def _text(value: Any) -> str | None:
    return value if isinstance(value, str) else None
