"""A compiled rule set cached on disk, so a one-shot ``corral scan`` does not parse YAML every time.

The cache holds data only (JSON): each rule's condition as an expression over prepared
field variables, the constants it uses (strings, sets, regex patterns, networks), and the
rule metadata. Nothing in it is trusted as code:

- every expression is parsed with ``ast`` and must consist only of the node shapes our own
  compiler emits (boolean logic, comparisons, ``K[i]`` constants, the matcher's variables and
  a fixed set of helper calls); anything else and the cache is rebuilt from the rule files;
- the cache file and its folder must belong to this process's user and not be writable by
  group or others, or the cache is not read (and not written);
- the key is a hash of every rule file's path and content, the overrides, and the engine
  version (the source of the compiler modules and pySigma's version), so an edited rule or an
  upgraded Corral compiles afresh; a file that fails to decode or validate is rebuilt.
"""

from __future__ import annotations

import ast
import hashlib
import importlib.util
import ipaddress
import json
import os
import sys
import tempfile
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from corral.detect._compile import DualRegex

FORMAT = 2  # 2: each rule carries its literal gate
_ENGINE_MODULES = (
    "_compile.py",
    "_builder.py",
    "_loader.py",
    "_records.py",
    "_correlation.py",
    "_cache.py",
    "_prefilter.py",
)
_HELPER_CALLS = frozenset({"cidr", "cmp", "anyin", "bool", "any"})
_METHODS = frozenset({"search", "fullmatch", "startswith", "endswith"})
_VAR_PREFIXES = ("l", "s", "v", "b")


class CacheInvalid(Exception):
    """The cached data is not what this engine writes; rebuild from the rule files."""


def engine_version() -> str:
    # The interpreter too: a cached pattern is compiled by this Python's ``re`` on first use.
    h = hashlib.sha256(f"format={FORMAT}\0{sys.version}".encode())
    here = Path(__file__).parent
    for name in _ENGINE_MODULES:
        h.update(name.encode() + b"\0" + (here / name).read_bytes())
    h.update(_pysigma_release().encode())
    return h.hexdigest()


def _pysigma_release() -> str:
    """pySigma's dist-info folder name (it holds the version): a rule parsed by another release may
    compile differently. Read off the folder beside the package: ``importlib.metadata`` costs a
    one-shot command 20 ms to import and scans every installed distribution."""
    spec = importlib.util.find_spec("sigma")  # a namespace package: its folders, nothing imported
    for folder in spec.submodule_search_locations or () if spec else ():
        site = Path(folder).parent
        try:
            names = sorted(
                n for n in os.listdir(site) if n.lower().startswith("pysigma-") and n.endswith(".dist-info")
            )
        except OSError:
            continue
        if names:
            return names[-1]
    return "pysigma-unknown"


def cache_key(files: Sequence[Path], overrides: str, engine: str) -> str:
    h = hashlib.sha256(engine.encode() + b"\0" + overrides.encode())
    for f in files:
        h.update(str(f).encode() + b"\0")
        try:
            h.update(hashlib.sha256(f.read_bytes()).digest())
        except OSError:
            h.update(b"<unreadable>")
    return h.hexdigest()


def cache_dir() -> Path:
    home = os.environ.get("CORRAL_HOME") or os.path.join(os.path.expanduser("~"), ".corral")
    return Path(home) / "cache" / "rules"


def _private(path: Path) -> bool:
    """Owned by this user and not writable by anyone else: nobody else could have planted it."""
    try:
        st = path.lstat()
    except OSError:
        return False
    return st.st_uid == os.geteuid() and not st.st_mode & 0o022 and not path.is_symlink()


def rule_files(paths: Iterable[Path]) -> list[Path]:
    """Rule files under ``paths`` (folders searched recursively); a missing path is kept, to be reported."""
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            out.extend(sorted(x for x in p.rglob("*") if x.suffix in (".yml", ".yaml") and x.is_file()))
        else:
            out.append(p)
    return out


# -- constants -------------------------------------------------------------------------------------


def encode_const(v: Any) -> Any:
    if isinstance(v, DualRegex):
        return {"re": v.pattern, "flags": int(v.flags)}
    if isinstance(v, frozenset):
        return {"set": sorted(v)}
    if isinstance(v, tuple):
        return {"tuple": [encode_const(x) for x in v]}
    if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return {"net": str(v)}
    if isinstance(v, bool) or v is None or isinstance(v, str | int | float):
        return {"v": v}
    raise TypeError(f"constant of type {type(v).__name__} cannot be cached")


def decode_const(d: Any) -> Any:
    if not isinstance(d, dict) or len(d) not in (1, 2):
        raise CacheInvalid("bad constant")
    if "re" in d:
        if not isinstance(d["re"], str) or not isinstance(d.get("flags"), int):
            raise CacheInvalid("bad regex constant")
        import re

        return DualRegex(d["re"], d["flags"] & (re.I | re.M | re.S | re.U), lazy=True)
    if "set" in d and isinstance(d["set"], list) and all(isinstance(x, str) for x in d["set"]):
        return frozenset(d["set"])
    if "tuple" in d and isinstance(d["tuple"], list):
        return tuple(decode_const(x) for x in d["tuple"])
    if "net" in d and isinstance(d["net"], str):
        return ipaddress.ip_network(d["net"], strict=False)
    if "v" in d and (d["v"] is None or isinstance(d["v"], str | int | float | bool)):
        return d["v"]
    raise CacheInvalid("unknown constant kind")


# -- expressions -----------------------------------------------------------------------------------


def _is_var(name: str) -> bool:
    return name in ("kw", "x", "K") or (name[:1] in _VAR_PREFIXES and name[1:].isdigit())


_COMPARE_OPS = frozenset({ast.In, ast.NotIn, ast.Eq, ast.NotEq, ast.Is, ast.IsNot})


def check_expr(src: str, n_consts: int) -> None:
    """Accept only what ``_compile._Builder`` emits; raise ``CacheInvalid`` on anything else."""
    try:
        _check(ast.parse(src, mode="eval").body, n_consts)
    except (SyntaxError, ValueError, RecursionError) as exc:
        raise CacheInvalid(f"unparseable expression: {exc}") from exc


def _check(node: ast.AST, n: int) -> None:
    # One visit per expression node (operators and contexts are not walked): a start-up checks
    # every cached rule, and ``ast.walk`` over them cost a third of a one-shot ``corral scan``.
    if isinstance(node, ast.Compare):
        if not all(type(op) in _COMPARE_OPS for op in node.ops):
            raise CacheInvalid("unexpected comparison")
        _check(node.left, n)
        for c in node.comparators:
            _check(c, n)
    elif isinstance(node, ast.BoolOp):
        for v in node.values:
            _check(v, n)
    elif isinstance(node, ast.Name):
        if not (_is_var(node.id) or node.id in _HELPER_CALLS):
            raise CacheInvalid(f"unexpected name {node.id!r}")
    elif isinstance(node, ast.Constant):
        if not (node.value is None or isinstance(node.value, bool | int)):
            raise CacheInvalid("unexpected literal")
    elif isinstance(node, ast.Subscript):
        v, i = node.value, node.slice
        if not (
            type(v) is ast.Name
            and v.id == "K"
            and type(i) is ast.Constant
            and type(i.value) is int
            and 0 <= i.value < n
        ):
            raise CacheInvalid("unexpected subscript")
    elif isinstance(node, ast.Call):
        f = node.func
        if node.keywords:
            raise CacheInvalid("unexpected keyword arguments")
        if not (type(f) is ast.Name and f.id in _HELPER_CALLS):
            if type(f) is not ast.Attribute:
                raise CacheInvalid("unexpected call")
            _check(f, n)
        for a in node.args:
            _check(a, n)
    elif isinstance(node, ast.Attribute):
        if node.attr not in _METHODS or type(node.value) not in (ast.Name, ast.Subscript):
            raise CacheInvalid(f"unexpected attribute {node.attr!r}")
        _check(node.value, n)
    elif isinstance(node, ast.UnaryOp):
        if type(node.op) is not ast.Not:
            raise CacheInvalid("unexpected unary operator")
        _check(node.operand, n)
    elif isinstance(node, ast.GeneratorExp):
        _check(node.elt, n)
        for g in node.generators:
            if g.ifs or g.is_async:
                raise CacheInvalid("unexpected comprehension")
            _check(g.target, n)
            _check(g.iter, n)
    else:
        raise CacheInvalid(f"unexpected {type(node).__name__}")


# -- files -----------------------------------------------------------------------------------------


def read(key: str, root: Path | None = None) -> dict[str, Any] | None:
    """The cached document for ``key``, or None (missing, not private, corrupt, or another key)."""
    root = root or cache_dir()
    path = root / f"{key}.json"
    if not (_private(root) and _private(path)):
        return None
    try:
        doc = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or doc.get("key") != key or doc.get("format") != FORMAT:
        return None
    return doc


def write(key: str, doc: dict[str, Any], root: Path | None = None) -> bool:
    """Write atomically into a private folder; never into one another user could write."""
    root = root or cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not _private(root):
            return False
        fd, tmp = tempfile.mkstemp(dir=root, prefix=".tmp-", suffix=".json")
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump({**doc, "key": key, "format": FORMAT}, fh, separators=(",", ":"), default=str)
            os.chmod(tmp, 0o600)
            os.replace(tmp, root / f"{key}.json")
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError:
        return False
    for old in sorted(root.glob("*.json"), key=lambda p: p.stat().st_mtime)[:-8]:  # keep the newest few
        old.unlink(missing_ok=True)
    return True
