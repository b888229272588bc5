"""Routes of the GitHub fake for branches, refs, the Git Data API (blobs, trees, commits) and contents."""
from __future__ import annotations

import base64
import heapq
import itertools
from urllib.parse import quote

from tests.fakes.github.common import (
    ApiError, FILE_MODES, TREE_MODE, _b64_lines, _bytes, _Call, _node_id, _not_found, _parse_iso, _Repo,
    _validation_failed,
)


class GitDataRoutesMixin:
    """Branch, ref, blob, tree, commit and contents endpoints of GitHubFake (mixed into it)."""

    # -- branches and refs

    def _branch_json(self, r: _Repo, name: str) -> dict:
        url = self._repo_url(r)
        return {"name": name, "commit": self._commit_json(r, r.refs[f"refs/heads/{name}"], with_files=False),
                "_links": {"self": f"{url}/branches/{quote(name)}",
                           "html": f"{self.web_url}/{r.full_name}/tree/{name}"},
                "protected": False,
                "protection": {"enabled": False,
                               "required_status_checks": {"enforcement_level": "off", "contexts": [], "checks": []}},
                "protection_url": f"{url}/branches/{quote(name)}/protection"}

    def _list_branches(self, c: "_Call") -> tuple:
        names = sorted(self.branches(c.repo.full_name))
        return self._paginate(c, [{"name": n, "commit": {"sha": c.repo.refs[f"refs/heads/{n}"],
                                                          "url": f"{self._repo_url(c.repo)}/commits/"
                                                                 f"{c.repo.refs[f'refs/heads/{n}']}"},
                                   "protected": False} for n in names])

    def _get_branch(self, c: "_Call") -> tuple:
        name = c.args["branch"]
        if f"refs/heads/{name}" not in c.repo.refs:
            raise ApiError(404, "Branch not found")
        return 200, self._branch_json(c.repo, name)

    def _get_ref(self, c: "_Call") -> tuple:
        ref = "refs/" + c.args["ref"]
        if ref not in c.repo.refs:
            raise _not_found()
        return 200, self._ref_json(c.repo, ref)

    def _list_refs(self, c: "_Call") -> tuple:
        return self._paginate(c, [self._ref_json(c.repo, ref) for ref in sorted(c.repo.refs)])

    def _get_refs_legacy(self, c: "_Call") -> tuple:
        # GET /git/refs/<ref>: the object for an exact match, else a list of prefix matches
        ref = "refs/" + c.args["ref"]
        if ref in c.repo.refs:
            return 200, self._ref_json(c.repo, ref)
        found = [self._ref_json(c.repo, x) for x in sorted(c.repo.refs) if x.startswith(ref)]
        if not found:
            raise _not_found()
        return 200, found

    def _matching_refs(self, c: "_Call") -> tuple:
        prefix = "refs/" + (c.args["ref"] or "")
        return 200, [self._ref_json(c.repo, x) for x in sorted(c.repo.refs) if x.startswith(prefix)]

    def _create_ref(self, c: "_Call") -> tuple:
        ref, sha = c.body.get("ref"), c.body.get("sha")
        if not isinstance(ref, str) or not ref.startswith("refs/") or ref.count("/") < 2:
            raise ApiError(422, "Reference name must start with 'refs/' and have at least two slashes.")
        if not isinstance(sha, str):
            raise _validation_failed({"resource": "Reference", "field": "sha", "code": "missing_field"})
        if ref in c.repo.refs:
            raise ApiError(422, "Reference already exists")
        if self._kind(c.repo, sha) != "commit":
            raise ApiError(422, "Object does not exist")
        self._move_ref(c.repo, ref, sha)
        return 201, self._ref_json(c.repo, ref)

    def _update_ref(self, c: "_Call") -> tuple:
        ref, sha = "refs/" + c.args["ref"], c.body.get("sha")
        if ref not in c.repo.refs:
            raise ApiError(422, "Reference does not exist")
        if not isinstance(sha, str) or self._kind(c.repo, sha) != "commit":
            raise ApiError(422, "Object does not exist")
        if not c.body.get("force") and c.repo.refs[ref] not in self._ancestors(c.repo, sha):
            raise ApiError(422, "Update is not a fast forward")
        self._move_ref(c.repo, ref, sha)
        return 200, self._ref_json(c.repo, ref)

    def _delete_ref(self, c: "_Call") -> tuple:
        ref = "refs/" + c.args["ref"]
        if ref not in c.repo.refs:
            raise ApiError(422, "Reference does not exist")
        self._move_ref(c.repo, ref, None)
        return 204, None

    # -- blobs, trees, commits

    def _create_blob(self, c: "_Call") -> tuple:
        content, encoding = c.body.get("content"), c.body.get("encoding", "utf-8")
        if not isinstance(content, str):
            raise _validation_failed({"resource": "Blob", "field": "content", "code": "missing_field"})
        if encoding == "base64":
            data = base64.b64decode(content)
        elif encoding in ("utf-8", "utf8"):
            data = content.encode()
        else:
            raise _validation_failed({"resource": "Blob", "field": "encoding", "code": "invalid"})
        sha = self._blob(c.repo, data)
        return 201, {"url": f"{self._repo_url(c.repo)}/git/blobs/{sha}", "sha": sha}

    def _get_blob(self, c: "_Call") -> tuple:
        sha = c.args["sha"]
        if self._kind(c.repo, sha) != "blob":
            raise _not_found()
        data = c.repo.objects[sha][1]
        return 200, {"sha": sha, "node_id": _node_id("B", sha), "size": len(data),
                     "url": f"{self._repo_url(c.repo)}/git/blobs/{sha}", "content": _b64_lines(data),
                     "encoding": "base64"}

    def _create_tree(self, c: "_Call") -> tuple:
        r, elements, base = c.repo, c.body.get("tree"), c.body.get("base_tree")
        if not isinstance(elements, list):
            raise _validation_failed({"resource": "Tree", "field": "tree", "code": "missing_field"})
        flat: dict[str, tuple[str, str]] = {}
        if base is not None:
            if self._kind(r, base) != "tree":
                raise ApiError(422, "base_tree is not a valid tree oid")
            flat = self._flatten(r, base)
        for el in elements:
            path, mode, kind = el.get("path"), str(el.get("mode", "")), el.get("type")
            if not isinstance(path, str) or not path or any(not part for part in path.split("/")):
                raise ApiError(422, "tree.path contains a malformed path component")
            if kind not in ("blob", "tree", "commit") or mode not in FILE_MODES | {"040000", "160000"}:
                raise ApiError(422, f"Invalid tree info: mode {mode!r} type {kind!r}")
            has_sha, has_content = "sha" in el, "content" in el
            if has_sha == has_content:
                raise ApiError(422, "Must supply either tree.sha or tree.content. "
                                    "Request will be rejected if both are present.")
            under = path + "/"
            if has_content:
                sha, kind, mode = self._blob(r, _bytes(el["content"])), "blob", mode
            else:
                sha = el["sha"]
            if sha is None:  # delete: only a path that exists, and only a blob (GitHub: GitRPC::BadObjectState)
                if path not in flat:
                    raise ApiError(422, "GitRPC::BadObjectState")
                del flat[path]
                continue
            if self._kind(r, sha) != kind and not (kind == "commit" and mode == "160000"):
                raise ApiError(422, f"tree.sha {sha} is not a valid {kind}")
            for existing in [p for p in flat if p.startswith(under)]:
                del flat[existing]
            parts = path.split("/")
            for i in range(1, len(parts)):  # a file in the way of a new directory is replaced
                flat.pop("/".join(parts[:i]), None)
            if kind == "tree":
                flat.update(self._flatten(r, sha, under))
            else:
                flat[path] = (mode, sha)
        tree = self._build_tree(r, flat)
        return 201, self._tree_json(r, tree, recursive=False)

    def _get_tree(self, c: "_Call") -> tuple:
        r, key = c.repo, c.args["sha"]
        if self._kind(r, key) == "tree":
            tree = key
        else:
            commit = self._resolve(r, key)
            if commit is None:
                raise _not_found()
            tree = self._commit_value(r, commit)["tree"]
        recursive = c.query.get("recursive") not in (None, "", "0", "false")
        return 200, self._tree_json(r, tree, recursive)

    def _create_commit(self, c: "_Call") -> tuple:
        r, body = c.repo, c.body
        message, tree, parents = body.get("message"), body.get("tree"), body.get("parents", [])
        if not isinstance(message, str):
            raise _validation_failed({"resource": "Commit", "field": "message", "code": "missing_field"})
        if self._kind(r, tree) != "tree":
            raise ApiError(422, "Tree SHA does not exist")
        if not isinstance(parents, list) or any(self._kind(r, p) != "commit" for p in parents):
            raise ApiError(422, "Parent SHA does not exist or is not a commit object")
        sha = self._commit(r, tree, parents, message, c.login, body.get("author"), body.get("committer"))
        return 201, self._git_commit_json(r, sha)

    def _get_git_commit(self, c: "_Call") -> tuple:
        if self._kind(c.repo, c.args["sha"]) != "commit":
            raise _not_found()
        return 200, self._git_commit_json(c.repo, c.args["sha"])

    def _get_commit(self, c: "_Call") -> tuple:
        sha = self._resolve(c.repo, c.args["ref"])
        if sha is None:
            raise ApiError(422, f"No commit found for SHA: {c.args['ref']}")
        return 200, self._commit_json(c.repo, sha)

    def _list_commits(self, c: "_Call") -> tuple:
        r = c.repo
        start = self._resolve(r, c.query.get("sha") or r.default_branch)
        if start is None:
            raise _not_found()
        path = c.query.get("path")
        heap, seen, out = [(0, 0, start)], {start}, []
        order = itertools.count(1)
        while heap:  # newest first, like git log
            _, _, sha = heapq.heappop(heap)
            value = self._commit_value(r, sha)
            parents = value["parents"]
            if not path or any(p == path or p.startswith(path.rstrip("/") + "/")
                               for p in self._diff(r, parents[0] if parents else None, sha)):
                out.append(self._commit_json(r, sha, with_files=False))
            for p in parents:
                if p not in seen:
                    seen.add(p)
                    stamp = _parse_iso(self._commit_value(r, p)["committer"]["date"]).timestamp()
                    heapq.heappush(heap, (-stamp, next(order), p))
        return self._paginate(c, out)

    # -- contents

    def _get_contents(self, c: "_Call") -> tuple:
        r = c.repo
        ref = c.query.get("ref") or r.default_branch
        commit = self._resolve(r, ref)
        if commit is None:
            raise ApiError(404, f"No commit found for the ref {ref}")
        path = (c.args.get("path") or "").strip("/")
        tree = self._commit_value(r, commit)["tree"]
        if path:
            entry = {p: (mode, sha) for p, mode, sha in self._walk(r, tree)}.get(path)
            if entry is None:
                raise _not_found()
            mode, sha = entry
            if mode != TREE_MODE:
                return 200, self._content_json(r, path, mode, sha, ref, with_content=True)
            tree = sha
        prefix = path + "/" if path else ""
        return 200, [self._content_json(r, prefix + p, mode, sha, ref, with_content=False)
                     for p, mode, sha in self._walk(r, tree, recursive=False)]

    def _write_file(self, c: "_Call", content: bytes | None) -> tuple:
        r, body, path = c.repo, c.body, c.args["path"].strip("/")
        branch = body.get("branch") or r.default_branch
        parent = r.refs.get(f"refs/heads/{branch}")
        if parent is None:
            raise ApiError(404, f"Branch {branch} not found")
        if not isinstance(body.get("message"), str):
            raise _validation_failed({"resource": "Commit", "field": "message", "code": "missing_field"})
        flat = self._flatten(r, self._commit_value(r, parent)["tree"])
        existing = flat.get(path)
        if content is None and existing is None:
            raise _not_found()
        if existing is not None and "sha" not in body:
            raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        if existing is not None and body["sha"] != existing[1]:
            raise ApiError(409, f"{path} does not match {body['sha']}")
        if content is None:
            del flat[path]
        else:
            flat[path] = (existing[0] if existing else "100644", self._blob(r, content))
        sha = self._commit(r, self._build_tree(r, flat), [parent], body["message"], c.login,
                           body.get("author"), body.get("committer"))
        self._move_ref(r, f"refs/heads/{branch}", sha)
        out = {"content": None, "commit": self._git_commit_json(r, sha)}
        if content is not None:
            out["content"] = self._content_json(r, path, flat[path][0], flat[path][1], branch, with_content=False)
        return (201 if existing is None else 200), out

    def _put_contents(self, c: "_Call") -> tuple:
        if not isinstance(c.body.get("content"), str):
            raise _validation_failed({"resource": "Content", "field": "content", "code": "missing_field"})
        return self._write_file(c, base64.b64decode(c.body["content"]))

    def _delete_contents(self, c: "_Call") -> tuple:
        if "sha" not in c.body:
            raise ApiError(422, 'Invalid request.\n\n"sha" wasn\'t supplied.')
        return self._write_file(c, None)
