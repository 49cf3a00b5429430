"""Policy: what a sandboxed tool call may do, validated from YAML into frozen typed objects."""

from corral.policy._detection import Action, DetectionSection
from corral.policy._environment import EnvironmentSection
from corral.policy._gpu import GpuSection
from corral.policy._loader import load_policy_file, load_policy_text
from corral.policy._model import Policy, policy_json_schema, policy_warnings
from corral.policy._monitoring import MonitoringSection
from corral.policy._network import NetworkSection
from corral.policy._response import (
    AttributedSection,
    CircuitBreakerSection,
    EndEpisodeSection,
    GroupingSection,
    PenaltySection,
    QuarantineSection,
    ResponseSection,
    SinkConfig,
    StdoutSinkConfig,
    SyslogSinkConfig,
    WebhookSinkConfig,
)
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

__all__ = [
    "Action",
    "AttributedSection",
    "CircuitBreakerSection",
    "DetectionSection",
    "EndEpisodeSection",
    "EnvSection",
    "EnvironmentSection",
    "FilesSection",
    "FilesystemSection",
    "GpuSection",
    "GroupingSection",
    "IdentitySection",
    "MonitoringSection",
    "NetworkSection",
    "PenaltySection",
    "Policy",
    "ProcessesSection",
    "ProgramsSection",
    "QuarantineSection",
    "ResourcesSection",
    "ResponseSection",
    "SinkConfig",
    "StdoutSinkConfig",
    "StoreSection",
    "SyslogSinkConfig",
    "WebhookSinkConfig",
    "WorkspaceSection",
    "load_policy_file",
    "load_policy_text",
    "policy_json_schema",
    "policy_warnings",
]
