"""The GitHub fake, driven by the real PyGithub over HTTP."""
import hashlib
import hmac
import json
import subprocess
import time

import pytest
import requests
from github import (Auth, BadCredentialsException, Github, GithubException, InputGitTreeElement,
                    RateLimitExceededException, UnknownObjectException)

from tests.fakes.github import GitHubFake, pull_request_event, sign_webhook, webhook_headers
from tests.tools import require_tool

REPO = "org/deploy-manifests"
BRANCH = "deckhand/pipeline/payments-api"


@pytest.fixture
def gh(github_fake):
    github_fake.create_repo(REPO, files={"README.md": "# manifests\n", "pipelines/old.yaml": "name: old\n",
                                         "pipelines/keep.yaml": "name: keep\n"})
    return github_fake.client("ghp_test")


@pytest.fixture
def repo(gh):
    return gh.get_repo(REPO)


def commit_on_branch(repo, branch, changes, message="deckhand: update pipelines", base="main"):
    """The bot's flow: one commit on a new branch through the Git Data API. None deletes a path."""
    base_ref = repo.get_git_ref(f"heads/{base}")
    parent = repo.get_git_commit(base_ref.object.sha)
    elements = []
    for path, text in changes.items():
        if text is None:
            elements.append(InputGitTreeElement(path, "100644", "blob", sha=None))
        else:
            blob = repo.create_git_blob(text, "utf-8")
            elements.append(InputGitTreeElement(path, "100644", "blob", sha=blob.sha))
    tree = repo.create_git_tree(elements, base_tree=repo.get_git_tree(parent.tree.sha))
    commit = repo.create_git_commit(message, tree, [parent])
    repo.create_git_ref(f"refs/heads/{branch}", commit.sha)
    return commit


def test_one_commit_on_a_new_branch_then_a_pull_request(github_fake, repo):
    commit = commit_on_branch(repo, BRANCH, {"pipelines/payments-api.yaml": "name: payments-api\n",
                                             "pipelines/old.yaml": None})
    pull = repo.create_pull(title="Pipeline: payments-api", body="Requested by <@U1>", head=f"org:{BRANCH}",
                            base="main")
    pull.add_to_labels("deckhand", "pipeline")
    github_fake.add_collaborators(REPO, "octocat")
    github_fake.add_teams("org", "devops")
    pull.create_review_request(reviewers=["octocat"], team_reviewers=["devops"])

    assert pull.number == 1
    assert pull.html_url == f"{github_fake.web_url}/{REPO}/pull/1"
    assert (pull.head.ref, pull.head.sha, pull.base.ref) == (BRANCH, commit.sha, "main")
    assert pull.user.login == "deckhand-bot"
    assert pull.state == "open" and pull.merged is False and pull.mergeable is True
    assert github_fake.pr_files(REPO, 1) == {"pipelines/payments-api.yaml": "name: payments-api\n",
                                             "pipelines/old.yaml": None}
    assert {(f.filename, f.status) for f in pull.get_files()} == {
        ("pipelines/payments-api.yaml", "added"), ("pipelines/old.yaml", "removed")}
    assert github_fake.files(REPO, ref=BRANCH) == {"README.md": "# manifests\n",
                                                   "pipelines/keep.yaml": "name: keep\n",
                                                   "pipelines/payments-api.yaml": "name: payments-api\n"}
    assert github_fake.files(REPO)["pipelines/old.yaml"] == "name: old\n"  # main untouched

    [recorded] = github_fake.pulls(REPO)
    assert [label["name"] for label in recorded["labels"]] == ["deckhand", "pipeline"]
    assert [u["login"] for u in recorded["requested_reviewers"]] == ["octocat"]
    assert [t["slug"] for t in recorded["requested_teams"]] == ["devops"]
    fresh = repo.get_pull(1)
    assert [label.name for label in fresh.labels] == ["deckhand", "pipeline"]
    assert [u.login for u in fresh.requested_reviewers] == ["octocat"]

    assert [(w.method, w.path.removeprefix(f"/repos/{REPO}")) for w in github_fake.writes()] == [
        ("POST", "/git/blobs"), ("POST", "/git/trees"), ("POST", "/git/commits"), ("POST", "/git/refs"),
        ("POST", "/pulls"), ("POST", "/issues/1/labels"), ("POST", "/pulls/1/requested_reviewers")]
    tree_request = github_fake.writes()[1]
    assert {"path": "pipelines/old.yaml", "mode": "100644", "type": "blob", "sha": None} in tree_request.json["tree"]
    assert github_fake.find("POST", "/pulls")[0].json == {
        "title": "Pipeline: payments-api", "body": "Requested by <@U1>", "head": f"org:{BRANCH}", "base": "main"}
    assert all(r.token == "ghp_test" for r in github_fake.requests)


def test_git_objects_hash_exactly_like_git(github_fake, repo, tmp_path):
    require_tool("git")
    files = {"a.b": "dot\n", "a/x.txt": "nested\n", "a/deep/er/y": "deeper\n", "z": ""}
    commit_on_branch(repo, "hashes", files)
    work = tmp_path / "w"
    subprocess.run(["git", "init", "-q", str(work)], check=True)
    for path, text in {**github_fake.files(REPO, "main"), **files}.items():
        (work / path).parent.mkdir(parents=True, exist_ok=True)
        (work / path).write_text(text)
    subprocess.run(["git", "-C", str(work), "add", "-A"], check=True)
    tree = subprocess.run(["git", "-C", str(work), "write-tree"], check=True, capture_output=True, text=True)
    assert github_fake.commit(REPO, "hashes")["tree"] == tree.stdout.strip()
    assert repo.create_git_blob("hello\n", "utf-8").sha == "ce013625030ba8dba906f756967f9e9ca394464a"


def test_reading_branches_refs_trees_and_contents(github_fake, repo):
    main_sha = github_fake.branches(REPO)["main"]
    assert repo.get_branch("main").commit.sha == main_sha
    ref = repo.get_git_ref("heads/main")
    assert (ref.ref, ref.object.sha) == ("refs/heads/main", main_sha)
    tree = repo.get_git_tree(main_sha, recursive=True)
    assert [(e.path, e.type) for e in tree.tree] == [
        ("README.md", "blob"), ("pipelines", "tree"), ("pipelines/keep.yaml", "blob"), ("pipelines/old.yaml", "blob")]
    assert [e.path for e in repo.get_git_tree(main_sha).tree] == ["README.md", "pipelines"]

    readme = repo.get_contents("README.md", ref="main")
    assert readme.decoded_content == b"# manifests\n" and readme.type == "file"
    listing = repo.get_contents("pipelines", ref="main")
    assert [(c.path, c.type) for c in listing] == [("pipelines/keep.yaml", "file"), ("pipelines/old.yaml", "file")]
    assert listing[0].decoded_content == b"name: keep\n"  # lazily completed through its url
    assert {c.name for c in repo.get_contents("")} == {"README.md", "pipelines"}
    with pytest.raises(UnknownObjectException):
        repo.get_contents("pipelines/missing.yaml", ref="main")
    with pytest.raises(UnknownObjectException):
        repo.get_git_ref("heads/nope")
    with pytest.raises(UnknownObjectException):
        repo.get_branch("nope")

    git_commit = repo.get_git_commit(main_sha)
    assert git_commit.message == "Initial commit" and git_commit.parents == []
    assert repo.get_commit("main").sha == main_sha


def test_creating_the_same_ref_twice_is_a_422(repo):
    commit = commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    with pytest.raises(GithubException) as err:
        repo.create_git_ref(f"refs/heads/{BRANCH}", commit.sha)
    assert err.value.status == 422
    assert err.value.data["message"] == "Reference already exists"


def test_ref_updates_must_fast_forward_unless_forced(github_fake, repo):
    first = commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    ref = repo.get_git_ref(f"heads/{BRANCH}")
    main = repo.get_git_commit(github_fake.branches(REPO)["main"])
    sibling = repo.create_git_commit("rewrite", main.tree, [main])
    with pytest.raises(GithubException) as err:
        ref.edit(sibling.sha)
    assert (err.value.status, err.value.data["message"]) == (422, "Update is not a fast forward")
    ref.edit(sibling.sha, force=True)
    assert github_fake.branches(REPO)[BRANCH] == sibling.sha != first.sha
    assert github_fake.find("PATCH")[-1].json == {"sha": sibling.sha, "force": True}


def test_a_second_pull_request_for_the_same_head_is_a_422(repo):
    commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    repo.create_pull(title="one", body="", head=f"org:{BRANCH}", base="main")
    with pytest.raises(GithubException) as err:
        repo.create_pull(title="two", body="", head=f"org:{BRANCH}", base="main")
    assert err.value.status == 422
    assert err.value.data["errors"][0]["message"] == f"A pull request already exists for org:{BRANCH}."


def test_a_pull_request_without_changes_is_a_422(github_fake, repo):
    repo.create_git_ref("refs/heads/empty", github_fake.branches(REPO)["main"])
    with pytest.raises(GithubException) as err:
        repo.create_pull(title="nothing", body="", head="org:empty", base="main")
    assert err.value.data["errors"][0]["message"] == "No commits between main and empty"


def test_listing_pulls_filters_by_head_base_and_state(github_fake, repo):
    commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    commit_on_branch(repo, "other", {"pipelines/y.yaml": "y\n"})
    mine = repo.create_pull(title="mine", body="", head=BRANCH, base="main")
    repo.create_pull(title="theirs", body="", head="other", base="main")

    found = list(repo.get_pulls(state="open", head=f"org:{BRANCH}", base="main"))
    assert [p.number for p in found] == [mine.number]
    assert found[0].merged is False  # not in list responses: PyGithub fetches the pull to answer
    assert list(repo.get_pulls(state="open", head=f"org:{BRANCH}", base="release")) == []
    assert len(list(repo.get_pulls(state="open", head=BRANCH))) == 2  # GitHub ignores a head without owner

    mine.edit(state="closed")
    assert list(repo.get_pulls(state="open", head=f"org:{BRANCH}")) == []
    assert [p.title for p in repo.get_pulls(state="closed")] == ["mine"]
    assert [p.title for p in repo.get_pulls(state="all")] == ["theirs", "mine"]  # newest first


def test_pull_lists_paginate_with_link_headers(github_fake, gh):
    for i in range(5):
        github_fake.commit_files(REPO, f"b{i}", {f"f{i}": "x"})
        github_fake.create_pull(REPO, head=f"b{i}", title=f"pr {i}")
    repo = github_fake.client("ghp_test", per_page=2).get_repo(REPO)
    assert [p.number for p in repo.get_pulls()] == [5, 4, 3, 2, 1]
    assert repo.get_pulls().totalCount == 5
    assert github_fake.find("GET", "/pulls")[0].query == {"per_page": "2"}


def test_deleting_a_file_through_a_tree_element_without_sha(github_fake, repo):
    commit_on_branch(repo, BRANCH, {"pipelines/old.yaml": None})
    assert "pipelines/old.yaml" not in github_fake.files(REPO, ref=BRANCH)
    assert "pipelines/keep.yaml" in github_fake.files(REPO, ref=BRANCH)

    base = repo.get_git_tree(github_fake.branches(REPO)["main"])
    with pytest.raises(GithubException) as err:  # GitHub refuses to delete a path that is not there
        repo.create_git_tree([InputGitTreeElement("pipelines/never.yaml", "100644", "blob", sha=None)],
                             base_tree=base)
    assert (err.value.status, err.value.data["message"]) == (422, "GitRPC::BadObjectState")


def test_tree_elements_with_inline_content_and_empty_directories_vanish(github_fake, repo):
    main = repo.get_git_commit(github_fake.branches(REPO)["main"])
    tree = repo.create_git_tree([InputGitTreeElement("pipelines/old.yaml", "100644", "blob", sha=None),
                                 InputGitTreeElement("pipelines/keep.yaml", "100644", "blob", sha=None),
                                 InputGitTreeElement("new/a.yaml", "100644", "blob", content="a: 1\n")],
                                base_tree=repo.get_git_tree(main.tree.sha))
    assert sorted(e.path for e in tree.tree) == ["README.md", "new"]
    assert [e.path for e in repo.get_git_tree(tree.sha, recursive=True).tree] == ["README.md", "new", "new/a.yaml"]


def test_merge_helper_creates_a_merge_commit_and_closes_the_pull(github_fake, repo):
    commit = commit_on_branch(repo, BRANCH, {"pipelines/payments-api.yaml": "name: payments-api\n"})
    pull = repo.create_pull(title="Pipeline: payments-api", body="", head=BRANCH, base="main")
    old_main = github_fake.branches(REPO)["main"]
    github_fake.commit_files(REPO, "main", {"README.md": "# changed meanwhile\n"})  # base moves on

    merge_sha = github_fake.merge(REPO, pull.number, merged_by="octocat")

    merged = repo.get_pull(pull.number)
    assert merged.merged is True and merged.state == "closed"
    assert merged.merged_by.login == "octocat" and merged.merged_at is not None
    assert merged.merge_commit_sha == merge_sha == github_fake.branches(REPO)["main"]
    assert github_fake.commit(REPO, merge_sha)["parents"][1] == commit.sha
    assert github_fake.commit(REPO, merge_sha)["parents"][0] != old_main
    assert github_fake.files(REPO) == {"README.md": "# changed meanwhile\n", "pipelines/keep.yaml": "name: keep\n",
                                       "pipelines/old.yaml": "name: old\n",
                                       "pipelines/payments-api.yaml": "name: payments-api\n"}
    assert github_fake.pr_files(REPO, pull.number) == {"pipelines/payments-api.yaml": "name: payments-api\n"}
    assert pull.is_merged()


def test_merging_through_the_api_and_conflicts(github_fake, repo):
    commit_on_branch(repo, BRANCH, {"README.md": "# ours\n"})
    pull = repo.create_pull(title="readme", body="", head=BRANCH, base="main")
    github_fake.commit_files(REPO, "main", {"README.md": "# theirs\n"})
    assert repo.get_pull(pull.number).mergeable is False
    with pytest.raises(GithubException) as err:
        pull.merge()
    assert (err.value.status, err.value.data["message"]) == (405, "Pull Request is not mergeable")

    github_fake.commit_files(REPO, BRANCH, {"README.md": "# theirs\n"})
    status = pull.merge(merge_method="squash")
    assert status.merged is True
    assert github_fake.pull(REPO, pull.number)["merged_by"]["login"] == "deckhand-bot"
    assert github_fake.log(REPO)[0]["message"] == "readme (#1)"


def test_close_helper_and_deleting_the_head_branch(github_fake, repo):
    commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    commit_on_branch(repo, "other", {"pipelines/y.yaml": "y\n"})
    first = repo.create_pull(title="first", body="", head=BRANCH, base="main")
    second = repo.create_pull(title="second", body="", head="other", base="main")
    github_fake.close(REPO, first.number)
    assert repo.get_pull(first.number).state == "closed" and repo.get_pull(first.number).merged is False
    repo.get_git_ref("heads/other").delete()
    assert repo.get_pull(second.number).state == "closed"


def test_issue_view_of_a_pull_labels_and_comments(github_fake, repo):
    commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    pull = repo.create_pull(title="t", body="b", head=BRANCH, base="main")
    issue = repo.get_issue(pull.number)
    issue.add_to_labels("deckhand")
    pull.add_to_labels("deckhand", "batch")
    assert [label.name for label in repo.get_pull(pull.number).get_labels()] == ["deckhand", "batch"]
    pull.remove_from_labels("batch")
    assert [label["name"] for label in github_fake.pull(REPO, pull.number)["labels"]] == ["deckhand"]
    comment = pull.create_issue_comment("Merged by the bot")
    assert comment.body == "Merged by the bot" and comment.user.login == "deckhand-bot"
    assert issue.pull_request is not None


def test_review_requests_follow_githubs_rules(github_fake, repo):
    commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    pull = repo.create_pull(title="t", body="", head=BRANCH, base="main")
    with pytest.raises(GithubException) as err:
        pull.create_review_request(reviewers=["deckhand-bot"])
    assert err.value.data["errors"][0]["message"] == "Review cannot be requested from pull request author."
    # Only collaborators and the org's teams can be asked, and GitHub refuses the whole request otherwise.
    with pytest.raises(GithubException) as err:
        pull.create_review_request(reviewers=["octocat"])
    assert err.value.status == 422 and "may only be requested from collaborators" in err.value.data["message"]
    github_fake.add_collaborators(REPO, "octocat")
    with pytest.raises(GithubException) as err:
        pull.create_review_request(reviewers=["octocat", "stranger"])
    assert err.value.status == 422
    with pytest.raises(GithubException) as err:
        pull.create_review_request(team_reviewers=["no-such-team"])
    assert err.value.status == 422 and "teams you specified" in err.value.data["message"]
    assert list(pull.get_review_requests()[0]) == []
    github_fake.add_teams(REPO.split("/")[0], "devops")
    pull.create_review_request(reviewers=["octocat"], team_reviewers=["devops"])
    users, teams = pull.get_review_requests()
    assert [u.login for u in users] == ["octocat"] and [t.slug for t in teams] == ["devops"]


def test_collaborators_and_teams_can_be_checked_as_on_github(github_fake, repo):
    """What `python app.py check` asks: GET .../collaborators/{user} is 204 or 404, GET /orgs/{org}/teams/{slug}
    is the team or 404."""
    github_fake.add_collaborators(REPO, "octocat")
    github_fake.add_teams("org", "devops")
    gh = Github(base_url=github_fake.url, auth=Auth.Token("t"))
    assert repo.has_in_collaborators("octocat") and repo.has_in_collaborators("deckhand-bot")
    assert not repo.has_in_collaborators("stranger")
    assert gh.get_organization("org").get_team_by_slug("devops").slug == "devops"
    with pytest.raises(UnknownObjectException):
        gh.get_organization("org").get_team_by_slug("ghosts")


def test_contents_api_writes_commit_to_a_branch(github_fake, repo):
    created = repo.create_file("pipelines/new.yaml", "add new", "n: 1\n", branch="main")
    assert github_fake.files(REPO)["pipelines/new.yaml"] == "n: 1\n"
    repo.update_file("pipelines/new.yaml", "bump", "n: 2\n", created["content"].sha, branch="main")
    with pytest.raises(GithubException) as err:
        repo.update_file("pipelines/new.yaml", "stale", "n: 3\n", created["content"].sha, branch="main")
    assert err.value.status == 409
    current = repo.get_contents("pipelines/new.yaml")
    repo.delete_file("pipelines/new.yaml", "drop", current.sha, branch="main")
    assert "pipelines/new.yaml" not in github_fake.files(REPO)
    assert [c["message"] for c in github_fake.log(REPO)][:3] == ["drop", "bump", "add new"]


def test_bad_credentials_unknown_repos_and_read_only_tokens(github_fake, gh):
    github_fake.valid_tokens = {"ghp_test", "ghp_readonly", "ghp_other"}
    with pytest.raises(BadCredentialsException) as err:
        github_fake.client("ghp_wrong").get_repo(REPO)
    assert err.value.status == 401 and err.value.data["message"] == "Bad credentials"
    assert "documentation_url" in err.value.data
    with pytest.raises(GithubException) as err:
        Github(base_url=github_fake.url, retry=None).get_repo(REPO)  # no token at all
    assert err.value.status == 401

    with pytest.raises(UnknownObjectException):
        gh.get_repo("org/missing")
    github_fake.token_repos["ghp_other"] = {"org/elsewhere"}
    with pytest.raises(UnknownObjectException):
        github_fake.client("ghp_other").get_repo(REPO)

    github_fake.read_only_tokens.add("ghp_readonly")
    read_only = github_fake.client("ghp_readonly").get_repo(REPO)
    assert read_only.get_branch("main").name == "main"
    with pytest.raises(GithubException) as err:
        read_only.create_git_blob("x", "utf-8")
    assert (err.value.status, err.value.data["message"]) == (403, "Resource not accessible by integration")


def test_injected_failures_then_recovery(github_fake, repo):
    github_fake.fail(method="GET", path_contains="/branches/", status=502)
    with pytest.raises(GithubException) as err:
        repo.get_branch("main")
    assert err.value.status == 502
    assert repo.get_branch("main").name == "main"  # times=1: the next call goes through

    github_fake.fail(path_contains="/pulls", status=422, body={"message": "Validation Failed", "errors": []},
                     times=None)
    for _ in range(2):
        with pytest.raises(GithubException):
            list(repo.get_pulls())

    github_fake.rate_limit(path_contains="/git/ref/")
    with pytest.raises(RateLimitExceededException) as err:
        repo.get_git_ref("heads/main")
    assert err.value.headers["retry-after"] == "60"


def test_a_hang_makes_pygithub_time_out_promptly(github_fake, gh):
    slow = github_fake.client("ghp_test", timeout=1).get_repo(REPO)
    github_fake.hang("/branches/main", seconds=30)
    started = time.monotonic()
    with pytest.raises(requests.exceptions.Timeout):  # PyGithub does not wrap it
        slow.get_branch("main")
    assert time.monotonic() - started < 5
    assert slow.get_branch("main").name == "main"


def test_pull_request_webhook_payload_and_signature(github_fake, repo):
    commit = commit_on_branch(repo, BRANCH, {"pipelines/x.yaml": "x\n"})
    pull = repo.create_pull(title="Pipeline: x", body="", head=BRANCH, base="main")
    github_fake.merge(REPO, pull.number, merged_by="octocat")

    event = pull_request_event(github_fake, REPO, pull.number, action="closed")
    assert event["action"] == "closed" and event["number"] == pull.number
    pr = event["pull_request"]
    assert pr["merged"] is True and pr["state"] == "closed" and pr["merged_by"]["login"] == "octocat"
    assert pr["head"] == {**pr["head"], "ref": BRANCH, "sha": commit.sha} and pr["base"]["ref"] == "main"
    assert pr["html_url"].endswith(f"/{REPO}/pull/{pull.number}") and pr["title"] == "Pipeline: x"
    assert event["repository"]["full_name"] == REPO and event["sender"]["login"] == "octocat"

    body = json.dumps(event).encode()
    expected = "sha256=" + hmac.new(b"s3cret", body, hashlib.sha256).hexdigest()
    assert sign_webhook("s3cret", body) == expected
    headers = webhook_headers("s3cret", body)
    assert headers["X-Hub-Signature-256"] == expected and headers["X-GitHub-Event"] == "pull_request"


def test_the_fake_starts_and_stops_on_its_own():
    with GitHubFake() as fake:
        fake.create_repo("a/b")
        assert Github(base_url=fake.url, auth=Auth.Token("t"), retry=None).get_repo("a/b").default_branch == "main"
        assert fake.url.startswith("http://127.0.0.1:") and fake.url.endswith("/api/v3")
