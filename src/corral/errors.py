"""Corral's exception hierarchy.

Every failure of the harness itself is a ``CorralError``. They are kept apart
from the failures of the agent's own command, which are data in a
``ToolResult`` (exit code, stop reason) and never raised::

    CorralError
    ├── PolicyError              a policy file or value is invalid (names file, key path, line)
    ├── RegistryError            a name in data (action, collector, log format) is unknown
    ├── SandboxError             the sandbox could not do its job
    │   ├── SandboxUnavailableError  a required kernel feature or tool is missing, or no privileges
    │   ├── SandboxSetupError        creating the sandbox failed (nothing is left behind)
    │   ├── SandboxClosedError       the sandbox was used after destroy
    │   ├── BackendError             a backend name is unknown or its plugin failed to load
    │   └── SandboxFileError         a file operation inside the sandbox failed (names the path)
    │       ├── SandboxFileNotFoundError     (also a FileNotFoundError)
    │       ├── SandboxIsADirectoryError     (also an IsADirectoryError)
    │       ├── SandboxNotADirectoryError    (also a NotADirectoryError)
    │       ├── SandboxPermissionError       (also a PermissionError)
    │       ├── SandboxPathError             a path that leaves the sandbox's allowed view
    │       └── SandboxFileTooLargeError     a file over the policy's size cap
    ├── ImageError               an image reference is invalid, or the image cannot be pulled or unpacked
    │   └── ImageNotAllowedError     the reference is not in the policy's environment.images_allowed
    ├── EgressError              the network layer could not be set up or failed (fail closed)
    ├── StoreError               the event store could not be opened, written or queried
    ├── CollectorError           a monitoring collector could not start, or died
    ├── RuleError                a detection rule is invalid (names file and rule)
    ├── CircuitBreakerTripped    too many alerts of a level in a window; the run must stop
    └── InputError               malformed user input (a command, a log, a trace, a query)
"""

from __future__ import annotations

from dataclasses import dataclass, field


class CorralError(Exception):
    """Base of every error Corral raises about itself."""


@dataclass(frozen=True)
class Problem:
    """One problem found in a data file: where it is and what is wrong."""

    message: str
    file: str | None = None
    path: str | None = None  # dotted key path, e.g. "resources.memory_max_bytes"
    line: int | None = None

    def __str__(self) -> str:
        where = self.file or "<policy>"
        if self.line is not None:
            where += f":{self.line}"
        if self.path:
            where += f": {self.path}"
        return f"{where}: {self.message}"


@dataclass
class PolicyError(CorralError):
    """A policy could not be loaded; ``problems`` lists every error found in one pass."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems) or "invalid policy"


class RegistryError(CorralError):
    """A type named in data is not registered."""


class SandboxError(CorralError):
    """The sandbox failed as a harness (not the agent's command failing)."""


class SandboxUnavailableError(SandboxError):
    """A kernel feature, tool or privilege the sandbox needs is missing."""


class SandboxSetupError(SandboxError):
    """Creating a sandbox or a call's confinement failed; what was made is undone."""


class SandboxClosedError(SandboxError):
    """The sandbox was used after it was destroyed."""


class ImageError(CorralError):
    """An image reference is malformed, or the image could not be pulled, unpacked or used.

    The message names the reference and what to do; nothing half-made is left in the cache.
    """


class ImageNotAllowedError(ImageError):
    """The image is not in ``environment.images_allowed``; refused before anything is fetched."""


class BackendError(SandboxError):
    """A sandbox backend named in configuration is unknown, or its plugin failed to load."""


class SandboxFileError(SandboxError):
    """A file operation inside a sandbox failed; the message names the path as the sandbox sees it."""


class SandboxFileNotFoundError(SandboxFileError, FileNotFoundError):
    """The path does not exist inside the sandbox."""


class SandboxIsADirectoryError(SandboxFileError, IsADirectoryError):
    """A file was expected, the path is a directory."""


class SandboxNotADirectoryError(SandboxFileError, NotADirectoryError):
    """A directory was expected, the path is not one."""


class SandboxPermissionError(SandboxFileError, PermissionError):
    """The sandbox's uid may not do this to the path (or the file system is read-only there)."""


class SandboxPathError(SandboxFileError):
    """The path leaves what the policy lets the harness touch (``..``, or outside the workspace)."""


class SandboxFileTooLargeError(SandboxFileError):
    """A file or transfer exceeds the policy's ``files`` caps."""


class EgressError(CorralError):
    """The egress layer could not be set up, or failed; traffic stays denied."""


class StoreError(CorralError):
    """The event store could not be opened, written or queried.

    Raised to the trainer for a call that was refused because events could no longer be recorded;
    ``result`` then holds that call's blocked ``ToolResult`` (``stop_reason="store_failure"``).
    """

    result: object | None = None


class CollectorError(CorralError):
    """A monitoring collector could not start, or died; its calls are not observed (fail closed)."""


@dataclass
class RuleError(CorralError):
    """A detection rule could not be loaded."""

    problems: list[Problem] = field(default_factory=list)

    def __str__(self) -> str:
        return "\n".join(str(p) for p in self.problems) or "invalid rule"


class CircuitBreakerTripped(CorralError):
    """Alerts at or above a level exceeded the policy's threshold in its window (action: raise)."""


class InputError(CorralError):
    """Malformed input given to Corral: a command, a log line, a trace, a query."""
