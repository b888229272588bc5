"""The fake's tiny in-memory git: blobs, nested trees and commits hashed exactly as git hashes them,
refs that point at commits, diffs and three-way merges of real trees, and their REST JSON shapes."""
from __future__ import annotations

import difflib
import hashlib
import re
from typing import Any
from urllib.parse import quote

from tests.fakes.github.common import ApiError, TREE_MODE, _Repo, _b64_lines, _iso, _node_id, _parse_iso


class GitObjectsMixin:
    """The git object model of GitHubFake (mixed into it; relies on its lock, clock and URLs)."""

    # ---------------------------------------------------------------- git object model

    def _put(self, r: _Repo, kind: str, payload: bytes, value: Any) -> str:
        sha = hashlib.sha1(f"{kind} {len(payload)}\0".encode() + payload).hexdigest()
        r.objects.setdefault(sha, (kind, value))
        return sha

    def _blob(self, r: _Repo, data: bytes) -> str:
        return self._put(r, "blob", data, data)

    def _tree(self, r: _Repo, entries: dict[str, tuple[str, str]]) -> str:
        # git orders tree entries by name, comparing a subtree as if its name ended in "/"
        def order(item: tuple[str, tuple[str, str]]) -> bytes:
            name, (mode, _) = item
            return (name + "/" if mode == TREE_MODE else name).encode()

        items = sorted(entries.items(), key=order)
        payload = b"".join(f"{mode} {name}".encode() + b"\0" + bytes.fromhex(sha) for name, (mode, sha) in items)
        return self._put(r, "tree", payload, dict(items))

    def _commit(self, r: _Repo, tree: str, parents: list[str], message: str, login: str,
                author: dict | None = None, committer: dict | None = None) -> str:
        now = self.clock().replace(microsecond=0)
        default = {"name": login, "email": f"{login}@users.noreply.github.com", "date": _iso(now)}
        author = {**default, **(author or {})}
        committer = {**default, **(committer or {})}

        def signature(who: dict) -> str:
            stamp = int(_parse_iso(who["date"]).timestamp())
            return f"{who['name']} <{who['email']}> {stamp} +0000"

        lines = [f"tree {tree}", *(f"parent {p}" for p in parents),
                 f"author {signature(author)}", f"committer {signature(committer)}"]
        payload = ("\n".join(lines) + "\n\n" + message).encode()
        value = {"tree": tree, "parents": list(parents), "message": message, "author": author,
                 "committer": committer, "login": login}
        return self._put(r, "commit", payload, value)

    def _kind(self, r: _Repo, sha: str | None) -> str | None:
        obj = r.objects.get(sha or "")
        return obj[0] if obj else None

    def _commit_value(self, r: _Repo, sha: str) -> dict:
        return r.objects[sha][1]

    def _text(self, r: _Repo, blob: str) -> str:
        return r.objects[blob][1].decode("utf-8", errors="replace")

    def _walk(self, r: _Repo, tree: str, prefix: str = "", recursive: bool = True) -> list[tuple[str, str, str]]:
        """(path, mode, sha) in git order; subtrees are listed before their contents."""
        out = []
        for name, (mode, sha) in r.objects[tree][1].items():
            path = f"{prefix}{name}"
            out.append((path, mode, sha))
            if recursive and mode == TREE_MODE:
                out.extend(self._walk(r, sha, path + "/"))
        return out

    def _flatten(self, r: _Repo, tree: str, prefix: str = "") -> dict[str, tuple[str, str]]:
        """path -> (mode, sha) for every non-tree entry."""
        return {path: (mode, sha) for path, mode, sha in self._walk(r, tree, prefix) if mode != TREE_MODE}

    def _build_tree(self, r: _Repo, flat: dict[str, tuple[str, str]]) -> str:
        nested: dict[str, Any] = {}
        for path, entry in flat.items():
            *dirs, leaf = path.split("/")
            node = nested
            for d in dirs:
                node = node.setdefault(d, {})
                if not isinstance(node, dict):
                    raise ApiError(422, "GitRPC::BadObjectState")
            node[leaf] = entry

        def write(node: dict) -> str:
            return self._tree(r, {name: (TREE_MODE, write(v)) if isinstance(v, dict) else v
                                  for name, v in node.items()})

        return write(nested)

    def _resolve(self, r: _Repo, refish: str) -> str | None:
        """A commit sha for a sha, abbreviated sha, branch, tag or full ref name."""
        for candidate in (refish, f"refs/{refish}", f"refs/heads/{refish}", f"refs/tags/{refish}"):
            if candidate in r.refs:
                return r.refs[candidate]
        if self._kind(r, refish) == "commit":
            return refish
        if re.fullmatch(r"[0-9a-f]{7,39}", refish):
            found = [sha for sha, (kind, _) in r.objects.items() if kind == "commit" and sha.startswith(refish)]
            if len(found) == 1:
                return found[0]
        return None

    def _ancestors(self, r: _Repo, sha: str) -> set[str]:
        seen, todo = set(), [sha]
        while todo:
            s = todo.pop()
            if s not in seen:
                seen.add(s)
                todo.extend(self._commit_value(r, s)["parents"])
        return seen

    def _generation(self, r: _Repo, sha: str) -> int:
        """Length of the longest parent chain down to a root commit (commits never change, so cached)."""
        todo = [sha]
        while todo:
            s = todo[-1]
            if s in r.generations:
                todo.pop()
                continue
            missing = [p for p in self._commit_value(r, s)["parents"] if p not in r.generations]
            if missing:
                todo.extend(missing)
            else:
                todo.pop()
                r.generations[s] = 1 + max((r.generations[p] for p in self._commit_value(r, s)["parents"]),
                                           default=0)
        return r.generations[sha]

    def _merge_base(self, r: _Repo, a: str, b: str) -> str | None:
        # the deepest common ancestor; with criss-cross merges any of the best ones will do here
        common = self._ancestors(r, a) & self._ancestors(r, b)
        return max(common, key=lambda c: (self._generation(r, c), c)) if common else None

    def _diff(self, r: _Repo, old_commit: str | None, new_commit: str) -> dict[str, tuple[Any, Any]]:
        """path -> (old (mode, sha) | None, new (mode, sha) | None) for paths that differ."""
        old = self._flatten(r, self._commit_value(r, old_commit)["tree"]) if old_commit else {}
        new = self._flatten(r, self._commit_value(r, new_commit)["tree"])
        return {p: (old.get(p), new.get(p)) for p in sorted(set(old) | set(new)) if old.get(p) != new.get(p)}

    def _three_way(self, r: _Repo, base_tip: str, head: str) -> dict[str, tuple[str, str]] | None:
        """The merged flat tree, or None on a conflict (same path changed differently on both sides)."""
        mb = self._merge_base(r, base_tip, head)
        ours = self._flatten(r, self._commit_value(r, base_tip)["tree"])
        theirs = self._flatten(r, self._commit_value(r, head)["tree"])
        ancestor = self._flatten(r, self._commit_value(r, mb)["tree"]) if mb else {}
        result = dict(ours)
        for path in set(ancestor) | set(theirs):
            a, o, t = ancestor.get(path), ours.get(path), theirs.get(path)
            if t == a or o == t:
                continue
            if o != a:
                return None
            if t is None:
                result.pop(path, None)
            else:
                result[path] = t
        return result

    def _move_ref(self, r: _Repo, ref: str, sha: str | None) -> None:
        """Point (or delete) a ref; open PRs follow their head branch and close when it is deleted."""
        if sha is None:
            r.refs.pop(ref, None)
        else:
            r.refs[ref] = sha
        for pr in r.pulls.values():
            if pr["state"] == "open" and ref == f"refs/heads/{pr['head_ref']}":
                if sha is None:
                    self._set_state(r, pr, "closed")
                else:
                    pr["head_sha"] = sha
                    pr["updated_at"] = _iso(self.clock())

    def _ref_json(self, r: _Repo, ref: str) -> dict:
        sha = r.refs[ref]
        return {"ref": ref, "node_id": _node_id("REF", ref), "url": f"{self._repo_url(r)}/git/{ref}",
                "object": {"sha": sha, "type": "commit", "url": f"{self._repo_url(r)}/git/commits/{sha}"}}

    def _git_commit_json(self, r: _Repo, sha: str) -> dict:
        c, url = self._commit_value(r, sha), self._repo_url(r)
        return {
            "sha": sha, "node_id": _node_id("C", sha), "url": f"{url}/git/commits/{sha}",
            "html_url": f"{self.web_url}/{r.full_name}/commit/{sha}",
            "author": dict(c["author"]), "committer": dict(c["committer"]), "message": c["message"],
            "tree": {"sha": c["tree"], "url": f"{url}/git/trees/{c['tree']}"},
            "parents": [{"sha": p, "url": f"{url}/git/commits/{p}",
                         "html_url": f"{self.web_url}/{r.full_name}/commit/{p}"} for p in c["parents"]],
            "verification": {"verified": False, "reason": "unsigned", "signature": None, "payload": None,
                             "verified_at": None},
        }

    def _commit_json(self, r: _Repo, sha: str, with_files: bool = True) -> dict:
        c, url = self._commit_value(r, sha), self._repo_url(r)
        git = self._git_commit_json(r, sha)
        out = {
            "sha": sha, "node_id": git["node_id"], "url": f"{url}/commits/{sha}", "html_url": git["html_url"],
            "comments_url": f"{url}/commits/{sha}/comments",
            "commit": {"author": git["author"], "committer": git["committer"], "message": c["message"],
                       "tree": git["tree"], "url": git["url"], "comment_count": 0,
                       "verification": git["verification"]},
            "author": self._user_json(c["login"]), "committer": self._user_json(c["login"]),
            "parents": [{"sha": p, "url": f"{url}/commits/{p}",
                         "html_url": f"{self.web_url}/{r.full_name}/commit/{p}"} for p in c["parents"]],
        }
        if with_files:
            files = self._files_json(r, c["parents"][0] if c["parents"] else None, sha)
            adds, dels = sum(f["additions"] for f in files), sum(f["deletions"] for f in files)
            out["stats"] = {"total": adds + dels, "additions": adds, "deletions": dels}
            out["files"] = files
        return out

    def _files_json(self, r: _Repo, old_commit: str | None, new_commit: str) -> list[dict]:
        out = []
        for path, (old, new) in self._diff(r, old_commit, new_commit).items():
            before = self._text(r, old[1]).splitlines() if old else []
            after = self._text(r, new[1]).splitlines() if new else []
            patch = list(difflib.unified_diff(before, after, lineterm="", n=3))[2:]
            adds = sum(1 for line in patch if line.startswith("+"))
            dels = sum(1 for line in patch if line.startswith("-"))
            status = "added" if old is None else "removed" if new is None else "modified"
            blob = (new or old)[1]
            quoted = quote(path)
            out.append({
                "sha": blob, "filename": path, "status": status, "additions": adds, "deletions": dels,
                "changes": adds + dels,
                "blob_url": f"{self.web_url}/{r.full_name}/blob/{new_commit}/{quoted}",
                "raw_url": f"{self.web_url}/{r.full_name}/raw/{new_commit}/{quoted}",
                "contents_url": f"{self._repo_url(r)}/contents/{quoted}?ref={new_commit}",
                "patch": "\n".join(patch),
            })
        return out

    def _tree_json(self, r: _Repo, tree: str, recursive: bool) -> dict:
        url = self._repo_url(r)
        entries = []
        for path, mode, sha in self._walk(r, tree, recursive=recursive):
            if mode == TREE_MODE:
                entries.append({"path": path, "mode": "040000", "type": "tree", "sha": sha,
                                "url": f"{url}/git/trees/{sha}"})
            elif mode == "160000":
                entries.append({"path": path, "mode": mode, "type": "commit", "sha": sha})
            else:
                entries.append({"path": path, "mode": mode, "type": "blob", "sha": sha,
                                "size": len(r.objects[sha][1]), "url": f"{url}/git/blobs/{sha}"})
        return {"sha": tree, "url": f"{url}/git/trees/{tree}", "tree": entries, "truncated": False}

    def _content_json(self, r: _Repo, path: str, mode: str, sha: str, ref: str, with_content: bool) -> dict:
        url, quoted = self._repo_url(r), quote(path)
        is_dir = mode == TREE_MODE
        self_url = f"{url}/contents/{quoted}?ref={quote(ref, safe='')}"
        git_url = f"{url}/git/{'trees' if is_dir else 'blobs'}/{sha}"
        html_url = f"{self.web_url}/{r.full_name}/{'tree' if is_dir else 'blob'}/{ref}/{quoted}"
        out = {
            "type": "dir" if is_dir else "file", "size": 0 if is_dir else len(r.objects[sha][1]),
            "name": path.rsplit("/", 1)[-1], "path": path, "sha": sha, "url": self_url, "git_url": git_url,
            "html_url": html_url,
            "download_url": None if is_dir else f"{self.web_url}/{r.full_name}/raw/{ref}/{quoted}",
            "_links": {"self": self_url, "git": git_url, "html": html_url},
        }
        if with_content and not is_dir:
            out["content"] = _b64_lines(r.objects[sha][1])
            out["encoding"] = "base64"
        return out
