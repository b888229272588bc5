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

from typing import Any, Iterator

import kubernetes_validate
import yaml

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


def _validate(path: str, doc: Any, version: str) -> None:
    if not isinstance(doc, dict):
        raise ManifestRejected(f"{path}: not a Kubernetes object")
    try:
        kubernetes_validate.validate(doc, f"{version}.0", strict=True)
    except kubernetes_validate.SchemaNotFoundError:
        group = str(doc.get("apiVersion") or "").rpartition("/")[0]
        if "." in group and not group.endswith(".k8s.io"):
            return  # a CRD (Istio): Kubernetes ships no schema; the shape check above holds it to the templates
        raise ManifestRejected(f"{path}: {_name(doc)}: `apiVersion` {doc.get('apiVersion')} {doc.get('kind')} does "
                               f"not exist in Kubernetes {version}") from None
    except kubernetes_validate.ValidationError as exc:
        field = ".".join(str(p) if not isinstance(p, int) else f"[{p}]" for p in exc.absolute_path).replace(".[", "[")
        raise ManifestRejected(f"{path}: {_name(doc)}: `{field or '(the object)'}` is invalid for Kubernetes "
                               f"{version}: {exc.message}") from None
