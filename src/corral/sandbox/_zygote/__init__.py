"""The zygote: a small root process that builds sandboxes' namespaces and forks every call into them.

It imports nothing but the standard library, so it starts in milliseconds with
``python -I -S`` and forks cheaply. It holds no state about sandboxes: the
harness keeps each sandbox's namespace file descriptors and hands them over with
every request, so a sandbox lives exactly as long as its owner holds them.
"""
