"""Records that rules see for a tool call, derived from its analysis.

A tool call yields one ``tool_call`` record (the whole text plus what analysis
found), one ``process_creation`` record per simple command it would start (same
fields as the exec collector's ``process_start`` events, so process rules apply
unchanged), and one ``file_event`` record per file it would write, delete or
change.

``tool_call`` fields (``product: corral, category: tool_call``):

- ``CommandLine``: the text as the agent wrote it.
- ``Expanded``: that text plus every payload found in it (``sh -c`` strings,
  interpreter code, heredoc bodies, decoded base64/hex/rot13), one per line.
  Match content here so that obfuscation does not hide it.
- ``Image``: basename of the first program; ``Images``: basenames of every program
  it would start, wrappers and nested payloads included (multi-valued).
- ``Pipelines``: each pipeline's programs joined by ``|``, e.g. ``curl|bash`` (multi-valued).
- ``Obfuscation``: techniques undone (base64, hex, rev, rot13, ansi_c, printf_escapes, variables).
- ``Language``: ``shell`` or the code tool's language; ``Incomplete``: unbalanced quotes or heredoc.
"""

from __future__ import annotations

import re
from typing import Any

from corral.detect._analyze import Analysis, basename
from corral.detect._effects import effects
from corral.detect._wrappers import interpreter_key, shell_key

_BRACKET_RE = re.compile(r"\[([A-Za-z0-9])\]")

# Fields holding several values: a rule matches when any value does.
MULTI_FIELDS = frozenset(
    {
        "Images",
        "Pipelines",
        "Obfuscation",
        "argv",
        "answers",
        "tags",
        "Effects",
        "Connects",
        "CredentialPaths",
    }
    | {"PersistencePaths", "KeyMentions"}
)

CANONICAL_FIELDS = (
    "type",
    "CommandLine",
    "Expanded",
    "Image",
    "Images",
    "Pipelines",
    "Obfuscation",
    "Language",
    "Incomplete",
    "ParentImage",
    "ParentCommandLine",
    "User",
    "CurrentDirectory",
    "ProcessId",
    "TargetFilename",
    "Operation",
    "Contents",
    "DestinationIp",
    "DestinationPort",
    "DestinationHostname",
    "SourceIp",
    "SourcePort",
    "Protocol",
    "Initiated",
    "QueryName",
    "QueryType",
    "decision",
    "rule",
    "layer",
    "sandbox_id",
    "episode_id",
    "run_id",
    "host",
    "Source",
    "Privileged",
    "argv",
    "Effects",
    "Connects",
    "CredentialPaths",
    "PersistencePaths",
    "KeyMentions",
    "ArgvName",
    "Renamed",
    "ScriptFromStdin",
)
CANONICAL = {name.lower(): name for name in CANONICAL_FIELDS}


def image_path(argv0: str) -> str:
    """A program as written, as an absolute-looking path so ``Image|endswith: /nc`` works for ``nc``."""
    return argv0 if "/" in argv0 else "/usr/bin/" + argv0


def records(a: Analysis, envelope: dict[str, Any], language: str) -> dict[str, list[dict[str, Any]]]:
    images = tuple(dict.fromkeys(c.name for c in a.commands if c.argv))
    expanded = a.text
    if a.payloads:
        expanded += "\n" + "\n".join(dict.fromkeys(text for _, text in a.payloads))
    if "[" in a.text:  # grep '[x]mrig' / '[a]liyun': the self-excluding grep trick hides the name
        unbracketed = _BRACKET_RE.sub(r"\1", a.text)
        if unbracketed != a.text:
            expanded += "\n" + unbracketed
    eff = effects(a)
    tool = {
        **envelope,
        "type": "tool_call",
        "CommandLine": a.text,
        "Expanded": expanded,
        "Image": images[0] if images else "",
        "Images": images,
        "Pipelines": tuple(dict.fromkeys("|".join(p) for p in a.pipelines)),
        "Obfuscation": tuple(sorted(a.obfuscation)),
        "Language": language,
        "Incomplete": a.incomplete,
        "Effects": tuple(sorted(eff.names)),
        "Connects": tuple(dict.fromkeys(eff.connects)),
        "CredentialPaths": tuple(dict.fromkeys(eff.credential_paths)),
        "KeyMentions": tuple(dict.fromkeys(eff.key_mentions)),
        "PersistencePaths": tuple(dict.fromkeys(eff.persistence_paths)),
    }
    procs = []
    for c in a.commands:
        if not c.argv:
            continue
        procs.append(
            {
                **envelope,
                "type": "process_start",
                "Image": image_path(c.argv[0]),
                "CommandLine": " ".join(c.argv),
                "argv": c.argv,
                "ParentImage": image_path(c.parent[0]) if c.parent else None,
                "ParentCommandLine": " ".join(c.parent) if c.parent else None,
                "User": "root" if c.privileged else None,
                "Source": c.source,
                "Privileged": c.privileged,
            }
        )
        enrich_process(procs[-1])
    files = [
        {
            **envelope,
            "type": "file_event",
            "TargetFilename": f.path,
            "Operation": f.op,
            "Image": image_path(f.argv[0]) if f.argv else "",
            "CommandLine": " ".join(f.argv),
            "Contents": f.contents,
        }
        for f in a.files
    ]
    return {"tool_call": [tool], "process_creation": procs, "file_event": files}


_SCRIPT_FLAGS = frozenset({"-c", "-e", "-E", "-r", "--eval", "-m", "--command"})


def enrich_process(rec: dict[str, Any]) -> None:
    """Exec-level facts rules can match on any process record (runtime or synthetic).

    ``ArgvName``: the program name the process gave itself (argv[0]); ``Renamed``: it differs
    from the file that was executed (``exec -a``, prctl tricks seen at exec); ``ScriptFromStdin``:
    a shell or interpreter started with no script, no inline code: it reads its program from
    standard input, a pipe when a tool call runs it.
    """
    argv = rec.get("argv") or ()
    image = rec.get("Image") or ""
    if not argv or not isinstance(image, str) or not isinstance(argv[0], str):
        return
    name = argv[0]
    shown = basename(name).lstrip("-")
    real = basename(image)
    rec["ArgvName"] = name
    rec["Renamed"] = (
        bool(shown)
        and not (real == shown or real.startswith(shown) or shown.startswith(real) or real == "busybox")
    ) or not shown
    if shell_key(real) or interpreter_key(real) is not None:
        rest = [str(x) for x in argv[1:]]
        flags = [x for x in rest if x.startswith("-") and x != "-"]
        operands = [x for x in rest if not x.startswith("-") or x == "-"]
        inline = any(f in _SCRIPT_FLAGS or (f[1:2] != "-" and f[-1:] in "ce" and len(f) <= 4) for f in flags)
        rec["ScriptFromStdin"] = not inline and (not operands or operands[0] == "-" or "-s" in flags)
