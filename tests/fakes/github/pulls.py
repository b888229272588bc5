"""Pull requests, issue labels, comments and review requests of the GitHub fake."""
from __future__ import annotations

from typing import Any
from urllib.parse import quote

from tests.fakes.github.common import ApiError, _Call, _Repo, _iso, _node_id, _not_found, _validation_failed


class PullsMixin:
    """Pull request, issue, label, comment and reviewer endpoints of GitHubFake (mixed into it)."""

    def _label_json(self, r: _Repo, label: dict) -> dict:
        return {"id": label["id"], "node_id": _node_id("LA", label["id"]),
                "url": f"{self._repo_url(r)}/labels/{quote(label['name'])}", "name": label["name"],
                "color": label["color"], "default": False, "description": label.get("description")}

    def _pull_json(self, r: _Repo, pr: dict, full: bool = True) -> dict:
        n, url, web = pr["number"], self._repo_url(r), f"{self.web_url}/{r.full_name}"
        repo_json, owner_json = self._repo_json(r), self._user_json(r.owner)
        base_sha = pr["base_sha"]
        if pr["state"] == "open":
            base_sha = r.refs.get(f"refs/heads/{pr['base_ref']}", base_sha)
        out = {
            "url": f"{url}/pulls/{n}", "id": pr["id"], "node_id": _node_id("PR", pr["id"]),
            "html_url": f"{web}/pull/{n}", "diff_url": f"{web}/pull/{n}.diff", "patch_url": f"{web}/pull/{n}.patch",
            "issue_url": f"{url}/issues/{n}", "commits_url": f"{url}/pulls/{n}/commits",
            "review_comments_url": f"{url}/pulls/{n}/comments",
            "review_comment_url": f"{url}/pulls/comments{{/number}}", "comments_url": f"{url}/issues/{n}/comments",
            "statuses_url": f"{url}/statuses/{pr['head_sha']}", "number": n, "state": pr["state"],
            "locked": False, "title": pr["title"], "user": self._user_json(pr["user"]), "body": pr["body"],
            "labels": [self._label_json(r, r.labels[name.lower()]) for name in pr["labels"]],
            "milestone": None, "active_lock_reason": None, "created_at": pr["created_at"],
            "updated_at": pr["updated_at"], "closed_at": pr["closed_at"], "merged_at": pr["merged_at"],
            "merge_commit_sha": pr["merge_commit_sha"], "assignee": None, "assignees": [],
            "requested_reviewers": [self._user_json(u) for u in pr["reviewers"]],
            "requested_teams": [self._team_json(r, t) for t in pr["teams"]],
            "head": {"label": f"{r.owner}:{pr['head_ref']}", "ref": pr["head_ref"], "sha": pr["head_sha"],
                     "user": owner_json, "repo": repo_json},
            "base": {"label": f"{r.owner}:{pr['base_ref']}", "ref": pr["base_ref"], "sha": base_sha,
                     "user": owner_json, "repo": repo_json},
            "_links": {"self": {"href": f"{url}/pulls/{n}"}, "html": {"href": f"{web}/pull/{n}"},
                       "issue": {"href": f"{url}/issues/{n}"}, "comments": {"href": f"{url}/issues/{n}/comments"},
                       "commits": {"href": f"{url}/pulls/{n}/commits"},
                       "statuses": {"href": f"{url}/statuses/{pr['head_sha']}"}},
            "author_association": "MEMBER", "auto_merge": None, "draft": pr["draft"],
        }
        if full:  # the list endpoint leaves these out; PyGithub fetches the PR when they are read
            mergeable = None if pr["merged_at"] else self._three_way(r, base_sha, pr["head_sha"]) is not None
            files = self._files_json(r, self._pr_base_point(r, pr), pr["head_sha"])
            out.update({
                "merged": pr["merged_at"] is not None, "mergeable": mergeable, "rebaseable": mergeable,
                "mergeable_state": "unknown" if mergeable is None else "clean" if mergeable else "dirty",
                "merged_by": self._user_json(pr["merged_by"]) if pr["merged_by"] else None,
                "comments": sum(1 for c in r.comments.values() if c["number"] == n), "review_comments": 0,
                "maintainer_can_modify": False, "commits": len(self._pr_commits(r, pr)),
                "additions": sum(f["additions"] for f in files), "deletions": sum(f["deletions"] for f in files),
                "changed_files": len(files),
            })
        return out

    def _issue_json(self, r: _Repo, pr: dict) -> dict:
        n, url, web = pr["number"], self._repo_url(r), f"{self.web_url}/{r.full_name}"
        return {
            "url": f"{url}/issues/{n}", "repository_url": url, "labels_url": f"{url}/issues/{n}/labels{{/name}}",
            "comments_url": f"{url}/issues/{n}/comments", "events_url": f"{url}/issues/{n}/events",
            "html_url": f"{web}/pull/{n}", "id": pr["id"] + 1, "node_id": _node_id("I", pr["id"]), "number": n,
            "title": pr["title"], "user": self._user_json(pr["user"]),
            "labels": [self._label_json(r, r.labels[name.lower()]) for name in pr["labels"]],
            "state": pr["state"], "state_reason": None, "locked": False, "assignee": None, "assignees": [],
            "milestone": None, "comments": sum(1 for c in r.comments.values() if c["number"] == n),
            "created_at": pr["created_at"], "updated_at": pr["updated_at"], "closed_at": pr["closed_at"],
            "author_association": "MEMBER", "body": pr["body"], "closed_by": None,
            "pull_request": {"url": f"{url}/pulls/{n}", "html_url": f"{web}/pull/{n}",
                             "diff_url": f"{web}/pull/{n}.diff", "patch_url": f"{web}/pull/{n}.patch",
                             "merged_at": pr["merged_at"]},
        }

    def _comment_json(self, r: _Repo, c: dict) -> dict:
        url = self._repo_url(r)
        return {"id": c["id"], "node_id": _node_id("IC", c["id"]), "url": f"{url}/issues/comments/{c['id']}",
                "html_url": f"{self.web_url}/{r.full_name}/pull/{c['number']}#issuecomment-{c['id']}",
                "issue_url": f"{url}/issues/{c['number']}", "body": c["body"], "user": self._user_json(c["user"]),
                "created_at": c["created_at"], "updated_at": c["updated_at"], "author_association": "MEMBER"}

    # -- pull requests

    def _pr(self, c: "_Call") -> dict:
        pr = c.repo.pulls.get(int(c.args["number"]))
        if pr is None:
            raise _not_found()
        return pr

    def _pr_base_point(self, r: _Repo, pr: dict) -> str | None:
        if pr["merge_base"]:
            return pr["merge_base"]
        tip = r.refs.get(f"refs/heads/{pr['base_ref']}", pr["base_sha"])
        return self._merge_base(r, tip, pr["head_sha"])

    def _pr_commits(self, r: _Repo, pr: dict) -> list[str]:
        base = self._pr_base_point(r, pr)
        exclude = self._ancestors(r, base) if base else set()
        todo, seen, out = [pr["head_sha"]], set(), []
        while todo:
            sha = todo.pop()
            if sha in seen or sha in exclude:
                continue
            seen.add(sha)
            out.append(sha)
            todo.extend(self._commit_value(r, sha)["parents"])
        return sorted(out, key=lambda s: self._generation(r, s))

    def _open_pull(self, r: _Repo, body: dict, login: str) -> dict:
        title, head, base = body.get("title"), body.get("head"), body.get("base")
        if not isinstance(title, str) or not title:
            raise _validation_failed({"resource": "PullRequest", "field": "title", "code": "missing_field"})
        if not isinstance(head, str) or not head:
            raise _validation_failed({"resource": "PullRequest", "field": "head", "code": "missing_field"})
        if not isinstance(base, str) or not base:
            raise _validation_failed({"resource": "PullRequest", "field": "base", "code": "missing_field"})
        owner, _, branch = head.rpartition(":")
        if owner and owner.lower() != r.owner.lower():
            raise _validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
        head_sha = r.refs.get(f"refs/heads/{branch}")
        base_sha = r.refs.get(f"refs/heads/{base}")
        if base_sha is None:
            raise _validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
        if head_sha is None:
            raise _validation_failed({"resource": "PullRequest", "field": "head", "code": "invalid"})
        for pr in r.pulls.values():
            if pr["state"] == "open" and pr["head_ref"] == branch and pr["base_ref"] == base:
                raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                          "message": f"A pull request already exists for {r.owner}:{branch}."})
        if head_sha in self._ancestors(r, base_sha):
            raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                      "message": f"No commits between {base} and {branch}"})
        now = _iso(self.clock())
        number = r.next_number
        r.next_number += 1
        pr = {"number": number, "id": next(self._ids), "title": title, "body": body.get("body"), "state": "open",
              "user": login, "head_ref": branch, "head_sha": head_sha, "base_ref": base, "base_sha": base_sha,
              "labels": [], "reviewers": [], "teams": [], "draft": bool(body.get("draft", False)),
              "created_at": now, "updated_at": now, "closed_at": None, "merged_at": None, "merged_by": None,
              "merge_commit_sha": None, "merge_base": None}
        r.pulls[number] = pr
        return pr

    def _set_state(self, r: _Repo, pr: dict, state: str) -> None:
        now = _iso(self.clock())
        if state == "closed" and pr["state"] == "open":
            pr.update(state="closed", closed_at=now, updated_at=now,
                      base_sha=r.refs.get(f"refs/heads/{pr['base_ref']}", pr["base_sha"]))
        elif state == "open" and pr["state"] == "closed":
            if pr["merged_at"]:
                raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                          "message": "Cannot reopen a merged pull request"})
            if f"refs/heads/{pr['head_ref']}" not in r.refs:
                raise _validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
            pr.update(state="open", closed_at=None, updated_at=now,
                      head_sha=r.refs[f"refs/heads/{pr['head_ref']}"])

    def _merge(self, r: _Repo, pr: dict, login: str, method: str, title: str | None, message: str | None) -> str:
        if pr["state"] != "open":
            raise ApiError(405, "Pull Request is not mergeable")
        base_ref = f"refs/heads/{pr['base_ref']}"
        base_tip = r.refs[base_ref]
        merged = self._three_way(r, base_tip, pr["head_sha"])
        if merged is None:
            raise ApiError(405, "Pull Request is not mergeable")
        tree = self._build_tree(r, merged)
        if method == "merge":
            headline = title or f"Merge pull request #{pr['number']} from {r.owner}/{pr['head_ref']}"
            text = headline + "\n\n" + (message if message is not None else pr["title"])
            sha = self._commit(r, tree, [base_tip, pr["head_sha"]], text, login)
        elif method in ("squash", "rebase"):
            headline = title or f"{pr['title']} (#{pr['number']})"
            sha = self._commit(r, tree, [base_tip], headline + ("\n\n" + message if message else ""), login)
        else:
            raise _validation_failed({"resource": "PullRequest", "field": "merge_method", "code": "invalid"})
        pr["merge_base"] = self._merge_base(r, base_tip, pr["head_sha"])
        self._move_ref(r, base_ref, sha)
        now = _iso(self.clock())
        pr.update(state="closed", merged_at=now, closed_at=now, updated_at=now, merged_by=login,
                  merge_commit_sha=sha, base_sha=base_tip)
        return sha

    def _list_pulls(self, c: "_Call") -> tuple:
        r, q = c.repo, c.query
        state = q.get("state", "open")
        if state not in ("open", "closed", "all"):
            raise _validation_failed({"resource": "Issue", "field": "state", "code": "invalid"})
        pulls = [pr for pr in r.pulls.values() if state == "all" or pr["state"] == state]
        head = q.get("head")
        if head and ":" in head:  # like GitHub, a head without "owner:" is ignored, not matched
            owner, _, branch = head.partition(":")
            pulls = [pr for pr in pulls if owner.lower() == r.owner.lower() and pr["head_ref"] == branch]
        if q.get("base"):
            pulls = [pr for pr in pulls if pr["base_ref"] == q["base"]]
        key = {"created": "created_at", "updated": "updated_at"}.get(q.get("sort", "created"), "created_at")
        descending = q.get("direction", "desc") == "desc"
        pulls.sort(key=lambda pr: (pr[key], pr["number"]), reverse=descending)
        return self._paginate(c, [self._pull_json(r, pr, full=False) for pr in pulls])

    def _post_pull(self, c: "_Call") -> tuple:
        pr = self._open_pull(c.repo, c.body, c.login)
        return 201, self._pull_json(c.repo, pr)

    def _get_pull(self, c: "_Call") -> tuple:
        return 200, self._pull_json(c.repo, self._pr(c))

    def _patch_pull(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        self._edit(c.repo, pr, c.body)
        if "base" in c.body:
            if f"refs/heads/{c.body['base']}" not in c.repo.refs:
                raise _validation_failed({"resource": "PullRequest", "field": "base", "code": "invalid"})
            pr["base_ref"] = c.body["base"]
        return 200, self._pull_json(c.repo, pr)

    def _edit(self, r: _Repo, pr: dict, body: dict) -> None:
        state = body.get("state")
        if state is not None and state not in ("open", "closed"):
            raise _validation_failed({"resource": "PullRequest", "field": "state", "code": "invalid"})
        for key in ("title", "body"):
            if key in body:
                pr[key] = body[key]
        if state:
            self._set_state(r, pr, state)
        pr["updated_at"] = _iso(self.clock())

    def _pull_files(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return self._paginate(c, self._files_json(c.repo, self._pr_base_point(c.repo, pr), pr["head_sha"]))

    def _pull_commits(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return self._paginate(c, [self._commit_json(c.repo, s, with_files=False)
                                  for s in self._pr_commits(c.repo, pr)])

    def _is_merged(self, c: "_Call") -> tuple:
        if self._pr(c)["merged_at"]:
            return 204, None
        raise _not_found()

    def _put_merge(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        if c.body.get("sha") and c.body["sha"] != pr["head_sha"]:
            raise ApiError(409, "Head branch was modified. Review and try the merge again.")
        sha = self._merge(c.repo, pr, c.login, c.body.get("merge_method", "merge"),
                          c.body.get("commit_title"), c.body.get("commit_message"))
        return 200, {"sha": sha, "merged": True, "message": "Pull Request successfully merged"}

    def _get_reviewers(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return 200, {"users": [self._user_json(u) for u in pr["reviewers"]],
                     "teams": [self._team_json(c.repo, t) for t in pr["teams"]]}

    def _add_reviewers(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        users, teams = c.body.get("reviewers") or [], c.body.get("team_reviewers") or []
        if pr["user"] in users:
            raise _validation_failed({"resource": "PullRequest", "code": "custom",
                                      "message": "Review cannot be requested from pull request author."})
        # GitHub answers 422 for a user who is not a collaborator or a team without access, whole request
        # refused (https://docs.github.com/rest/pulls/review-requests#request-reviewers-for-a-pull-request).
        if any(not self.is_collaborator(c.repo.full_name, u) for u in users):
            raise ApiError(422, "Reviews may only be requested from collaborators. One or more of the users or "
                                f"teams you specified is not a collaborator of the {c.repo.full_name} repository.")
        if any(not self.has_team(c.repo.owner, t) for t in teams):
            raise ApiError(422, "Reviews may only be requested from collaborators. One or more of the teams you "
                                f"specified is not a collaborator of the {c.repo.full_name} repository.")
        pr["reviewers"] += [u for u in users if u not in pr["reviewers"]]
        pr["teams"] += [t for t in teams if t not in pr["teams"]]
        return 201, self._pull_json(c.repo, pr)

    def _remove_reviewers(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        pr["reviewers"] = [u for u in pr["reviewers"] if u not in (c.body.get("reviewers") or [])]
        pr["teams"] = [t for t in pr["teams"] if t not in (c.body.get("team_reviewers") or [])]
        return 200, self._pull_json(c.repo, pr)

    # -- issues (every issue here is a pull request), labels, comments

    def _get_issue(self, c: "_Call") -> tuple:
        return 200, self._issue_json(c.repo, self._pr(c))

    def _patch_issue(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        self._edit(c.repo, pr, c.body)
        if "labels" in c.body:
            pr["labels"] = []
            self._label(c.repo, pr, c.body["labels"])
        return 200, self._issue_json(c.repo, pr)

    def _label(self, r: _Repo, pr: dict, names: Any) -> list[dict]:
        if isinstance(names, dict):
            names = names.get("labels", [])
        if not isinstance(names, list):
            raise _validation_failed({"resource": "Label", "field": "labels", "code": "invalid"})
        for name in names:
            name = name["name"] if isinstance(name, dict) else name
            if not isinstance(name, str) or not name:
                raise _validation_failed({"resource": "Label", "field": "name", "code": "invalid"})
            label = r.labels.setdefault(name.lower(), {"id": next(self._ids), "name": name, "color": "ededed"})
            if label["name"] not in pr["labels"]:
                pr["labels"].append(label["name"])
        pr["updated_at"] = _iso(self.clock())
        return [self._label_json(r, r.labels[n.lower()]) for n in pr["labels"]]

    def _get_labels(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        return self._paginate(c, [self._label_json(c.repo, c.repo.labels[n.lower()]) for n in pr["labels"]])

    def _add_labels(self, c: "_Call") -> tuple:
        return 200, self._label(c.repo, self._pr(c), c.body)

    def _set_labels(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        pr["labels"] = []
        return 200, self._label(c.repo, pr, c.body)

    def _remove_label(self, c: "_Call") -> tuple:
        pr, name = self._pr(c), c.args["label"]
        kept = [n for n in pr["labels"] if n.lower() != name.lower()]
        if len(kept) == len(pr["labels"]):
            raise ApiError(404, "Label does not exist")
        pr["labels"] = kept
        return 200, [self._label_json(c.repo, c.repo.labels[n.lower()]) for n in kept]

    def _list_comments(self, c: "_Call") -> tuple:
        n = self._pr(c)["number"]
        return self._paginate(c, [self._comment_json(c.repo, x) for x in c.repo.comments.values()
                                  if x["number"] == n])

    def _add_comment(self, c: "_Call") -> tuple:
        pr = self._pr(c)
        if not isinstance(c.body.get("body"), str):
            raise _validation_failed({"resource": "IssueComment", "field": "body", "code": "missing_field"})
        now = _iso(self.clock())
        comment = {"id": next(self._ids), "number": pr["number"], "body": c.body["body"], "user": c.login,
                   "created_at": now, "updated_at": now}
        c.repo.comments[comment["id"]] = comment
        return 201, self._comment_json(c.repo, comment)

    def _edit_comment(self, c: "_Call") -> tuple:
        comment = c.repo.comments.get(int(c.args["id"]))
        if comment is None:
            raise _not_found()
        comment.update(body=c.body.get("body", comment["body"]), updated_at=_iso(self.clock()))
        return 200, self._comment_json(c.repo, comment)

    def _delete_comment(self, c: "_Call") -> tuple:
        if c.repo.comments.pop(int(c.args["id"]), None) is None:
            raise _not_found()
        return 204, None
