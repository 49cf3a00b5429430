"""The node service: start `sudo corral serve` (Unix socket /run/corral/corral.sock, mode 0660),
then an unprivileged trainer in the socket's group uses RemoteSandbox like a local Sandbox.
"""

from corral import TraceContext
from corral.integrations.service import RemoteSandbox

with RemoteSandbox() as sb:
    r = sb.run("python3 -c 'print(6*7)'", ctx=TraceContext(run_id="r1", episode_id="e1"), timeout=30)
    print(r.exit_code, r.stdout, r.blocked, r.alerts)
