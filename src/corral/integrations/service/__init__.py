"""The node service (``corral serve``): sandboxes of one node over a Unix socket or HTTP, and its clients.

``AsyncRemoteSandbox`` and ``RemoteSandbox`` have exactly the interface of
``corral.AsyncSandbox`` and ``corral.Sandbox``.
"""

from corral.integrations.service._app import create_app, openapi_spec
from corral.integrations.service._client import AsyncServiceClient, ServiceClient
from corral.integrations.service._metrics import ServiceMetrics
from corral.integrations.service._models import (
    CreateSandbox,
    Health,
    RunCall,
    SandboxInfo,
    StreamChunk,
    StreamError,
    StreamResult,
)
from corral.integrations.service._node import NodeService
from corral.integrations.service._remote import AsyncRemoteSandbox, RemoteSandbox
from corral.integrations.service._server import DEFAULT_SOCKET, ServeConfig, serve, unix_listener

__all__ = [
    "DEFAULT_SOCKET",
    "AsyncRemoteSandbox",
    "AsyncServiceClient",
    "CreateSandbox",
    "Health",
    "NodeService",
    "RemoteSandbox",
    "RunCall",
    "SandboxInfo",
    "ServeConfig",
    "ServiceClient",
    "ServiceMetrics",
    "StreamChunk",
    "StreamError",
    "StreamResult",
    "create_app",
    "openapi_spec",
    "serve",
    "unix_listener",
]
