"""The environment of a call: never the host's; the policy's, the image's, the egress layer's, the call's."""

from __future__ import annotations

from collections.abc import Mapping

from corral.policy import Policy
from corral.sandbox._plan import INSIDE_USER

# Names an image's Env cannot override: they describe the sandbox's own user.
_OURS = ("HOME", "USER", "LOGNAME")


def call_env(
    policy: Policy, image_env: Mapping[str, str], extra: Mapping[str, str], host_env: Mapping[str, str]
) -> dict[str, str]:
    """Later wins: defaults, the policy's ``env.set``, the image's Env (it knows its own PATH), names
    passed through from the harness, then ``extra`` (egress proxy settings and the call's own env)."""
    env = {
        "HOME": policy.workspace.mount_point,
        "USER": INSIDE_USER,
        "LOGNAME": INSIDE_USER,
        "SHELL": "/bin/sh",
        "TMPDIR": "/tmp",
    }
    env.update(policy.env.set)
    env.update({k: v for k, v in image_env.items() if k not in _OURS})
    for name in policy.env.passthrough:
        if name in host_env:
            env[name] = host_env[name]
    env.update(extra)
    return env
