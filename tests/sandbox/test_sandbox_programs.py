"""A program allowlist is enforced by what is mounted, never by reading the command text."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from corral import Policy, Sandbox


@pytest.fixture
def allow_sb(policy: Policy) -> Iterator[Sandbox]:
    p = policy.with_overrides(programs={"allow": ["sh", "cat", "cp", "ls", "echo", "python3", "chmod"]})
    with Sandbox(p) as sb:
        yield sb


def test_allowed_programs_run(allow_sb: Sandbox) -> None:
    r = allow_sb.run("echo hi > f && cat f && ls")
    assert r.exit_code == 0 and r.stdout == "hi\nf\n"


def test_program_outside_the_allowlist_does_not_exist(allow_sb: Sandbox) -> None:
    r = allow_sb.run("id; whoami; /usr/bin/id; env")
    assert r.exit_code != 0
    assert "uid=" not in r.stdout


def test_copied_binary_cannot_execute(allow_sb: Sandbox) -> None:
    # Bring a binary in the only ways an agent could: copy an allowed one, or write bytes.
    r = allow_sb.run("cp /usr/bin/cat ./mycat && chmod +x ./mycat && ./mycat /etc/hostname; echo rc=$?")
    assert "rc=0" not in r.stdout
    r = allow_sb.run("cp /usr/bin/cat /tmp/c && chmod +x /tmp/c && /tmp/c /etc/hostname; echo rc=$?")
    assert "rc=0" not in r.stdout
    r = allow_sb.run(
        "cp /usr/bin/cat /dev/shm/c && chmod +x /dev/shm/c && /dev/shm/c /etc/hostname; echo rc=$?"
    )
    assert "rc=0" not in r.stdout


def test_interpreter_path_tricks_fail(allow_sb: Sandbox) -> None:
    # The dynamic loader maps a copied ELF without execve: the noexec workspace stops it.
    r = allow_sb.run("cp /usr/bin/cat ./c; /lib64/ld-linux-x86-64.so.2 ./c /etc/hostname; echo rc=$?")
    assert "rc=0" not in r.stdout
    # A script with a shebang on the workspace cannot be executed either.
    r = allow_sb.run("printf '#!/bin/sh\\necho RAN\\n' > s.sh; chmod +x s.sh; ./s.sh; echo rc=$?")
    assert "RAN" not in r.stdout
    # Python cannot reach a program that is not mounted, nor run code from an anonymous file.
    code = (
        "import os\n"
        "for p in ('/usr/bin/id', '/bin/id', '/usr/sbin/nologin'):\n"
        "    try:\n"
        "        os.execv(p, [p])\n"
        "    except OSError as e:\n"
        "        print('denied', p, e.errno)\n"
        "try:\n"
        "    fd = os.memfd_create('x')\n"
        "    print('MEMFD')\n"
        "except OSError as e:\n"
        "    print('memfd denied', e.errno)\n"
    )
    r = allow_sb.run(["python3", "-c", code])
    assert r.stdout.count("denied") == 4 and "MEMFD" not in r.stdout, r.stdout + r.stderr


def test_unknown_program_in_allowlist_is_a_setup_error(policy: Policy) -> None:
    from corral.errors import SandboxSetupError

    p = policy.with_overrides(programs={"allow": ["sh", "definitely-not-a-program"]})
    with pytest.raises(SandboxSetupError, match="definitely-not-a-program"):
        Sandbox(p)
