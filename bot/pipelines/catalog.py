"""What the GitOps repo and the clusters hold: pipelines, service names, batch base images.

The view_submission ack must answer within 3 s without network, so "does this service already
exist?" is answered from a cache of names that is refreshed in the background whenever the
create modal opens; the request is checked again for real after the ack, before any PR.
Specs are cached by their Git blob id, which is content-addressed: a cached spec can never be
stale, and listing the repo costs one tree call plus reads of the files that changed.
"""
from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from datetime import datetime

from bot.foundation.context import Context
from bot.foundation.gitops import GitOpsError
from bot.foundation.kube import SERVICES, KubeError
from bot.pipelines.render import parse_pointer, service_dir, spec_path_pattern
from bot.pipelines.form import validate_spec
from bot.pipelines.spec import PipelineSpec, SpecError, load_spec
from bot.foundation.services import find_service

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RepoPipeline:
    path: str            # .../deckhand.yaml
    spec: PipelineSpec | None   # only a spec that passes the modal's rules; None otherwise
    problem: str | None = None  # deckhand.yaml that could not be read back, or breaks the modal's rules
    loaded: PipelineSpec | None = None  # as read, even when invalid (to tell whom a problem concerns)


class Catalog:
    """Per-process cache; one per Context (ctx.extras["pipeline_catalog"])."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()
        self.repo_services: dict[str, str] = {}     # service -> its directory in the repo
        self.cluster_services: dict[str, str] = {}  # service -> "cluster/namespace" (first seen)
        self.base_images: frozenset[str] | None = None
        self.refreshed_at: datetime | None = None
        self.refreshes = 0
        # blob sha -> (spec as read or None, problem or None)
        self._specs: dict[str, tuple[PipelineSpec | None, str | None]] = {}

    # -- the ack's view (no network) ----------------------------------------------------------------
    def existing(self, name: str) -> str | None:
        with self._lock:
            if name in self.repo_services:
                return f"in the GitOps repo (`{self.repo_services[name]}`)"
            if name in self.cluster_services:
                return f"as a Service in `{self.cluster_services[name]}`"
        return None

    @property
    def ready(self) -> bool:
        return self.refreshed_at is not None

    # -- refresh (network; runs after the modal opened) -----------------------------------------
    def refresh(self, ctx: Context) -> bool:
        """Reload names from the repo and every cluster. A source that fails keeps its last names."""
        if not self._refreshing.acquire(blocking=False):
            return False  # one refresh at a time is plenty
        try:
            try:
                pipelines = scan(ctx, self)
                repo = {p.spec.service if p.spec else _service_of(ctx, p.path): p.path.rsplit("/", 1)[0]
                        for p in pipelines}
                with self._lock:
                    self.repo_services = repo
            except GitOpsError as exc:
                log.warning("pipeline catalog: repo scan failed: %s", exc)
            try:
                images = frozenset(read_pointer(ctx))
                with self._lock:
                    self.base_images = images
            except (GitOpsError, ValueError) as exc:
                log.warning("pipeline catalog: pointer file unreadable: %s", exc)
            found: dict[str, str] = {}
            for cluster in ctx.settings.clusters:
                try:
                    for item in ctx.kube.list(cluster.name, SERVICES):
                        meta = item.get("metadata") or {}
                        found.setdefault(meta.get("name", ""), f"{cluster.name}/{meta.get('namespace', 'default')}")
                except KubeError as exc:
                    log.warning("pipeline catalog: %s", exc)
                    with self._lock:  # keep what we knew about the cluster that did not answer
                        for name, where in self.cluster_services.items():
                            if where.startswith(cluster.name + "/"):
                                found.setdefault(name, where)
            with self._lock:
                self.cluster_services = found
                self.refreshed_at = ctx.now()
                self.refreshes += 1
            return True
        finally:
            self._refreshing.release()

    def cached_spec(self, sha: str) -> tuple[PipelineSpec | None, str | None] | None:
        with self._lock:
            return self._specs.get(sha)

    def remember_spec(self, sha: str, spec: tuple[PipelineSpec | None, str | None]) -> None:
        with self._lock:
            if len(self._specs) > 5000:  # bounded: a repo with more pipelines just re-reads some
                self._specs.clear()
            self._specs[sha] = spec


_catalog_lock = threading.Lock()


def catalog(ctx: Context) -> Catalog:
    with _catalog_lock:
        found = ctx.extras.get("pipeline_catalog")
        if found is None:
            found = ctx.extras["pipeline_catalog"] = Catalog()
        return found


def _service_of(ctx: Context, path: str) -> str:
    match = spec_path_pattern(ctx.settings)[1].match(path)
    return match.group("service") if match and "service" in match.groupdict() else path.rsplit("/", 2)[-2]


def read_back(ctx: Context, text: str | None, path: str) -> tuple[PipelineSpec | None, str | None]:
    """deckhand.yaml from Git -> (spec as read, problem). A spec is only usable (problem None) when it
    passes exactly the modal's rules (validate_spec); the problem names the file and the fields."""
    try:
        spec = load_spec(text or "", path)
    except SpecError as exc:
        return None, str(exc)
    problems = validate_spec(spec, ctx.settings)
    if problems:
        return spec, f"{path} breaks the form's rules, so nothing is rendered from it: " + "; ".join(problems[:3]) + (
            f"; and {len(problems) - 3} more" if len(problems) > 3 else "")
    return spec, None


def scan(ctx: Context, cache: Catalog | None = None, ref: str | None = None) -> list[RepoPipeline]:
    """Every pipeline in the repo (base branch unless `ref`), sorted by path. Raises GitOpsError.
    Specs that are unreadable or break the modal's rules come back with `spec` None and a `problem`."""
    if ctx.gitops is None:
        raise GitOpsError("list pipelines", 0, "GitHub is not configured (github: in the config)")
    cache = cache or catalog(ctx)
    prefix, pattern = spec_path_pattern(ctx.settings)
    out = []
    for path, sha in sorted(ctx.gitops.files_under(prefix, ref=ref).items()):
        if not pattern.match(path):
            continue
        found = cache.cached_spec(sha)
        if found is None:
            found = read_back(ctx, ctx.gitops.read_blob(sha), path)
            cache.remember_spec(sha, found)
        loaded, problem = found
        out.append(RepoPipeline(path, None if problem else loaded, problem, loaded))
    return out


def find_pipeline(ctx: Context, service: str, ref: str | None = None) -> RepoPipeline | None:
    for pipeline in scan(ctx, ref=ref):
        if (pipeline.spec and pipeline.spec.service == service) or (
                pipeline.spec is None and _service_of(ctx, pipeline.path) == service):
            return pipeline
    return None


def read_spec_at(ctx: Context, spec: PipelineSpec, ref: str) -> PipelineSpec | None:
    """The spec as a branch holds it (an open PR's version), or None. SpecError when it is there but
    unreadable or breaks the modal's rules."""
    path = f"{service_dir(ctx.settings, spec.team, spec.service)}/deckhand.yaml"
    text = ctx.gitops.read_file(path, ref=ref)
    if not text:
        return None
    loaded, problem = read_back(ctx, text, path)
    if problem:
        raise SpecError(problem)
    return loaded


def read_pointer(ctx: Context, ref: str | None = None) -> dict[str, str]:
    """Base image -> version from the pointer file ({} if it does not exist yet). ValueError if malformed."""
    text = ctx.gitops.read_file(ctx.settings.pipelines.pointer_file, ref=ref)
    try:
        return parse_pointer(text)
    except Exception as exc:
        raise ValueError(f"{ctx.settings.pipelines.pointer_file} is not a mapping of image: version ({exc})") from None


def existing_service(ctx: Context, name: str) -> tuple[str | None, list[str]]:
    """The real check after the ack: (where `name` exists, clusters that did not answer)."""
    pipeline = find_pipeline(ctx, name)
    if pipeline is not None:
        return f"in the GitOps repo (`{pipeline.path.rsplit('/', 1)[0]}`)", []
    found, errors = find_service(ctx, name)
    if found:
        return f"as a Service in `{found[0].cluster}/{found[0].namespace}`", []
    return None, [e.cluster for e in errors]
