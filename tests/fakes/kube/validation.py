"""Validation of written objects, the way the API server refuses them.

Built-in kinds are checked against the real OpenAPI schemas that kubernetes-validate ships (the
fake says it is v1.32, so the v1.32 strict set), plus the few semantic rules of the API server's
Go validation that deckhand's writes can trip. What the real server answers, by class of mistake:

- a value of the wrong JSON type (`replicas: "three"`) cannot be decoded into the Go struct:
  400 BadRequest, `... cannot be handled as a Deployment: json: cannot unmarshal string into Go struct
  field ... of type int32`;
- an unknown field: with `?fieldValidation=Strict` 400 BadRequest `strict decoding error: unknown field
  "spec.foo"`; otherwise (`Warn`, the server's default, or `Ignore`) the field is dropped from the stored
  object and `Warn` adds a `Warning` header (https://kubernetes.io/docs/reference/using-api/api-concepts/
  #field-validation);
- a missing required field or a value out of range: 422 Invalid, every problem listed in
  `details.causes` (`FieldValueRequired`, `FieldValueInvalid`).

Custom resources deckhand writes (Istio VirtualService/DestinationRule, Argo Rollout) get minimal
structural schemas: a type mismatch there is a 422 with `... in body must be of type integer`, as
the apiextensions server words it. Unknown fields in them are kept (their real CRDs are far larger
than what is modelled here, so the fake cannot tell an unknown field from an unmodelled one).
"""
from __future__ import annotations

import copy
import functools
import json
from pathlib import Path
from typing import Any, Iterable

import jsonschema
import kubernetes_validate
from referencing import Registry, Resource

from .errors import ApiError
from .resources import ResourceType

SCHEMA_VERSION = "1.32.0"  # tests.fakes.kube.common.SERVER_VERSION
_SCHEMAS = Path(kubernetes_validate.__file__).parent / "kubernetes-json-schema" / f"v{SCHEMA_VERSION}-local-strict"

# Go types the real decoder names in its "cannot unmarshal" message, by JSON schema type.
_GO_TYPES = {"integer": "int32", "number": "float64", "boolean": "bool", "string": "string", "object": "map",
             "array": "slice"}
_JSON_TYPES = {str: "string", bool: "bool", int: "number", float: "number", list: "array", dict: "object"}


@functools.lru_cache(maxsize=1)
def _registry() -> Registry:
    definitions = json.loads((_SCHEMAS / "_definitions.json").read_text())
    return Resource.from_contents(definitions) @ Registry()


@functools.lru_cache(maxsize=None)
def _builtin_validator(kind: str, group: str, version: str) -> jsonschema.Validator | None:
    prefix = group.split(".", 1)[0]
    name = f"{kind.lower()}-{prefix}-{version}.json" if group else f"{kind.lower()}-{version}.json"
    path = _SCHEMAS / name
    if not path.exists():
        return None
    schema = json.loads(path.read_text())
    return jsonschema.Draft202012Validator(schema, registry=_registry())


# -- minimal structural schemas of the custom resources deckhand writes ----------------------------
def _obj(properties: dict | None = None, items: dict | None = None, **extra: Any) -> dict:
    out: dict = {"type": "object"}
    if properties:
        out["properties"] = properties
    if items:
        out["additionalProperties"] = items
    out.update(extra)
    return out


def _arr(items: dict) -> dict:
    return {"type": "array", "items": items}


_STR, _INT, _BOOL = {"type": "string"}, {"type": "integer"}, {"type": "boolean"}
_DESTINATION = _obj({"host": _STR, "subset": _STR, "port": _obj({"number": _INT})}, required=["host"])
# From Istio's CRDs (networking.istio.io v1 and v1beta1 share the schema): route weights are int32.
_VIRTUAL_SERVICE = _obj({"spec": _obj({
    "hosts": _arr(_STR), "gateways": _arr(_STR),
    "http": _arr(_obj({"name": _STR, "route": _arr(_obj({"destination": _DESTINATION, "weight": _INT},
                                                          required=["destination"]))})),
})})
_DESTINATION_RULE = _obj({"spec": _obj({
    "host": _STR, "subsets": _arr(_obj({"name": _STR, "labels": _obj(items=_STR)}, required=["name"])),
})})
# From Argo Rollouts' CRD: spec.replicas int32, and the status fields deckhand patches.
_ROLLOUT = _obj({
    "spec": _obj({"replicas": _INT, "paused": _BOOL}),
    "status": _obj({"abort": _BOOL, "promoteFull": _BOOL, "currentStepIndex": _INT, "phase": _STR,
                    "message": _STR, "controllerPause": _BOOL,
                    "pauseConditions": _arr(_obj({"reason": _STR, "startTime": _STR}, required=["reason", "startTime"]))}),
})
CRD_SCHEMAS: dict[tuple[str, str], dict] = {
    ("networking.istio.io", "VirtualService"): _VIRTUAL_SERVICE,
    ("networking.istio.io", "DestinationRule"): _DESTINATION_RULE,
    ("argoproj.io", "Rollout"): _ROLLOUT,
}


@functools.lru_cache(maxsize=None)
def _crd_validator(group: str, kind: str) -> jsonschema.Validator | None:
    schema = CRD_SCHEMAS.get((group, kind))
    return jsonschema.Draft202012Validator(schema) if schema else None


# -- field paths as the API server writes them ------------------------------------------------------
def _field(path: Iterable[Any]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _value(value: Any) -> str:
    return json.dumps(value) if isinstance(value, str) else repr(value).replace("True", "true").replace("False", "false")


def _flatten(errors: Iterable[jsonschema.ValidationError]) -> list[jsonschema.ValidationError]:
    out = []
    for err in errors:
        if err.validator in ("oneOf", "anyOf") and err.instance is None:
            continue  # IntOrString's schema allows null twice over; the server accepts null
        out.append(err)
    return out


def _go_type(err: jsonschema.ValidationError) -> str:
    types = err.validator_value if isinstance(err.validator_value, list) else [err.validator_value]
    fmt = err.schema.get("format") if isinstance(err.schema, dict) else None
    wanted = next((t for t in types if t != "null"), "string")
    return {"int32": "int32", "int64": "int64"}.get(fmt or "", _GO_TYPES.get(wanted, wanted))


# -- the checks -------------------------------------------------------------------------------------
def check_write(rt: ResourceType, obj: dict, field_validation: str | None) -> tuple[dict, list[str]]:
    """Validate `obj` about to be stored as `rt`. Returns the object to store (unknown fields of built-in
    kinds pruned) and the `Warning` header values; raises ApiError like the API server."""
    name = (obj.get("metadata") or {}).get("name", "")
    mode = (field_validation or "Warn").strip()
    if mode not in ("Strict", "Warn", "Ignore"):
        raise ApiError(400, f'fieldValidation must be one of "Ignore", "Warn" or "Strict", got "{mode}"', "BadRequest")
    if rt.custom:
        validator = _crd_validator(rt.group, rt.kind)
        if validator is None:
            return obj, []
        causes = [{"reason": "FieldValueTypeInvalid" if e.validator == "type" else "FieldValueInvalid",
                   "field": _field(e.absolute_path),
                   "message": (f"Invalid value: \"{_JSON_TYPES.get(type(e.instance), 'string')}\": {_field(e.absolute_path)} "
                               f"in body must be of type {e.validator_value}: {_value(e.instance)}"
                               if e.validator == "type" else f"Required value: {e.message}")}
                  for e in _flatten(validator.iter_errors(obj))]
        if causes:
            raise _invalid(rt, name, causes)
        return obj, []
    validator = _builtin_validator(rt.kind, rt.group, rt.version)
    if validator is None:
        return obj, []
    errors = _flatten(validator.iter_errors(obj))
    type_errors = [e for e in errors if e.validator in ("type", "oneOf", "anyOf")]
    if type_errors:
        e = type_errors[0]
        kind_of = _JSON_TYPES.get(type(e.instance), "value")
        raise ApiError(400, f'{rt.kind} in version "{rt.version}" cannot be handled as a {rt.kind}: json: cannot '
                            f"unmarshal {kind_of} into Go struct field {rt.kind}.{_field(e.absolute_path)} of type "
                            f"{_go_type(e)}", "BadRequest")
    unknown = []
    for e in errors:
        if e.validator == "additionalProperties" and isinstance(e.instance, dict):
            allowed = set((e.schema.get("properties") or {}))
            unknown += [(list(e.absolute_path), key) for key in e.instance if key not in allowed]
    warnings = []
    if unknown:
        fields = [_field([*path, key]) for path, key in unknown]
        if mode == "Strict":
            detail = ", ".join(f'unknown field "{f}"' for f in fields)
            raise ApiError(400, f"strict decoding error: {detail}", "BadRequest")
        obj = _prune(obj, unknown)
        if mode == "Warn":
            warnings = [f'unknown field "{f}"' for f in fields]
    # OpenAPI marks every Go field without `omitempty` as required, but the decoder fills missing fields with
    # zero values and only the Go validation refuses, for spec fields (a selector, a container's name...). A
    # controller-written status (a Node's nodeInfo, condition times) is not held to it.
    causes = [{"reason": "FieldValueRequired", "message": "Required value",
               "field": _field([*e.absolute_path, _missing(e)])}
              for e in errors if e.validator == "required" and list(e.absolute_path)[:1] != ["status"]]
    causes += _semantic(rt, obj)
    if causes:
        raise _invalid(rt, name, causes)
    return obj, warnings


def _missing(err: jsonschema.ValidationError) -> str:
    # jsonschema words it "'selector' is a required property"
    return err.message.split("'")[1] if err.message.count("'") >= 2 else str(err.validator_value)


def _prune(obj: dict, unknown: list[tuple[list, str]]) -> dict:
    obj = copy.deepcopy(obj)
    for path, key in unknown:
        cur: Any = obj
        for part in path:
            cur = cur[part]
        cur.pop(key, None)
    return obj


_REPLICATED = {("apps", "Deployment"), ("apps", "StatefulSet"), ("apps", "ReplicaSet"), ("apps", "DaemonSet")}


def _semantic(rt: ResourceType, obj: dict) -> list[dict]:
    """The API server's Go validation rules deckhand's writes can meet (apps/v1 workloads)."""
    causes: list[dict] = []
    if (rt.group, rt.kind) not in _REPLICATED:
        return causes
    spec = obj.get("spec") or {}
    replicas = spec.get("replicas")
    if isinstance(replicas, int) and replicas < 0:
        causes.append({"reason": "FieldValueInvalid", "field": "spec.replicas",
                       "message": f"Invalid value: {replicas}: must be greater than or equal to 0"})
    selector = spec.get("selector")
    labels = ((spec.get("template") or {}).get("metadata") or {}).get("labels") or {}
    match = (selector or {}).get("matchLabels") or {} if isinstance(selector, dict) else {}
    if isinstance(selector, dict) and not match and not selector.get("matchExpressions"):
        causes.append({"reason": "FieldValueInvalid", "field": "spec.selector",
                       "message": "Invalid value: v1.LabelSelector{}: empty selector is invalid for deployment"})
    elif match and any(labels.get(k) != v for k, v in match.items()):
        shown = "map[string]string{" + ", ".join(f'"{k}":"{v}"' for k, v in sorted(labels.items())) + "}"
        causes.append({"reason": "FieldValueInvalid", "field": "spec.template.metadata.labels",
                       "message": f"Invalid value: {shown}: `selector` does not match template `labels`"})
    for i, container in enumerate(((spec.get("template") or {}).get("spec") or {}).get("containers") or []):
        if isinstance(container, dict) and not container.get("image"):
            causes.append({"reason": "FieldValueRequired", "field": f"spec.template.spec.containers[{i}].image",
                           "message": "Required value"})
    return causes


def check_scale(rt: ResourceType, name: str, replicas: Any) -> None:
    """A Scale write: `spec.replicas` must be a non-negative int32 (autoscaling/v1 Scale validation)."""
    if not isinstance(replicas, int) or isinstance(replicas, bool):
        raise ApiError(400, 'Scale in version "v1" cannot be handled as a Scale: json: cannot unmarshal '
                            f"{_JSON_TYPES.get(type(replicas), 'value')} into Go struct field ScaleSpec.spec.replicas "
                            "of type int32", "BadRequest")
    if replicas < 0:
        raise ApiError(422, f'Scale.autoscaling "{name}" is invalid: spec.replicas: Invalid value: {replicas}: must be '
                            "greater than or equal to 0", "Invalid",
                       {"name": name, "group": "autoscaling", "kind": "Scale",
                        "causes": [{"reason": "FieldValueInvalid", "field": "spec.replicas",
                                    "message": f"Invalid value: {replicas}: must be greater than or equal to 0"}]})


def _invalid(rt: ResourceType, name: str, causes: list[dict]) -> ApiError:
    parts = [f"{c['field']}: {c['message']}" for c in causes]
    listed = parts[0] if len(parts) == 1 else "[" + ", ".join(parts) + "]"
    qualified = f"{rt.kind}.{rt.group}" if rt.group else rt.kind  # `Deployment.apps "web"`, `Service "web"`
    return ApiError(422, f'{qualified} "{name}" is invalid: {listed}',
                    "Invalid", {"name": name, "group": rt.group, "kind": rt.kind, "causes": causes})
