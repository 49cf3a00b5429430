"""Fixtures for the egress tests live in ``egress_support`` (a unique module name: several test
directories have a ``conftest``, so tests import helpers from there, not from ``conftest``)."""

from egress_support import metadata, outside, private_host, run_in, tls_cert

__all__ = ["metadata", "outside", "private_host", "run_in", "tls_cert"]
