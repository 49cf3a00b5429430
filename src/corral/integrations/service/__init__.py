"""The node service (``corral serve``): sandboxes of one node over a Unix socket or HTTP, and its client."""

from corral.integrations.service._app import create_app, openapi_spec
from corral.integrations.service._client import RemoteSandbox, ServiceClient
from corral.integrations.service._metrics import ServiceMetrics
from corral.integrations.service._models import CreateSandbox, Health, RunCall, SandboxInfo
from corral.integrations.service._node import NodeService
from corral.integrations.service._server import DEFAULT_SOCKET, ServeConfig, serve, unix_listener

__all__ = [
    "DEFAULT_SOCKET",
    "CreateSandbox",
    "Health",
    "NodeService",
    "RemoteSandbox",
    "RunCall",
    "SandboxInfo",
    "ServeConfig",
    "ServiceClient",
    "ServiceMetrics",
    "create_app",
    "openapi_spec",
    "serve",
    "unix_listener",
]
