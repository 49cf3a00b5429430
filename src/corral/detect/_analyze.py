"""What a command would run: every simple command, payload and file write, with obfuscation undone.

``analyze(text)`` lexes and parses the shell text, resolves variables assigned
earlier in the same text, follows ``sh -c``/``eval``/``ssh host CMD``/``find
-exec`` and wrappers (``sudo``, ``nohup``, ``timeout`` ...), decodes ``echo ... |
base64 -d | sh`` style chains (base64, hex, rev, rot13, printf escapes), and
extracts the shell commands inside interpreter payloads (``python -c``, ``perl
-e``, ``node -e``, awk ``system()`` ...). Work is bounded (depth, count, size) so
a hostile command cannot make inspection slow.
"""

from __future__ import annotations

import codecs
import posixpath
import re
from dataclasses import dataclass, field

from corral.detect._codeparse import code_file_writes, code_shell_calls, decode_literals
from corral.detect._decode import b64, printf_format, printf_unescape, unhex
from corral.detect._fileops import FileOp, file_ops
from corral.detect._lexer import Word, lex
from corral.detect._parser import Command, parse
from corral.detect._wrappers import (
    INTERPRETERS,
    LOOKUP_ONLY,
    SHELL_OPTS_WITH_ARG,
    WRAPPERS,
    interpreter_key,
    shell_key,
)

# Inspection budgets. Going over one is itself a finding (``Analysis.exceeded``): a command built to
# be too deep or too big to inspect must not pass for that reason.
MAX_DEPTH = 8
MAX_COMMANDS = 2048
MAX_PAYLOAD_CHARS = 512 * 1024
MAX_TEXT_CHARS = 1024 * 1024

_WRITE_REDIRECTS = {
    ">": "write",
    ">|": "write",
    "&>": "write",
    ">>": "append",
    "&>>": "append",
    "<>": "write",
}

# ssh options that take a value: what follows them is not the destination
SSH_OPTS = frozenset("-p -i -l -o -L -R -D -J -F -b -c -e -m -O -S -W -w -E -B -Q".split())  # noqa: SIM905
_ESCAPE_RE = re.compile(r"^\s*(?::!|!|\\!|\.shell\s|\.system\s|:call\s+system\(|system\s)(.+)$", re.DOTALL)
_ESCAPE_START = frozenset(":!\\.s")  # what _ESCAPE_RE can start with, after blanks (a cheap pre-check)
_EXEC_END = (";", "+", "\\;")


@dataclass(frozen=True)
class SimpleCommand:
    """One program the command would start, with its arguments as the kernel would see them."""

    argv: tuple[str, ...]
    parent: tuple[str, ...] | None  # argv of the wrapper or shell that starts it
    source: str  # shell, sh -c, subst, stdin, decoded, python, wrapper ...
    depth: int
    background: bool = False
    privileged: bool = False  # under sudo/doas/pkexec/su
    stdin_path: str | None = None  # the file a ``<`` redirect feeds it (wrappers pass it on)

    @property
    def name(self) -> str:
        return basename(self.argv[0]) if self.argv else ""


@dataclass
class Analysis:
    text: str
    commands: list[SimpleCommand] = field(default_factory=list)
    payloads: list[tuple[str, str]] = field(default_factory=list)  # (language, text)
    files: list[FileOp] = field(default_factory=list)
    pipelines: list[tuple[str, ...]] = field(default_factory=list)
    obfuscation: set[str] = field(default_factory=set)
    incomplete: bool = False
    truncated: bool = False
    exceeded: set[str] = field(default_factory=set)  # budgets gone over: depth, commands, size

    def over(self, budget: str) -> None:
        self.truncated = True
        self.exceeded.add(budget)


def basename(path: str) -> str:
    return path.rstrip("/").rsplit("/", 1)[-1]


def skip_options(
    argv: list[str], start: int, opts_with_arg: frozenset[str], assignments: bool = False
) -> int:
    """Index of the first operand after options (``--`` ends options)."""
    j = start
    while j < len(argv):
        a = argv[j]
        if a == "--":
            return j + 1
        if assignments and "=" in a and not a.startswith("-"):
            j += 1
            continue
        if len(a) > 1 and a[0] == "-":
            if a.startswith("--"):
                j += 2 if ("=" not in a and a in opts_with_arg) else 1
            elif a in opts_with_arg or (
                len(a) > 2 and "-" + a[-1] in opts_with_arg and a[:2] not in opts_with_arg
            ):
                j += 2
            else:
                j += 1
            continue
        return j
    return j


# Programs that run a source file of a language the analyser has no table for; and those that do so
# with a ``run`` verb. What the file starts is still read (``code_shell_calls``).
_SCRIPT_RUNNERS = frozenset({"runhaskell", "runghc", "java", "tsx", "ts-node", "kotlin", "scala", "swift"})
_RUN_VERBS = frozenset({"go", "v", "dart", "crystal", "bun", "deno", "zig", "cargo"})


FIND_EXECS = frozenset({"-exec", "-execdir", "-ok", "-okdir"})
_FIND_ACTS = FIND_EXECS | {"-delete", "-fprint", "-fprintf", "-fls"}


class _FoundPaths(str):
    """What a ``find`` prints, piped on: known to stand for the files it finds only to ``xargs``."""


def _xargs_command(options: list[str], command: list[str], stdin: str) -> list[str]:
    """The command xargs runs with what it reads: its items appended, or put in place of the
    ``-I`` string (the first item: every one is run alike)."""
    items = stdin.split()
    if not items:
        return command
    for k, o in enumerate(options):
        rep = options[k + 1] if o in ("-I", "--replace") and k + 1 < len(options) else None
        rep = rep or (o[2:] if o.startswith("-I") and len(o) > 2 else None)
        if rep:
            return [x.replace(rep, items[0]) for x in command]
    return command + items[:64]


def find_roots(find_args: list[str]) -> list[str]:
    """A find's starting points: its operands before the first expression token."""
    roots = []
    for a in find_args:
        if a.startswith(("-", "(", "!", ")")) or a == ",":
            break
        roots.append(a)
    return roots


def _found_files(find_args: list[str]) -> str:
    """What ``{}`` stands for in a ``find -exec``, and what find prints: files anywhere below its
    first starting point, named as its first ``-name`` says (``/var/log/**/*.gz``)."""
    roots = find_roots(find_args)
    root = roots[0].rstrip("/") if roots else "."
    name = next((find_args[k + 1] for k, a in enumerate(find_args[:-1]) if a in ("-name", "-iname")), "*")
    return f"{root}/**/{name}"


def ssh_destination(argv: list[str] | tuple[str, ...]) -> str | None:
    """The ``[user@]host`` an ssh command line connects to (its first operand), if any."""
    j = skip_options(list(argv), 1, SSH_OPTS)
    return argv[j] if j < len(argv) else None


def _c_flag(a: str) -> bool:
    return len(a) > 1 and a[0] == "-" and a[1] != "-" and a.endswith("c")


class _Analyzer:
    def __init__(self, text: str) -> None:
        self.out = Analysis(text)
        self.env: dict[str, str] = {}
        self.budget = MAX_PAYLOAD_CHARS
        self.seen: set[str] = set()  # shell texts already analysed (a decoded chain is seen twice)
        self.written: dict[str, str] = {}  # path -> the text this command line wrote there

    # -- scripts this command line writes ---------------------------------------------------------

    def wrote(self, path: str, op: str, contents: str) -> None:
        key = posixpath.normpath(path)
        before = self.written.get(key, "") if op == "append" else ""
        if before and not before.endswith("\n"):
            before += "\n"  # echo's newline, which the text an echo gives here leaves out
        self.written[key] = before + contents

    def written_script(self, path: str) -> str | None:
        """The text of a file this command line wrote before running it (``echo ... > x.py; python3
        x.py``): what runs is known, as for ``-c`` code."""
        return self.written.get(posixpath.normpath(path)) if self.written else None

    def runner_script(self, name: str, args: list[str]) -> str | None:
        """The written file that a runner of a language the analyser has no table for runs
        (``runhaskell x.hs``, ``go run x.go``): read for the commands it starts."""
        if name in _RUN_VERBS and args[:1] == ["run"]:
            args = args[1:]
        elif name not in _SCRIPT_RUNNERS:
            return None
        operand = next((a for a in args if not a.startswith("-")), None)
        return self.written_script(operand) if operand is not None else None

    def run_written(self, text: str, depth: int, me: tuple[str, ...]) -> None:
        """A written file run as a program: by its ``#!`` interpreter, or by the shell without one
        (code of a language with no table of its own is read for the commands it starts)."""
        first = text.split("\n", 1)[0]
        parts = first[2:].split() if first.startswith("#!") else []
        prog = basename(parts[0]) if parts else "sh"
        if prog == "env" and len(parts) > 1:
            prog = basename(next((x for x in parts[1:] if not x.startswith("-")), "sh"))
        if shell_key(prog):
            if self.payload("shell", text):
                self.shell(text, depth + 1, "script", me)
            return
        key = interpreter_key(prog)
        lang = INTERPRETERS[key][0] if key is not None else "code"
        if self.payload(lang, text):
            self.code(lang, text, depth + 1, me)

    # -- words and text --------------------------------------------------------------------------

    def resolve(self, w: Word, depth: int) -> str:
        return self._resolve(w, depth)[0]

    def _resolve(self, w: Word, depth: int) -> tuple[str, bool]:
        """The word's value, and whether a substitution in it stays as written (its output unknown)."""
        parts = []
        opaque = False
        for s in w.segs:
            if s.kind == "lit":
                parts.append(s.text)
            elif s.kind == "var":
                name = s.text
                if name in self.env:
                    parts.append(self.env[name])
                    self.out.obfuscation.add("variables")
                elif name == "IFS" or (len(name) == 1 and name in "123456789"):
                    # Unset, they are the shell's defaults: a blank that splits words, and the empty
                    # argument of a command run with none. ``cat${IFS}/etc/passwd``, ``cat$IFS$9x``.
                    parts.append(" " if name == "IFS" else "")
                    self.out.obfuscation.add("ifs" if name == "IFS" else "variables")
                else:
                    parts.append("${" + name + "}")
            else:
                out = self.shell(s.text, depth + 1, "subst", None)
                opaque |= out is None
                parts.append(out if out is not None else "$(" + s.text + ")")
        return "".join(parts), opaque

    def payload(self, lang: str, text: str) -> bool:
        if not text or self.budget <= 0:
            if text:
                self.out.over("size")
            return False
        self.budget -= len(text)
        self.out.payloads.append((lang, text))
        return True

    def shell(self, text: str, depth: int, source: str, parent: tuple[str, ...] | None) -> str | None:
        """Analyse shell text; returns its output when that is a known literal (echo, decoders)."""
        if depth > MAX_DEPTH:
            self.out.over("depth")
            return None
        if text in self.seen:
            return None
        self.seen.add(text)
        lexed = lex(text)
        self.out.incomplete = self.out.incomplete or lexed.incomplete
        if lexed.ansi_c:
            self.out.obfuscation.add("ansi_c")
        last_output: str | None = None
        for pipe in parse(lexed.tokens):
            if len(self.out.commands) >= MAX_COMMANDS:
                self.out.over("commands")  # the raw text still reaches every text rule via Expanded
                break
            flow: str | None = None
            names: list[str] = []
            for cmd in pipe.commands:
                argv, flow = self.command(cmd, flow, depth, source, parent, pipe.background)
                if argv:
                    names.append(basename(argv[0]))
                    if flow is None and names[-1] == "find" and not _FIND_ACTS.intersection(argv):
                        flow = _FoundPaths(_found_files(argv[1:]))  # what it prints, for an xargs
            if names:
                self.out.pipelines.append(tuple(names))
            last_output = flow
        return last_output

    # -- one simple command of a pipeline ---------------------------------------------------------

    def command(
        self,
        cmd: Command,
        flow: str | None,
        depth: int,
        source: str,
        parent: tuple[str, ...] | None,
        background: bool,
    ) -> tuple[list[str], str | None]:
        for w in cmd.loose:
            self.resolve(w, depth)
        for name, w in cmd.assigns:
            self.env[name] = self.resolve(w, depth)
        argv: list[str] = []
        for w in cmd.words:
            value, opaque = self._resolve(w, depth)
            # Unquoted expansions are word-split, as the shell does; a substitution whose output is
            # unknown stays one word: splitting its command text would split what it is not.
            if (
                not w.quoted
                and not opaque
                and any(seg.kind != "lit" for seg in w.segs)
                and value.split() != [value]
            ):
                argv.extend(value.split())
            else:
                argv.append(value)
        stdin = flow
        if isinstance(flow, _FoundPaths) and (not argv or basename(argv[0]) != "xargs"):
            stdin = None  # only xargs takes find's output for paths; to others it is text unknown
        stdin_path = None
        writes: list[tuple[str, str]] = []
        for r in cmd.redirects:
            target = self.resolve(r.target, depth) if r.target is not None else ""
            if r.op == "<" and target:
                stdin_path = target
            elif r.op in ("<<", "<<-"):
                stdin = r.heredoc or ""
                if r.target is not None and not r.target.quoted:
                    self.payload("heredoc", stdin)
            elif r.op == "<<<":
                stdin = target
            elif r.op in _WRITE_REDIRECTS and target and not target.startswith("&") and target != "/dev/null":
                writes.append((target, _WRITE_REDIRECTS[r.op]))
            elif r.op == ">&" and target and not target.isdigit() and target != "-":
                writes.append((target, "write"))
        if not argv:
            for path, op in writes:
                self.out.files.append(FileOp(path, "truncate" if op == "write" else op, (), ""))
                self.wrote(path, op, "")
            return argv, None
        output = self.run(argv, stdin, depth, source, parent, background, False, stdin_path)
        for path, op in writes:
            contents = output if output is not None else stdin
            self.out.files.append(FileOp(path, op, tuple(argv), contents))
            if contents and contents not in self.seen:
                self.payload("file", contents)
            if contents is not None:
                self.wrote(path, op, contents)
        return argv, output

    def run(
        self,
        argv: list[str],
        stdin: str | None,
        depth: int,
        source: str,
        parent: tuple[str, ...] | None,
        background: bool,
        privileged: bool,
        stdin_path: str | None = None,
    ) -> str | None:
        """Record ``argv`` and what it starts in turn; returns its stdout when it is knowable."""
        while argv:
            if len(self.out.commands) >= MAX_COMMANDS:
                self.out.over("commands")
                return None
            self.out.commands.append(
                SimpleCommand(tuple(argv), parent, source, depth, background, privileged, stdin_path)
            )
            name = basename(argv[0]).lower()
            self.out.files.extend(file_ops(name, argv, stdin))
            wrapper = WRAPPERS.get(name)
            if wrapper is not None:
                if name in LOOKUP_ONLY and any(a in LOOKUP_ONLY[name] for a in argv[1:2]):
                    return None
                j = skip_options(argv, 1, wrapper.opts_with_arg, wrapper.skip_assignments)
                j += wrapper.positional
                if name == "env" and any(a in ("-S", "--split-string") or a.startswith("-S") for a in argv):
                    idx = next(i for i, a in enumerate(argv) if a.startswith("-S") or a == "--split-string")
                    rest = argv[idx][2:] if len(argv[idx]) > 2 and argv[idx] != "--split-string" else ""
                    tail = [rest] if rest else argv[idx + 1 : idx + 2]
                    return self.shell(" ".join(tail + argv[idx + 2 :]), depth + 1, "env -S", tuple(argv))
                privileged = privileged or name in ("sudo", "doas", "pkexec")
                inner = argv[j:]
                if name == "xargs" and stdin is not None and inner:
                    inner = _xargs_command(argv[1:j], inner, stdin)
                parent, argv, source = tuple(argv), inner, "wrapper"
                continue
            return self.special(name, argv, stdin, depth, parent, background, privileged)
        return None

    def special(
        self,
        name: str,
        argv: list[str],
        stdin: str | None,
        depth: int,
        parent: tuple[str, ...] | None,
        background: bool,
        privileged: bool,
    ) -> str | None:
        me = tuple(argv)
        args = argv[1:]
        if self.written:
            if "/" in argv[0] and (script := self.written_script(argv[0])) is not None:
                self.run_written(script, depth, me)
                return None
            if (script := self.runner_script(name, args)) is not None:
                if self.payload("code", script):
                    self.code("code", script, depth + 1, me)
                return None
        if name in ("echo", "printf"):
            if name == "echo":
                words = [a for a in args if a not in ("-n", "-e", "-E", "-ne", "-en")]
                text = " ".join(words)
                if "-e" in args or "-ne" in args or "-en" in args:
                    text = printf_unescape(text)
            else:
                fmt = args[0] if args else ""
                filled = printf_format(fmt, args[1:]) if "%" in fmt else None
                text = printf_unescape(fmt) if "%" not in fmt else filled or " ".join(args[1:])
                if fmt != printf_unescape(fmt):
                    self.out.obfuscation.add("printf_escapes")
            return text
        if name == "cat" and not [a for a in args if not a.startswith("-")]:
            return stdin
        if name in ("base64", "base32") or (name == "openssl" and args and args[0] in ("base64", "enc")):
            if any(a in ("-d", "--decode", "-D") or (a.startswith("-") and "d" in a[1:]) for a in args):
                decoded = b64(stdin) if stdin is not None and name != "base32" else None
                if decoded is None:
                    literal = [a for a in args if not a.startswith("-")]
                    decoded = b64(literal[-1]) if literal and name == "base64" else None
                return self.decoded(decoded, "base64", depth, me)
            return None
        if name == "xxd" and "-r" in args and stdin is not None:
            return self.decoded(unhex(stdin), "hex", depth, me)
        if name == "rev" and stdin is not None:
            return self.decoded(stdin[::-1], "rev", depth, me)
        if name == "tr" and stdin is not None and len(args) == 2 and "N-Z" in args[1] and "A-M" in args[1]:
            return self.decoded(codecs.decode(stdin, "rot13"), "rot13", depth, me)
        if shell_key(name):
            return self.run_shell(argv, stdin, depth, me)
        if name == "eval":
            return self.shell(" ".join(args), depth + 1, "eval", me)
        if name == "trap" and args:
            return self.shell(args[0], depth + 1, "trap", me)
        if name == "watch":
            j = skip_options(argv, 1, frozenset({"-n", "-d", "--interval", "-c"}))
            return self.shell(" ".join(argv[j:]), depth + 1, "watch", me)
        if name == "flock" and args and "-c" not in args and "--command" not in args:
            j = skip_options(argv, 1, frozenset({"-w", "-E", "--timeout", "--conflict-exit-code"})) + 1
            return self.run(argv[j:], stdin, depth + 1, "wrapper", me, background, privileged)
        if name in ("su", "runuser", "sg", "script", "flock") or (name == "tmux" and args):
            return self.run_dash_c(name, argv, depth, me)
        if name == "ssh":
            j = skip_options(argv, 1, SSH_OPTS)
            if j + 1 < len(argv):
                self.shell(" ".join(argv[j + 1 :]), depth + 1, "ssh", me)
            return None
        if name == "find" and FIND_EXECS.intersection(args):
            found = _found_files(args)
            for i, a in enumerate(argv):
                if a in FIND_EXECS:
                    end = next(
                        (k for k in range(i + 1, len(argv)) if argv[k] in (";", "+", "\\;")), len(argv)
                    )
                    inner = argv[i + 1 : end]
                    if inner and inner[0] == "{}":
                        inner = inner[1:]  # the found file run as a program: nothing known about it
                    # The program acts on each file found (a shell script sees it as $1 ...).
                    inner = [found if x == "{}" else x for x in inner]
                    if inner:
                        self.run(inner, None, depth + 1, "find -exec", me, background, privileged)
            return None
        key = interpreter_key(name)
        if key is not None:
            return self.run_interpreter(key, argv, stdin, depth, me)
        self.escapes(args, depth, me)
        return None

    def escapes(self, args: list[str], depth: int, me: tuple[str, ...]) -> None:
        """Arguments a program runs as shell commands: vim ``:!cmd``, sqlite ``.shell``, mysql ``\\!``."""
        for a in args:
            if a.lstrip()[:1] not in _ESCAPE_START:
                continue
            m = _ESCAPE_RE.match(a)
            if m and m.group(1).strip():
                self.shell(m.group(1), depth + 1, "escape", me)

    def decoded(self, text: str | None, how: str, depth: int, parent: tuple[str, ...]) -> str | None:
        if text is None:
            return None
        self.out.obfuscation.add(how)
        if self.payload("decoded", text):
            self.shell(text, depth + 1, "decoded", parent)
        return text

    def run_shell(self, argv: list[str], stdin: str | None, depth: int, me: tuple[str, ...]) -> str | None:
        j = 1
        code: str | None = None
        script: str | None = None
        while j < len(argv):
            a = argv[j]
            if a in SHELL_OPTS_WITH_ARG:
                j += 2
                continue
            if a.startswith(("-", "+")) and len(a) > 1 and not a.startswith("--"):
                if "c" in a[1:]:
                    code = argv[j + 1] if j + 1 < len(argv) else ""
                    break
                j += 1
                continue
            if a.startswith("--"):
                j += 1
                continue
            script = self.written_script(a)
            if script is None:
                return None  # a script file: its text is not visible here
            break
        if script is not None:
            code, src = script, "script"
            positional = argv[j:]  # $0 is the script's path, $1 ... its arguments
        elif code is None:
            code = stdin
            if code is None:
                return None
            src = "stdin"
            positional = []
        else:
            src = "sh -c"
            positional = argv[j + 2 :]  # $0, $1, ... of the script
        if not self.payload("shell", code):
            return None
        if not positional:
            return self.shell(code, depth + 1, src, me)
        bound = {str(k): v for k, v in enumerate(positional[:10])}
        bound["@"] = bound["*"] = " ".join(positional[1:])
        saved = {k: self.env[k] for k in bound if k in self.env}
        self.env.update(bound)
        try:
            return self.shell(code, depth + 1, src, me)
        finally:
            for k in bound:
                self.env.pop(k, None)
            self.env.update(saved)

    def run_dash_c(self, name: str, argv: list[str], depth: int, me: tuple[str, ...]) -> str | None:
        if name == "tmux":
            tail = [a for a in argv[2:] if not a.startswith("-")]
            if argv[1] in ("new-session", "new", "new-window", "neww", "split-window", "splitw", "send-keys"):
                opts = frozenset({"-s", "-n", "-t", "-c", "-x", "-y", "-F", "-e", "-l"})
                j = skip_options(argv, 2, opts)
                tail = argv[j:]
            text = " ".join(tail)
        else:
            idx = next(
                (
                    i
                    for i, a in enumerate(argv)
                    if a in ("-c", "--command") or (a.endswith("c") and a[:1] == "-")
                ),
                None,
            )
            if idx is None or idx + 1 >= len(argv):
                return None
            text = argv[idx + 1]
        if text and self.payload("shell", text):
            self.shell(text, depth + 1, name, me)
        return None

    def run_interpreter(
        self, key: str, argv: list[str], stdin: str | None, depth: int, me: tuple[str, ...]
    ) -> str | None:
        lang, code_flags, opts_with_arg = INTERPRETERS[key]
        code: str | None = None
        j = 1
        while j < len(argv):
            a = argv[j]
            if a in code_flags or (len(a) > 2 and a[0] == "-" and a[1] != "-" and "-" + a[-1] in code_flags):
                code = argv[j + 1] if j + 1 < len(argv) else ""
                break
            if key == "perl" and a.startswith("-e") and len(a) > 2:
                code = a[2:]
                break
            if a in opts_with_arg:
                j += 2
                continue
            if a.startswith("-") and len(a) > 1:
                j += 1
                continue
            if key == "awk":
                code = a
            elif a == "-" or key == "deno":
                code = stdin
            else:
                code = self.written_script(a)  # a script this command line wrote, or unknown
            break
        else:
            code = stdin if key != "awk" else None
        if code is None or not self.payload(lang, code):
            return None
        self.code(lang, code, depth + 1, me)
        return None

    def code(self, lang: str, code: str, depth: int, me: tuple[str, ...]) -> None:
        if depth > MAX_DEPTH:
            self.out.over("depth")
            return
        for how, text in decode_literals(code):
            self.out.obfuscation.add(how)
            if self.payload("decoded", text):
                self.shell(text, depth + 1, "decoded", me)
                self.code(lang, text, depth + 1, me)
        for path, op in code_file_writes(code):
            self.out.files.append(FileOp(path, op, me, None))
        for call in code_shell_calls(code):
            if isinstance(call, str):
                self.shell(call, depth, lang, me)
            else:
                self.run(list(call), None, depth, lang, me, False, False)

    # -- files ------------------------------------------------------------------------------------


def analyze(text: str, language: str = "shell") -> Analysis:
    """Everything ``text`` would run. ``language``: ``shell``, or the language of a code tool."""
    a = _Analyzer(text)
    if len(text) > MAX_TEXT_CHARS:
        a.out.over("size")
        text = text[:MAX_TEXT_CHARS]
    if language == "shell":
        a.shell(text, 0, "shell", None)
    else:
        a.payload(language, text)
        a.code(language, text, 0, ("<" + language + ">",))
    return a.out
