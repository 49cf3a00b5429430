"""Policy loading: defaults, and errors that name the file, key path and line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from corral import Policy
from corral.errors import PolicyError

REPO = Path(__file__).resolve().parents[2]


def test_default_is_secure() -> None:
    p = Policy.default()
    assert p.network.mode == "none"
    assert p.gpu.devices == ()
    assert p.processes.lifetime == "call"
    assert p.workspace.writable_host_path is None
    assert p.filesystem.image_root == "read_only"
    assert p.response.agent_message == "neutral"
    assert p.programs.allow is None
    assert "/etc/shadow" in p.filesystem.hidden_paths


def test_embedded_default_is_policies_default_yaml() -> None:
    assert Policy.load(REPO / "policies" / "default.yaml") == Policy.default()


def test_empty_file_gives_defaults(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("")
    assert Policy.load(f) == Policy()


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("resources:\n  memory_max_bytes: lots\n", ["p.yaml:2: resources.memory_max_bytes:"]),
        ("resources:\n  pids_max: 64\n  bogus: 1\n", ["p.yaml:3: resources.bogus: unknown key"]),
        ("netwrk:\n  mode: none\n", ["p.yaml:1: netwrk: unknown key"]),
        ("network:\n  mode: open\n", ["p.yaml:2: network.mode:"]),
        (
            "filesystem:\n  read_only_binds:\n    - /usr\n    - /var/run/docker.sock\n",
            ["p.yaml:4: filesystem.read_only_binds[1]:"],
        ),
        ("filesystem:\n  read_only_binds: [/]\n", ["would expose the host"]),
        (
            "workspace:\n  mount_point: relative\n",
            ["p.yaml:2: workspace.mount_point: Value error, must be an absolute path"],
        ),
        ("programs:\n  allow: ['*']\n", ["wildcards are not allowed"]),
        ("programs:\n  allow: []\n", ["empty allowlist"]),
        ("env:\n  passthrough: [AWS_SECRET_ACCESS_KEY]\n", ["leak a credential"]),
        ("resources: [1, 2]\n", ["p.yaml:1: resources:"]),
        ("a: 1\na: 2\n", ["p.yaml:2: a: duplicate key"]),
        ("resources: !!python/object:os.system {}\n", ["p.yaml:1: resources: YAML tag", "is not allowed"]),
        ("resources:\n  pids_max: [\n", ["p.yaml:", "not valid YAML"]),
        ("- just\n- a list\n", ["a policy must be a mapping"]),
    ],
)
def test_errors_name_file_path_and_line(tmp_path: Path, text: str, expected: list[str]) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError) as info:
        Policy.load(f)
    msg = str(info.value).replace(str(tmp_path) + "/", "")
    for part in expected:
        assert part in msg, msg


def test_all_errors_are_collected_in_one_pass(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("resources:\n  pids_max: -1\n  wall_timeout_s: never\nbogus: 1\n")
    with pytest.raises(PolicyError) as info:
        Policy.load(f)
    lines = {(p.path, p.line) for p in info.value.problems}
    assert lines == {("resources.pids_max", 2), ("resources.wall_timeout_s", 3), ("bogus", 4)}


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PolicyError, match="policy file not found"):
        Policy.load(tmp_path / "nope.yaml")


def test_policies_are_frozen() -> None:
    p = Policy.default()
    with pytest.raises(Exception, match="frozen"):
        p.resources.pids_max = 5  # type: ignore[misc]


def test_json_schema_lists_every_section() -> None:
    from corral.policy import policy_json_schema

    schema = json.loads(policy_json_schema())
    for section in ("workspace", "filesystem", "resources", "processes", "network", "gpu", "programs", "env"):
        assert section in schema["properties"]


def test_default_yaml_documents_every_section_with_the_true_defaults() -> None:
    import yaml

    text = (REPO / "policies" / "default.yaml").read_text()
    assert Policy.default() == Policy(name="default")  # the file states the model's defaults
    assert set(yaml.safe_load(text)) == set(Policy.model_fields)
