"""``corral image pull|ls|rm``: the node's image cache."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import typer

from corral.cli._app import app, fail
from corral.cli._common import load_policy
from corral.errors import CorralError

if TYPE_CHECKING:
    from corral.images import Image, ImageCache

image_app = typer.Typer(help="Manage the node's image cache (pull, list, remove).", no_args_is_help=True)
app.add_typer(image_app, name="image")

_POLICY = typer.Option(
    None, "--policy", "-p", help="Policy YAML (its environment section); default: embedded."
)
_CACHE = typer.Option(
    None, "--cache", help="Cache directory (default: the policy's, or $CORRAL_HOME/images)."
)
_LOCAL = ("dir:", "oci:", "docker-archive:")


def _cache(policy: Path | None, cache: Path | None) -> ImageCache:
    from corral.images import ImageCache

    pol = load_policy(policy)
    if cache is None:
        return ImageCache.for_policy(pol)
    return ImageCache(cache, insecure_registries=pol.environment.insecure_registries)


def absolute_ref(text: str) -> str:
    """Local paths given on the command line may be relative to the current directory."""
    for prefix in _LOCAL:
        if text.startswith(prefix):
            path = text.removeprefix(prefix)
            if path and not path.startswith("/"):
                return prefix + os.path.abspath(path)
    return text


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} GiB"


def _image_json(image: Image) -> dict[str, object]:
    return {
        "ref": str(image.ref),
        "digest": image.digest,
        "source_digest": image.source_digest,
        "rootfs": str(image.rootfs),
        "size_bytes": image.size_bytes,
        "env": dict(image.env),
        "working_dir": image.working_dir,
        "user": image.user,
    }


@image_app.command("pull")
def pull(
    ref: str = typer.Argument(..., help="dir:PATH, oci:PATH[:TAG], docker-archive:PATH or docker://REF"),
    policy: Path | None = _POLICY,
    cache: Path | None = _CACHE,
    as_json: bool = typer.Option(False, "--json", help="Print the image as one JSON object."),
) -> None:
    """Fetch and unpack an image into the cache (again from its source if it is there already)."""
    try:
        image = _cache(policy, cache).pull(absolute_ref(ref))
    except CorralError as exc:
        fail(exc)
    if as_json:
        typer.echo(json.dumps(_image_json(image)))
        return
    pin = f" (manifest {image.source_digest})" if image.source_digest else ""
    typer.echo(f"{image.ref}: {image.digest or 'directory'}{pin}, {_size(image.size_bytes)}")
    typer.echo(f"  rootfs {image.rootfs}")


@image_app.command("ls")
def ls(
    policy: Path | None = _POLICY,
    cache: Path | None = _CACHE,
    as_json: bool = typer.Option(False, "--json", help="One JSON line per cached image."),
) -> None:
    """List the cached images with their references, sizes and whether a sandbox holds them."""
    try:
        images = _cache(policy, cache).ls()
    except CorralError as exc:
        fail(exc)
    if as_json:
        for im in images:
            typer.echo(
                json.dumps(
                    {
                        "digest": im.digest,
                        "refs": list(im.refs),
                        "rootfs": str(im.rootfs),
                        "size_bytes": im.size_bytes,
                        "unpacked_at": im.unpacked_at,
                        "in_use": im.in_use,
                    }
                )
            )
        return
    from rich.console import Console
    from rich.table import Table

    table = Table(show_edge=False, pad_edge=False)
    for col in ("digest", "size", "in use", "unpacked", "references"):
        table.add_column(col, overflow="fold")
    for im in images:
        when = time.strftime("%Y-%m-%d %H:%M", time.localtime(im.unpacked_at))
        table.add_row(
            im.digest[:19], _size(im.size_bytes), "yes" if im.in_use else "", when, "\n".join(im.refs)
        )
    Console(highlight=False).print(table)


@image_app.command("rm")
def rm(
    ref: str = typer.Argument(
        ..., help="A reference, or a digest (sha256:...) to remove that image entirely."
    ),
    policy: Path | None = _POLICY,
    cache: Path | None = _CACHE,
) -> None:
    """Forget a reference; its image is deleted when no other reference needs it and no sandbox holds it."""
    try:
        removed = _cache(policy, cache).rm(absolute_ref(ref))
    except CorralError as exc:
        fail(exc)
    kept = " (its image stays: other references use it)"
    typer.echo(f"{ref}: removed" + (f"; deleted {', '.join(removed)}" if removed else kept))
