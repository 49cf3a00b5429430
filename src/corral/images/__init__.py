"""Images: root filesystems for sandboxes, from directories, OCI layouts, docker archives and registries.

``ImageCache`` pulls with skopeo, unpacks with umoci into a content-addressed cache on the node,
and hands the runtime an ``Image`` whose ``rootfs`` it bind-mounts read-only.
"""

from corral.images._cache import ImageCache, check_allowed, default_cache_dir
from corral.images._harden import HardenReport, harden_rootfs
from corral.images._model import CachedImage, Image, ImageLease
from corral.policy._imageref import ImageRef, image_allowed, parse_ref

__all__ = [
    "CachedImage",
    "HardenReport",
    "Image",
    "ImageCache",
    "ImageLease",
    "ImageRef",
    "check_allowed",
    "default_cache_dir",
    "harden_rootfs",
    "image_allowed",
    "parse_ref",
]
