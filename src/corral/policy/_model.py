"""The Policy: one frozen, validated object built from YAML or defaults."""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationInfo, field_validator

from corral.policy._base import Section
from corral.policy._detection import DetectionSection
from corral.policy._environment import EnvironmentSection
from corral.policy._gpu import GpuSection
from corral.policy._monitoring import MonitoringSection
from corral.policy._network import NetworkSection
from corral.policy._response import ResponseSection
from corral.policy._sections import (
    EnvSection,
    FilesSection,
    FilesystemSection,
    IdentitySection,
    ProcessesSection,
    ProgramsSection,
    ResourcesSection,
    StoreSection,
    WorkspaceSection,
)


class Policy(Section):
    """Everything that decides what a sandboxed tool call may do. Secure by default."""

    version: Literal[1] = 1
    name: str = "unnamed"
    workspace: WorkspaceSection = Field(default_factory=WorkspaceSection)
    filesystem: FilesystemSection = Field(default_factory=FilesystemSection)
    resources: ResourcesSection = Field(default_factory=ResourcesSection)
    processes: ProcessesSection = Field(default_factory=ProcessesSection)
    network: NetworkSection = Field(default_factory=NetworkSection)
    gpu: GpuSection = Field(default_factory=GpuSection)
    programs: ProgramsSection = Field(default_factory=ProgramsSection)
    files: FilesSection = Field(default_factory=FilesSection)
    env: EnvSection = Field(default_factory=EnvSection)
    environment: EnvironmentSection = Field(default_factory=EnvironmentSection)
    identity: IdentitySection = Field(default_factory=IdentitySection)
    store: StoreSection = Field(default_factory=StoreSection)
    detection: DetectionSection = Field(default_factory=DetectionSection)
    monitoring: MonitoringSection = Field(default_factory=MonitoringSection)
    response: ResponseSection = Field(default_factory=ResponseSection)

    @field_validator("monitoring")
    @classmethod
    def _granted_gpus_are_watched(cls, v: MonitoringSection, info: ValidationInfo) -> MonitoringSection:
        gpu = info.data.get("gpu")
        if isinstance(gpu, GpuSection) and gpu.granted and not v.gpu:
            raise ValueError("gpu: false, but gpu.devices grants GPUs: a granted GPU must be watched (NVML)")
        return v

    @classmethod
    def load(cls, path: str | Path) -> Policy:
        from corral.policy._loader import load_policy_file

        return load_policy_file(path)

    @classmethod
    def from_yaml(cls, text: str, source: str = "<string>") -> Policy:
        from corral.policy._loader import load_policy_text

        return load_policy_text(text, source)

    @classmethod
    def default(cls) -> Policy:
        """The embedded default policy (``policies/default.yaml`` in the source tree)."""
        text = resources.files("corral.data").joinpath("default.yaml").read_text("utf-8")
        return cls.from_yaml(text, source="<embedded default.yaml>")

    def with_overrides(self, **sections: dict[str, Any]) -> Policy:
        """A copy with some section fields replaced, validated again."""
        data = self.model_dump()
        for name, fields in sections.items():
            data[name] = {**data[name], **fields}
        return Policy.model_validate(data)


def policy_json_schema() -> str:
    return json.dumps(Policy.model_json_schema(), indent=2, sort_keys=True)


def policy_warnings(policy: Policy) -> list[str]:
    """Valid but risky settings, which ``corral policy check`` prints (naming the key)."""
    out: list[str] = []
    if policy.workspace.writable_host_path is not None:
        out.append(
            f"workspace.writable_host_path: the agent writes {policy.workspace.writable_host_path} "
            "on the host in place; use workspace.template (copy-on-write) unless the writes must persist"
        )
    if policy.processes.lifetime == "episode":
        out.append(
            "processes.lifetime: episode lets a call leave processes running until the sandbox closes "
            "(they stay monitored); use call unless tasks need services"
        )
    if policy.filesystem.image_root == "copy_on_write":
        out.append(
            "filesystem.image_root: copy_on_write lets the agent change its image's files for later calls "
            "of the episode; keep graders outside the sandbox"
        )
    return out
