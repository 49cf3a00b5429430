"""The image fixtures live in ``tests/images_support.py`` (shared with the sandbox tests)."""

from images_support import big_image, busybox_image, registry

__all__ = ["big_image", "busybox_image", "registry"]
