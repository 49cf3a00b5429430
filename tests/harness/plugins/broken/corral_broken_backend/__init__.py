"""A plugin whose import fails, as a broken installation's would."""

raise ImportError("corral_broken_backend needs libfirecracker, which is not installed")
