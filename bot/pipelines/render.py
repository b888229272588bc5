"""Rendering a pipeline spec into the files that land in the GitOps repo.

Templates are Jinja2 files (defaults in bot/pipelines/templates/; `pipelines.templates` may point at a
team's own directory, searched first, so a team can override one file and keep the rest):

    pipeline.yaml.j2                 -> <dir>/pipeline.yaml   (the CI/CD pipeline definition)
    manifests/<set>/<name>.yaml.j2   -> <dir>/k8s/<name>.yaml (<set>: canary, blue-green or batch)

A template that renders to nothing (e.g. the Service of a worker) produces no file. `deckhand.yaml`
is not templated: it is data, dumped by bot.pipeline_spec. Output is deterministic — the same spec
gives the same bytes — so re-rendering an unchanged spec changes nothing in Git.

Every value reaches a template typed or quoted: strings through `|q` (a JSON string, which YAML
reads as one scalar whatever it holds), numbers through `|integer` (refuses anything but a whole
number). Then every render is checked (bot/pipelines/checks.py) before anything is proposed.
"""
from __future__ import annotations

import hashlib
import json
import re
from dataclasses import replace
from functools import lru_cache
from pathlib import Path
from typing import Any

import jinja2
import yaml

from bot.foundation.config import Settings
from bot.pipelines.checks import ManifestRejected, check_rendered  # noqa: F401 - re-exported
from bot.pipelines.spec import PipelineSpec, dump_spec

DEFAULT_TEMPLATES = Path(__file__).parent / "templates"
GENERATED_DIR = "k8s"  # everything below it is rendered; files the new render lacks are removed


class RenderError(Exception):
    """A template failed or produced something that is not a Kubernetes object; str() names the template."""


def service_dir(settings: Settings, team: str, service: str) -> str:
    return settings.pipelines.path.format(team=team, service=service).strip("/")


def spec_path_pattern(settings: Settings) -> tuple[str, re.Pattern]:
    """(prefix to list, regex matching `<dir>/deckhand.yaml` with named groups team and service)."""
    template = settings.pipelines.path.strip("/")
    prefix = template.split("{", 1)[0]
    pattern = re.escape(template).replace(r"\{team\}", r"(?P<team>[^/]+)")
    pattern = pattern.replace(r"\{service\}", r"(?P<service>[^/]+)")
    return prefix, re.compile(f"^{pattern}/deckhand\\.yaml$")


def namespace_of(settings: Settings, spec: PipelineSpec) -> str:
    return settings.pipelines.namespace.format(team=spec.team, service=spec.service)


def blob_sha(text: str) -> str:
    """Git's blob id for `text`: lets us compare a rendered file with the repo's tree without reading it."""
    data = text.encode("utf-8")
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def _quote(value: Any) -> str:
    # JSON strings are valid YAML scalars: quoting every user value means no input can change the
    # document's structure (a `: ` or `#` in an env value, a "yes" that YAML 1.1 reads as true).
    return json.dumps("" if value is None else str(value), ensure_ascii=False)


def _integer(value: Any) -> int:
    # YAML reads a bare `8080` as a number; anything else printed raw could be more than a number.
    if isinstance(value, bool) or not isinstance(value, int):
        raise jinja2.TemplateRuntimeError(f"{value!r} is not a whole number")
    return value


@lru_cache(maxsize=8)
def _environment(custom: str | None) -> jinja2.Environment:
    paths = ([custom] if custom else []) + [str(DEFAULT_TEMPLATES)]
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(paths), undefined=jinja2.StrictUndefined, autoescape=False,
        keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True,
    )
    env.filters["q"] = _quote
    env.filters["integer"] = _integer
    return env


def _template_names(settings: Settings, folder: str) -> list[str]:
    names: set[str] = set()
    for root in ([settings.pipelines.templates] if settings.pipelines.templates else []) + [str(DEFAULT_TEMPLATES)]:
        directory = Path(root) / folder
        if directory.is_dir():
            names.update(p.name for p in directory.glob("*.j2") if not p.name.startswith("_"))
    return sorted(names)


def template_set(spec: PipelineSpec) -> str:
    return "batch" if spec.kind == "batch" else spec.strategy or "canary"


def render(spec: PipelineSpec, settings: Settings, pointer: dict[str, str] | None = None) -> dict[str, str]:
    """path -> text for every file of the service, checked (valid Kubernetes for the configured
    version, in the templates' shape). Raises RenderError, ManifestRejected, or KeyError for an
    unknown base image."""
    files = _render(spec, settings, pointer)
    reference = _render(reference_spec(spec), settings, pointer)
    directory = service_dir(settings, spec.team, spec.service)
    check_rendered(files, reference, directory, directory, settings.pipelines.kubernetes_version, GENERATED_DIR)
    return files


def reference_spec(spec: PipelineSpec) -> PipelineSpec:
    """The same pipeline with deckhand's own benign values in every free field. Names that are
    validated identifiers (service, team, clusters, env names) stay, so templates that use them as
    keys or file names give the same shape; the kind, strategy and tag policy choose the same
    templates and branches."""
    return replace(
        spec, repo="org/reference", image="registry.example.com/reference/app",
        port=None if spec.port is None else 8080, health_path=None if spec.health_path is None else "/healthz",
        schedule=None if spec.schedule is None else "0 3 * * *", tag=None if spec.tag is None else "1.0.0",
        replicas=None if spec.replicas is None else 1, cpu_request="100m", cpu_limit="100m",
        memory_request="128Mi", memory_limit="128Mi", env=tuple((name, "value") for name, _ in spec.env))


def _render(spec: PipelineSpec, settings: Settings, pointer: dict[str, str] | None) -> dict[str, str]:
    directory = service_dir(settings, spec.team, spec.service)
    env = _environment(settings.pipelines.templates)
    context = {
        "spec": spec, "svc": spec.service, "team": spec.team, "kind": spec.kind,
        "namespace": namespace_of(settings, spec), "image": spec.image_ref(pointer),
        "labels": settings.labels, "canary_steps": list(settings.canary.steps),
        "env": list(spec.env), "dir": directory, "k8s_dir": f"{directory}/{GENERATED_DIR}",
    }
    files = {f"{directory}/deckhand.yaml": dump_spec(spec)}
    folder = f"manifests/{template_set(spec)}"
    names = _template_names(settings, folder)
    if not names:
        where = settings.pipelines.templates or "the default templates"
        raise RenderError(f"no templates in {folder}/ ({where})")
    for name in ["pipeline.yaml.j2"] + [f"{folder}/{n}" for n in names]:
        try:
            text = env.get_template(name).render(**context)
        except jinja2.TemplateError as exc:
            raise RenderError(f"template {name} failed: {exc}") from None
        text = _tidy(text)
        if not text:
            continue
        if name.startswith("manifests/"):
            _check_manifest(name, text)
            files[f"{directory}/{GENERATED_DIR}/{Path(name).name.removesuffix('.j2')}"] = text
        else:
            _check_yaml(name, text)
            files[f"{directory}/{name.removesuffix('.j2')}"] = text
    return files


def _tidy(text: str) -> str:
    lines = [line.rstrip() for line in text.splitlines()]
    body = "\n".join(lines).strip("\n")
    return body + "\n" if body.strip() else ""


def _check_yaml(name: str, text: str) -> list[Any]:
    try:
        return [doc for doc in yaml.safe_load_all(text) if doc is not None]
    except yaml.YAMLError as exc:
        raise RenderError(f"template {name} produced invalid YAML: {str(exc).splitlines()[0]}") from None


def _check_manifest(name: str, text: str) -> None:
    for doc in _check_yaml(name, text):
        if not isinstance(doc, dict) or not doc.get("apiVersion") or not doc.get("kind") or \
                not (doc.get("metadata") or {}).get("name"):
            raise RenderError(f"template {name} produced something that is not a Kubernetes object "
                              "(apiVersion, kind and metadata.name are required)")


# -- the batch image pointer -------------------------------------------------------------------------

POINTER_HEADER = ("# Batch base images -> current version. Batch pipelines whose tag policy is\n"
                  "# `track latest of <image>` run their image at this version.\n"
                  "# Bump with `/pipeline batch-image bump <image> <version>` in Slack.\n")


def parse_pointer(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    data = yaml.safe_load(text)
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ValueError("the pointer file must map base images to versions")
    return {str(k): str(v) for k, v in data.items()}


def bump_pointer(text: str | None, image: str, version: str) -> str:
    """Change one image's version, keeping comments and order so the PR diff is one line."""
    if text:
        line = re.compile(rf"^(\s*[\"']?{re.escape(image)}[\"']?\s*:\s*)(\S.*?)(\s+#.*)?$", re.MULTILINE)
        changed, count = line.subn(lambda m: f"{m.group(1)}{_quote(version)}{m.group(3) or ''}", text, count=1)
        if count and parse_pointer(changed).get(image) == version:
            return changed
    data = parse_pointer(text)
    data[image] = version
    body = "".join(f"{_quote(k)}: {_quote(v)}\n" for k, v in data.items())
    return POINTER_HEADER + body
