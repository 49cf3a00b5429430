"""What a failing skopeo or umoci says is reduced to its message, from the tools' real stderr."""

from __future__ import annotations

import socket
import subprocess
from pathlib import Path

import pytest

from corral.errors import ImageError
from corral.images._tools import run_tool, tool_message
from images_support import need


def test_messages_of_real_failures(tmp_path: Path) -> None:
    skopeo = subprocess.run(
        [need("skopeo"), "inspect", f"oci:{tmp_path}/none:x"], capture_output=True, text=True, check=False
    )
    assert skopeo.returncode != 0 and 'msg="' in skopeo.stderr  # logrus formatting, as parsed
    msg = tool_message(skopeo.stderr)
    assert msg and "msg=" not in msg and "time=" not in msg and str(tmp_path) in msg

    umoci = subprocess.run(
        [need("umoci"), "raw", "unpack", "--image", f"{tmp_path}/none:x", str(tmp_path / "r")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert umoci.returncode != 0
    msg = tool_message(umoci.stderr)
    assert msg and not msg.startswith("⨯")


def test_run_tool_names_the_reference_step_and_hint(tmp_path: Path) -> None:
    with pytest.raises(ImageError) as info:
        run_tool(
            "skopeo",
            ["inspect", f"oci:{tmp_path}/none:x"],
            ref="oci:/some/ref:1",
            what="reading it",
            hint="do this",
            timeout_s=60,
        )
    text = str(info.value)
    assert text.startswith("oci:/some/ref:1: reading it failed: ") and text.endswith("; do this")


def test_a_tool_that_hangs_is_stopped() -> None:
    # A loopback listener that never answers: skopeo waits on the TLS handshake until it is cut.
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(8)
        port = server.getsockname()[1]
        with pytest.raises(ImageError, match=r"r: w took longer than 1 s; h"):
            args = ["inspect", f"docker://127.0.0.1:{port}/x:y"]
            run_tool("skopeo", args, ref="r", what="w", hint="h", timeout_s=1)
