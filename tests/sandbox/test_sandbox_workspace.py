"""Workspace templates: the agent edits a copy-on-write view; the host directory never changes."""

from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

from corral import Policy, Sandbox


def _snapshot(root: Path) -> dict[str, tuple[int, int, str]]:
    out = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            p = Path(dirpath) / name
            st = p.lstat()
            digest = hashlib.sha256(p.read_bytes()).hexdigest() if p.is_file() else ""
            out[str(p.relative_to(root))] = (st.st_uid, st.st_mode, digest)
    return out


def _template(tmp: Path) -> Path:
    repo = tmp / "repo"
    (repo / "pkg").mkdir(parents=True)
    (repo / "pkg" / "mod.py").write_text("X = 1\n")
    (repo / "README.md").write_text("hello\n")
    (repo / "old.txt").write_text("rename me\n")
    (repo / "gone.txt").write_text("delete me\n")
    subprocess.run(["git", "init", "-q", str(repo)], check=True)
    subprocess.run(["git", "-C", str(repo), "add", "-A"], check=True)
    subprocess.run(
        ["git", "-C", str(repo), "-c", "user.email=t@e", "-c", "user.name=t", "commit", "-qm", "init"],
        check=True,
    )
    return repo


def test_template_is_never_changed_by_the_agent(policy: Policy, tmp_path: Path) -> None:
    repo = _template(tmp_path)
    before = _snapshot(repo)
    with Sandbox(policy, workspace=repo) as sb:
        r = sb.run(
            "echo Y = 2 >> pkg/mod.py && mv old.txt new.txt && rm gone.txt && echo new > added.txt"
            " && mkdir -p build && touch build/out && chmod 600 README.md && ls"
        )
        assert r.exit_code == 0, r.stderr
        assert sb.run("cat pkg/mod.py").stdout == "X = 1\nY = 2\n"
        assert sorted(sb.run("ls").stdout.split()) == ["README.md", "added.txt", "build", "new.txt", "pkg"]
    assert _snapshot(repo) == before


def test_files_appear_owned_by_the_agent_and_git_works(policy: Policy, tmp_path: Path) -> None:
    repo = _template(tmp_path)
    with Sandbox(policy, workspace=repo) as sb:
        r = sb.run("stat -c '%U' . README.md pkg pkg/mod.py .git")
        assert set(r.stdout.split()) == {"agent"}
        r = sb.run("echo change >> README.md && git status --porcelain && git diff --stat")
        assert r.exit_code == 0, r.stderr
        assert "dubious ownership" not in r.stderr
        assert " M README.md" in r.stdout


def test_two_sandboxes_from_one_template_do_not_see_each_other(policy: Policy, tmp_path: Path) -> None:
    repo = _template(tmp_path)
    with Sandbox(policy, workspace=repo) as a, Sandbox(policy, workspace=repo) as b:
        a.run("echo from-a > mine.txt && rm README.md")
        assert b.run("ls mine.txt 2>&1; cat README.md").stdout.endswith("hello\n")
        assert "No such file" in b.run("ls mine.txt 2>&1").stdout
        assert a.run("cat mine.txt").stdout == "from-a\n"


def test_workspace_cap_applies_to_the_copy(policy: Policy, tmp_path: Path) -> None:
    repo = _template(tmp_path)
    small = policy.with_overrides(workspace={"size_max_bytes": 2 * 1024 * 1024})
    with Sandbox(small, workspace=repo) as sb:
        r = sb.run("head -c 4000000 /dev/zero > big 2>/dev/null; echo $?")
        assert r.stdout.strip() != "0"  # ENOSPC: the copy-on-write layer is size-capped
