"""Fixtures for the image tests live in ``images_support`` (tests import helpers from there)."""

from images_support import big_image, busybox_image, registry

__all__ = ["big_image", "busybox_image", "registry"]
