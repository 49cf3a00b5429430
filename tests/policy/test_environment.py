"""The environment section: a secure default, and errors that name the field and line at load time."""

from __future__ import annotations

from pathlib import Path

import pytest

from corral import Policy
from corral.errors import PolicyError


def test_default_uses_no_image_and_allows_none() -> None:
    env = Policy.default().environment
    assert env.image is None and env.images_allowed == () and env.image_cache is None
    assert env.insecure_registries == ()


def test_an_allowed_image_loads() -> None:
    p = Policy.from_yaml(
        "environment:\n"
        "  image: docker://registry.local/swe/task-1:latest\n"
        "  images_allowed: [docker://registry.local/swe/, oci:/data/images/]\n"
        "  image_cache: /var/cache/corral-images\n"
        "  insecure_registries: ['127.0.0.1:5000']\n"
    )
    assert p.environment.image == "docker://registry.local/swe/task-1:latest"
    assert p.environment.images_allowed == ("docker://registry.local/swe/", "oci:/data/images/")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            "environment:\n  image: docker://registry.local/swe/t:1\n",
            "p.yaml:2: environment.image: Value error, 'docker://registry.local/swe/t:1' is not in "
            "environment.images_allowed",
        ),
        (
            "environment:\n  images_allowed: [oci:/data/]\n  image: oci:/elsewhere/x:1\n",
            "p.yaml:3: environment.image: Value error, 'oci:/elsewhere/x:1' is not in",
        ),
        (
            "environment:\n  image: oci:relative\n",
            "p.yaml:2: environment.image: Value error, 'oci:relative': the path",
        ),
        (
            "environment:\n  image: busybox\n",
            "p.yaml:2: environment.image: Value error, 'busybox': unknown image",
        ),
        (
            "environment:\n  images_allowed:\n    - oci:/data/\n    - docker://docker.io/\n",
            "p.yaml:4: environment.images_allowed[1]: Value error, 'docker://docker.io/': anyone can publish",
        ),
        (
            "environment:\n  images_allowed: ['*']\n",
            "environment.images_allowed[0]: Value error, '*': wildcards",
        ),
        ("environment:\n  images_allowed: [dir:/]\n", "allowing every path on the host is refused"),
        (
            "environment:\n  image_cache: relative/dir\n",
            "p.yaml:2: environment.image_cache: Value error, must be an absolute",
        ),
        ("environment:\n  image_cache: /\n", "would expose the host"),
        (
            "environment:\n  insecure_registries: [registry.local:5000]\n",
            "p.yaml:2: environment.insecure_registries[0]: Value error, 'registry.local:5000': only loopback",
        ),
        ("environment:\n  imag: x\n", "p.yaml:2: environment.imag: unknown key"),
    ],
)
def test_errors_name_the_field_and_line(tmp_path: Path, text: str, expected: str) -> None:
    f = tmp_path / "p.yaml"
    f.write_text(text)
    with pytest.raises(PolicyError) as info:
        Policy.load(f)
    msg = str(info.value).replace(str(tmp_path) + "/", "")
    assert expected in msg, msg


def test_a_bad_allowlist_is_reported_once_not_again_for_the_image(tmp_path: Path) -> None:
    f = tmp_path / "p.yaml"
    f.write_text("environment:\n  images_allowed: ['*']\n  image: docker://busybox\n")
    with pytest.raises(PolicyError) as info:
        Policy.load(f)
    assert [p.path for p in info.value.problems] == ["environment.images_allowed[0]"]
