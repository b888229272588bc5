"""What rendered files must be before any pull request: valid Kubernetes, in the templates' shape.

Two checks run on every render (create, edit, batch image bump), after the spec itself passed the
modal's rules (bot/pipelines/form.py `validate_spec`):

- every Kubernetes object validates against the real schemas of the clusters' minor version
  (`pipelines.kubernetes_version`), strictly: an unknown field is an error. Kinds Kubernetes
  has no schema for (Istio's CRDs) are left to the shape check;
- the shape check: the same templates rendered from a reference spec made only of deckhand's own
  benign values (same kind, strategy, tag policy, clusters and number of env entries) give the
  shape the templates produce. Each rendered file must have exactly the reference's documents,
  kinds and field paths, and may not set `privileged`, `hostPath`, `hostNetwork`, `hostPID`,
  `hostIPC` or a capability `add` that the reference does not set. So a value can never add a field,
  while an operator's own template that puts one there (in both renders) still may.

A failure is a ManifestRejected naming the file, the object and the field; no pull request is opened.
"""
from __future__ import annotations

import re
from functools import lru_cache
from typing import Any, Iterator

import jsonschema
import kubernetes_validate
import kubernetes_validate.utils
import yaml
from referencing import Registry, Resource

# Fields that give a pod the node: a rendered object may only carry them where the templates put them.
DANGEROUS = {"privileged", "hostPath", "hostNetwork", "hostPID", "hostIPC"}


class ManifestRejected(Exception):
    """A rendered file failed a check; str() names the file, the object and the field."""


def _documents(text: str) -> list[Any]:
    return [doc for doc in yaml.safe_load_all(text) if doc is not None]


def _name(doc: Any) -> str:
    if isinstance(doc, dict):
        return f"{doc.get('kind', '?')} {(doc.get('metadata') or {}).get('name', '?')}"
    return "a document"


def _walk(node: Any, path: str = "") -> Iterator[tuple[str, Any]]:
    """(path, value) for every field; list items are `[i]`."""
    if isinstance(node, dict):
        for key, value in node.items():
            child = f"{path}.{key}" if path else str(key)
            yield child, value
            yield from _walk(value, child)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            child = f"{path}[{i}]"
            yield child, value
            yield from _walk(value, child)


def _shape(doc: Any) -> set[str]:
    return {path for path, _ in _walk(doc)}


def _dangerous(doc: Any) -> set[str]:
    found = set()
    for path, value in _walk(doc):
        key = path.rsplit(".", 1)[-1]
        if key in DANGEROUS and value not in (False, None):
            found.add(path)
        elif key == "capabilities" and isinstance(value, dict) and value.get("add"):
            found.add(f"{path}.add")
    return found


def check_rendered(files: dict[str, str], reference: dict[str, str], directory: str, reference_dir: str,
                   kubernetes_version: str, generated: str) -> None:
    """Raise ManifestRejected unless every file of `files` is valid and shaped like `reference`
    (the same files rendered from the reference spec, which lives under `reference_dir`)."""
    mine = {path.removeprefix(directory + "/"): text for path, text in files.items()}
    theirs = {path.removeprefix(reference_dir + "/"): text for path, text in reference.items()}
    if set(mine) != set(theirs):
        extra = sorted(set(mine) ^ set(theirs))
        raise ManifestRejected(f"{directory}/{extra[0]}: the templates render other files for this spec than for "
                               "a plain one; a value must have changed which files exist")
    for relative, text in sorted(mine.items()):
        if relative == "deckhand.yaml":
            continue  # data, dumped by deckhand itself (bot/pipelines/spec.py), not a template's output
        path = f"{directory}/{relative}"
        docs, expected = _documents(text), _documents(theirs[relative])
        if len(docs) != len(expected):
            raise ManifestRejected(f"{path}: {len(docs)} documents where the templates produce {len(expected)}")
        for doc, plain in zip(docs, expected):
            what = _name(doc)
            if isinstance(doc, dict) != isinstance(plain, dict) or (
                    isinstance(doc, dict) and doc.get("kind") != plain.get("kind")):
                raise ManifestRejected(f"{path}: {what} where the templates produce {_name(plain)}")
            added = sorted(_shape(doc) - _shape(plain))
            if added:
                raise ManifestRejected(f"{path}: {what}: field `{added[0]}` is not in the shape the pipeline "
                                       "templates produce (a value must have changed the document's structure)")
            gained = sorted(_dangerous(doc) - _dangerous(plain))
            if gained:
                raise ManifestRejected(f"{path}: {what}: `{gained[0]}` is set, but the pipeline templates never set "
                                       "it; deckhand does not propose privileged or host access")
            if relative.startswith(generated + "/"):
                _validate(path, doc, kubernetes_version)


@lru_cache(maxsize=16)
def _definitions(folder: str, version: str) -> Resource:
    return Resource.from_contents(kubernetes_validate.utils.schema_contents(f"{folder}/_definitions.json", version))


@lru_cache(maxsize=256)
def _validator(version: str, kind: str, api_version: str) -> jsonschema.protocols.Validator:
    """What `kubernetes_validate.validate(doc, version, strict=True)` checks a document against, built once
    per (version, kind, apiVersion). The library reads and parses its 1.3 MB definitions file and builds
    a validator on every call: 10–30 ms each, most of it in json.load holding the GIL, several times per
    pipeline render. Same files, same path rules (kubernetes_validate/utils.py `validate`)."""
    utils = kubernetes_validate.utils
    if utils.major_minor(version) > utils.latest_version():
        raise utils.VersionNotSupportedError(version=utils.major_minor(version))
    schemas = [v for v in utils.all_versions() if utils.major_minor(v) <= utils.major_minor(version)][-1]
    folder = f"kubernetes-json-schema/v{schemas}-local-strict"
    group_version = re.sub(r"^([^./]*)(?:\.[^/]*)?/", r"\1-", api_version)  # rbac.authorization.k8s.io/v1 -> rbac-v1
    try:
        schema = utils.schema_contents(f"{folder}/{kind.lower()}-{group_version}.json", version)
    except FileNotFoundError:
        raise kubernetes_validate.SchemaNotFoundError(version=utils.major_minor(version), kind=kind,
                                                      api_version=api_version) from None
    registry = _definitions(folder, version) @ (Resource.from_contents(schema) @ Registry())
    return jsonschema.validators.Draft202012Validator(schema, registry=registry)


def _validate(path: str, doc: Any, version: str) -> None:
    if not isinstance(doc, dict):
        raise ManifestRejected(f"{path}: not a Kubernetes object")
    kind, api_version = doc.get("kind"), doc.get("apiVersion")
    if not isinstance(kind, str) or not isinstance(api_version, str):
        raise ManifestRejected(f"{path}: {_name(doc)}: a Kubernetes object needs a `kind` and an `apiVersion`")
    try:
        _validator(f"{version}.0", kind, api_version).validate(doc)
    except kubernetes_validate.SchemaNotFoundError:
        group = str(doc.get("apiVersion") or "").rpartition("/")[0]
        if "." in group and not group.endswith(".k8s.io"):
            return  # a CRD (Istio): Kubernetes ships no schema; the shape check above holds it to the templates
        raise ManifestRejected(f"{path}: {_name(doc)}: `apiVersion` {doc.get('apiVersion')} {doc.get('kind')} does "
                               f"not exist in Kubernetes {version}") from None
    except jsonschema.ValidationError as exc:
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in exc.absolute_path).replace(".[", "[")
        raise ManifestRejected(f"{path}: {_name(doc)}: `{field or '(the object)'}` is invalid for Kubernetes "
                               f"{version}: {exc.message}") from None
