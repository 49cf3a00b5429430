"""Policy section for the sandbox's environment: which root filesystem image calls run in."""

from __future__ import annotations

from typing import Annotated

from pydantic import AfterValidator, Field, ValidationInfo, field_validator

from corral.errors import ImageError
from corral.policy._base import Section
from corral.policy._imageref import check_loopback_registry, parse_allow_entry, parse_ref
from corral.policy._sections import SafeBind


def _allow_entry(v: str) -> str:
    try:
        parse_allow_entry(v)
    except ImageError as exc:
        raise ValueError(str(exc)) from None
    return v


def _loopback_registry(v: str) -> str:
    try:
        return check_loopback_registry(v)
    except ImageError as exc:
        raise ValueError(str(exc)) from None


# Checked one by one, so an error names the entry's index and line.
AllowEntryText = Annotated[str, AfterValidator(_allow_entry)]
LoopbackRegistry = Annotated[str, AfterValidator(_loopback_registry)]


class EnvironmentSection(Section):
    """The image a sandbox's calls run in, and which images may be used at all.

    Secure default: no image (the host's system directories, read-only) and an empty
    ``images_allowed``, so no image can be used until the policy lists it.
    """

    images_allowed: tuple[AllowEntryText, ...] = Field(
        default=(),
        description="References or prefixes (ending in '/') that may be used; anything else is refused "
        "before a sandbox starts. Empty: no image at all. Wildcards, every path ('dir:/') and whole "
        "public registries ('docker://docker.io/') are refused.",
    )
    image: str | None = Field(
        default=None,
        description="Default image: dir:PATH, oci:PATH[:TAG], docker-archive:PATH or docker://REF. "
        "Null: the host's system directories, read-only (filesystem.read_only_binds).",
    )
    image_cache: SafeBind | None = Field(
        default=None, description="Where pulled images are unpacked. Null: $CORRAL_HOME/images."
    )
    insecure_registries: tuple[LoopbackRegistry, ...] = Field(
        default=(),
        description="Loopback registries (HOST:PORT) pulled without TLS verification; nothing else.",
    )

    @field_validator("image")
    @classmethod
    def _image(cls, v: str | None, info: ValidationInfo) -> str | None:
        if v is None:
            return v
        try:
            ref = parse_ref(v)
        except ImageError as exc:
            raise ValueError(str(exc)) from None
        allowed = info.data.get("images_allowed")
        if allowed is None:  # images_allowed itself is invalid; that error is reported there
            return v
        if not any(parse_allow_entry(entry).matches(ref) for entry in allowed):
            raise ValueError(
                f"{v!r} is not in environment.images_allowed; add it (or a prefix of it ending in '/')"
            )
        return v
