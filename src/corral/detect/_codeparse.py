"""Shell commands and encoded blobs inside interpreter code (Python, Perl, Ruby, Node, PHP, Lua, awk).

Not a parser for each language: a scanner for the call shapes that start a
process (``os.system("...")``, ``subprocess.call(["/bin/sh", "-i"])``,
``pty.spawn("/bin/bash")``, Perl/Ruby backticks and ``qx``, ``child_process.exec``,
PHP ``shell_exec``, awk ``system()``) and for base64 string literals that the
code decodes. What they yield is analysed as shell by the caller.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from corral.detect._decode import b64, unhex

_STR = r"""(?:'(?:[^'\\\n]|\\.)*'|"(?:[^"\\\n]|\\.)*")"""
_STR_RE = re.compile(_STR)
_CALLS = (
    r"system|popen[23]?|exec[lv]?p?e?|spawn[lv]?p?e?|spawnSync|execSync|execFile(?:Sync)?|"
    r"call|check_call|check_output|run|Popen|getoutput|getstatusoutput|shell_exec|passthru|proc_open|"
    r"pcntl_exec|popen3|capture[23]e?|pipeline|execute|spawn|callCommand|spawnCommand|rawSystem"
)
_CALL_RE = re.compile(r"(?<!\w)(?:" + _CALLS + r")\s*(?:\(\s*|\s+(?=['\"]))")
_BACKTICK_RE = re.compile(r"`([^`\n]{2,})`|\bqx\s*[({\[/]([^)}\]/]+)[)}\]/]|%x\(([^)]+)\)")
_B64_CALL_RE = re.compile(
    r"(?:b64decode|decodebytes|decode_base64|base64_decode|base64\.decode|atob|unpack1?\s*\(?\s*['\"]m0?['\"]\s*,?|"
    r"Base64\.decode64|Base64\.strict_decode64|from_base64|fromBase64)\s*\(?\s*[\w.]*\(?\s*(" + _STR + r")"
)
_BUFFER_RE = re.compile(r"Buffer\.from\s*\(\s*(" + _STR + r")\s*,\s*['\"]base64['\"]")
# Hex string literals decoded: Ruby ["..."].pack("H*"), Perl pack("H*", "..."), Python
# bytes.fromhex / binascii.unhexlify, PHP hex2bin, Node Buffer.from(..., "hex").
_HEX_CALL_RE = re.compile(
    r"\[\s*(" + _STR + r")\s*\]\s*\.pack\(\s*['\"]H\*['\"]|\bpack\s*\(\s*['\"]H\*['\"]\s*,\s*(" + _STR + r")"
    r"|(?:bytes\.fromhex|unhexlify|hex2bin)\s*\(\s*b?(" + _STR + r")"
    r"|Buffer\.from\s*\(\s*(" + _STR + r")\s*,\s*['\"]hex['\"]"
)
_ESC = {"n": "\n", "t": "\t", "r": "\r", "0": "\0", "\\": "\\", "'": "'", '"': '"'}


def unquote(lit: str) -> str:
    body = lit[1:-1]
    if "\\" not in body:
        return body
    out: list[str] = []
    i = 0
    while i < len(body):
        c = body[i]
        if c == "\\" and i + 1 < len(body):
            e = body[i + 1]
            if e == "x" and i + 3 < len(body) + 1:
                try:
                    out.append(chr(int(body[i + 2 : i + 4], 16)))
                    i += 4
                    continue
                except ValueError:
                    pass
            out.append(_ESC.get(e, "\\" + e))
            i += 2
            continue
        out.append(c)
        i += 1
    return "".join(out)


def _args_at(code: str, pos: int) -> tuple[str, ...] | None:
    """String literals of a call's first argument: one string, or a list/array of strings."""
    rest = code[pos : pos + 4096]
    if rest.startswith(("[", "{", "(")):
        close = {"[": "]", "{": "}", "(": ")"}[rest[0]]
        end = rest.find(close)
        inner = rest[1 : end if end > 0 else len(rest)]
        found = tuple(unquote(m.group(0)) for m in _STR_RE.finditer(inner))
        return found or None
    m = _STR_RE.match(rest)
    if m is None:
        return None
    first = unquote(m.group(0))
    # Perl/PHP/Ruby system("sh", "-c", "...") : several strings separated by commas.
    items: list[str] = [first]
    tail = rest[m.end() :]
    while True:
        nxt = re.match(r"\s*,\s*(" + _STR + r")", tail)
        if nxt is None:
            break
        items.append(unquote(nxt.group(1)))
        tail = tail[nxt.end() :]
    return tuple(items)


def code_shell_calls(code: str) -> Iterator[str | tuple[str, ...]]:
    """Shell text (``str``) or an argv (``tuple``) for each process-starting call found."""
    for m in _CALL_RE.finditer(code):
        args = _args_at(code, m.end())
        if not args:
            continue
        if len(args) == 1:
            yield args[0]
        else:
            yield args
    for m in _BACKTICK_RE.finditer(code):
        text = m.group(1) or m.group(2) or m.group(3)
        if text:
            yield text


# Files code writes, appends or deletes by a literal path, in the languages agents reach for.
# (pattern, operation; ``mode`` groups decide write or append where the call takes one)
_Q = r"(['\"])(?P<path>[^'\"\n]{1,300})\1"
_FILE_CALLS: tuple[tuple[re.Pattern[str], str], ...] = (
    # Python open(path, mode), io/codecs open; Ruby File.open(path, mode)
    (
        re.compile(
            r"\b(?:io\.|codecs\.|File\.)?open\(\s*" + _Q + r"\s*,\s*(['\"])(?P<mode>[rwaxb+t]{1,4})\3"
        ),
        "mode",
    ),
    (re.compile(r"\bPath\(\s*" + _Q + r"\s*\)\.(write_text|write_bytes)\("), "write"),
    (re.compile(r"\b(?:fs\.)?(?:writeFileSync|writeFile|promises\.writeFile)\(\s*" + _Q), "write"),
    (re.compile(r"\b(?:fs\.)?(?:appendFileSync|appendFile)\(\s*" + _Q), "append"),
    (re.compile(r"\bFile\.(?:write|binwrite)\(\s*" + _Q), "write"),
    (re.compile(r"\bfile_put_contents\(\s*" + _Q + r"(?P<append>[^;\n]*FILE_APPEND)?"), "write"),
    # Perl open(FH, ">path") / open(my $fh, '>>', 'path')
    (
        re.compile(
            r"\bopen\s*\(?\s*(?:my\s+)?\$?\w+\s*,\s*(['\"])(?P<mode>>>?)\s*(?P<path>[^'\"\n]{1,300})\1"
        ),
        "mode",
    ),
    (
        re.compile(
            r"\b(?:os\.(?:remove|unlink)|shutil\.rmtree|fs\.(?:unlinkSync|rmSync)|File\.delete|unlink)\(\s*"
            + _Q
        ),
        "delete",
    ),
)


def code_file_writes(code: str) -> Iterator[tuple[str, str]]:
    """(path, operation) for each file the code writes, appends, truncates or deletes by a literal."""
    for rx, op in _FILE_CALLS:
        for m in rx.finditer(code):
            path = m.group("path")
            if op == "mode":
                mode = m.group("mode")
                if ">>" in mode or "a" in mode:
                    yield path, "append"
                elif ">" in mode or "w" in mode or "x" in mode or "+" in mode:
                    yield path, "write"
            elif op == "write" and m.groupdict().get("append"):
                yield path, "append"
            else:
                yield path, op


def decode_literals(code: str) -> Iterator[tuple[str, str]]:
    """How and what: the texts of base64 and hex string literals the code decodes."""
    for rx in (_B64_CALL_RE, _BUFFER_RE):
        for m in rx.finditer(code):
            text = b64(unquote(m.group(1)), min_len=4)  # an explicit decode call: short is fine
            if text is not None:
                yield "base64", text
    for m in _HEX_CALL_RE.finditer(code):
        lit = next(g for g in m.groups() if g is not None)
        text = unhex(unquote(lit))
        if text is not None:
            yield "hex", text
