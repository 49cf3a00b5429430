"""Policy section for network egress (default: no network at all)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from corral.policy._base import Section


class NetworkSection(Section):
    mode: Literal["none", "allowlist"] = Field(
        default="none", description="none: no network interface but loopback. allowlist: egress via the proxy."
    )
