"""A POSIX-shell lexer that never fails: quoting, substitutions, operators, heredocs.

Words keep their structure as segments (literal text, ``$VAR`` references and
``$(...)``/backtick substitutions) so the parser can resolve variables assigned
earlier in the same command and parse substitutions recursively. Unterminated
quotes or substitutions run to the end of input and set ``Lexed.incomplete``;
an agent's malformed command is still inspected, never skipped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

# Longest first, so "<<-" wins over "<<" and "&&" over "&".
_OPS = (
    "<<<",
    "<<-",
    "&>>",
    "&&",
    "||",
    ";;",
    "<<",
    ">>",
    "&>",
    ">&",
    "<&",
    ">|",
    "|&",
    "<>",
    "|",
    "&",
    ";",
    "(",
    ")",
    "<",
    ">",
    "\n",
)
_OP_START = frozenset(op[0] for op in _OPS)
_ANSI_ESC = {"n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "e": "\x1b", "E": "\x1b", "v": "\v"}
_ANSI_ESC.update({"f": "\f", "\\": "\\", "'": "'", '"': '"', "?": "?"})


@dataclass(frozen=True)
class Seg:
    """One piece of a word: ``lit`` text, a ``var`` name, or a ``sub`` command text."""

    kind: str
    text: str


@dataclass
class Word:
    segs: list[Seg] = field(default_factory=list)
    quoted: bool = False

    def literal(self) -> str:
        """The word's text with variables and substitutions as written."""
        out = []
        for s in self.segs:
            if s.kind == "lit":
                out.append(s.text)
            elif s.kind == "var":
                out.append("${" + s.text + "}")
            else:
                out.append("$(" + s.text + ")")
        return "".join(out)


@dataclass
class Op:
    op: str
    heredoc: str | None = None  # body of a << / <<- redirect, filled at the next newline


Token = Word | Op


@dataclass
class Lexed:
    tokens: list[Token]
    incomplete: bool = False
    ansi_c: bool = False  # $'\x..' escapes were used (a common obfuscation)


class _Lexer:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.n = len(text)
        self.tokens: list[Token] = []
        self.pending_heredocs: list[tuple[Op, str, bool]] = []
        self.incomplete = False
        self.ansi_c = False

    def run(self) -> Lexed:
        s, n = self.s, self.n
        while self.i < n:
            c = s[self.i]
            if c in " \t\r":
                self.i += 1
            elif c == "\\" and s.startswith("\\\n", self.i):
                self.i += 2
            elif c == "#":
                while self.i < n and s[self.i] != "\n":
                    self.i += 1
            elif c in _OP_START and not self._procsub():
                self._op()
            else:
                self._word()
        if self.pending_heredocs:
            self._read_heredocs()
        return Lexed(self.tokens, self.incomplete, self.ansi_c)

    def _procsub(self) -> bool:
        return self.s[self.i] in "<>" and self.s.startswith("(", self.i + 1)

    def _op(self) -> None:
        s = self.s
        for op in _OPS:
            if s.startswith(op, self.i):
                self.i += len(op)
                tok = Op(op)
                self.tokens.append(tok)
                if op in ("<<", "<<-"):
                    self._heredoc_start(tok, strip=op == "<<-")
                elif op == "\n" and self.pending_heredocs:
                    self._read_heredocs()
                return

    def _heredoc_start(self, tok: Op, strip: bool) -> None:
        while self.i < self.n and self.s[self.i] in " \t":
            self.i += 1
        start = len(self.tokens)
        self._word()
        if len(self.tokens) > start and isinstance(self.tokens[-1], Word):
            delim = "".join(seg.text for seg in self.tokens[-1].segs)
            self.pending_heredocs.append((tok, delim, strip))

    def _read_heredocs(self) -> None:
        s = self.s
        for tok, delim, strip in self.pending_heredocs:
            lines: list[str] = []
            while self.i < self.n:
                end = s.find("\n", self.i)
                end = self.n if end < 0 else end
                line = s[self.i : end]
                self.i = min(end + 1, self.n)
                if (line.lstrip("\t") if strip else line) == delim:
                    break
                lines.append(line.lstrip("\t") if strip else line)
            else:
                self.incomplete = True
            tok.heredoc = "\n".join(lines)
        self.pending_heredocs = []

    # -- words -------------------------------------------------------------------------------------

    def _word(self) -> None:
        s, n = self.s, self.n
        w = Word()
        buf: list[str] = []

        def flush() -> None:
            if buf:
                w.segs.append(Seg("lit", "".join(buf)))
                buf.clear()

        while self.i < n:
            c = s[self.i]
            if c in " \t\r\n" or (c in _OP_START and not self._procsub()):
                if c in "<>" and buf and not w.segs and "".join(buf).isdigit():
                    buf.clear()  # an io-number such as the 2 of 2>&1
                break
            if c == "\\":
                if self.i + 1 < n and s[self.i + 1] != "\n":
                    buf.append(s[self.i + 1])
                self.i += 2
            elif c == "'":
                w.quoted = True
                end = s.find("'", self.i + 1)
                if end < 0:
                    self.incomplete, end = True, n
                buf.append(s[self.i + 1 : end])
                self.i = end + 1
            elif c == '"':
                w.quoted = True
                flush()
                self._double(w)
            elif c == "$" and s.startswith("$'", self.i):
                w.quoted = True
                buf.append(self._ansi_c())
            elif c == "$" or c == "`" or (c in "<>" and self._procsub()):
                flush()
                self._dollar(w, in_dq=False)
            else:
                buf.append(c)
                self.i += 1
        flush()
        if w.segs or w.quoted:
            self.tokens.append(w)

    def _double(self, w: Word) -> None:
        s, n = self.s, self.n
        self.i += 1
        buf: list[str] = []
        while self.i < n:
            c = s[self.i]
            if c == '"':
                self.i += 1
                break
            if c == "\\" and self.i + 1 < n and s[self.i + 1] in '$`"\\\n':
                if s[self.i + 1] != "\n":
                    buf.append(s[self.i + 1])
                self.i += 2
            elif c in "$`":
                if buf:
                    w.segs.append(Seg("lit", "".join(buf)))
                    buf.clear()
                self._dollar(w, in_dq=True)
            else:
                buf.append(c)
                self.i += 1
        else:
            self.incomplete = True
        if buf:
            w.segs.append(Seg("lit", "".join(buf)))

    def _dollar(self, w: Word, in_dq: bool) -> None:
        s, n = self.s, self.n
        if s[self.i] == "`":
            end = self.i + 1
            while end < n and s[end] != "`":
                end += 2 if s[end] == "\\" else 1
            if end >= n:
                self.incomplete = True
            w.segs.append(Seg("sub", s[self.i + 1 : min(end, n)].replace("\\`", "`")))
            self.i = min(end + 1, n)
        elif s.startswith("$((", self.i):
            end = s.find("))", self.i)
            end = n if end < 0 else end
            w.segs.append(Seg("lit", s[self.i : end + 2]))
            self.i = end + 2
        elif s.startswith("$(", self.i) or s[self.i] in "<>":
            body, self.i = self._balanced(self.i + 2)
            w.segs.append(Seg("sub", body))
        elif s.startswith("${", self.i):
            end = s.find("}", self.i)
            end = n if end < 0 else end
            w.segs.append(Seg("var", s[self.i + 2 : end]))
            self.i = end + 1
        else:
            j = self.i + 1
            if j < n and (s[j].isalpha() or s[j] == "_"):
                while j < n and (s[j].isalnum() or s[j] == "_"):
                    j += 1
            elif j < n and s[j] in "0123456789@*#?$!-":
                j += 1
            if j == self.i + 1:
                w.segs.append(Seg("lit", "$"))
            else:
                w.segs.append(Seg("var", s[self.i + 1 : j]))
            self.i = j

    def _balanced(self, start: int) -> tuple[str, int]:
        """Text up to the ``)`` closing a ``$(``; quotes inside are skipped over."""
        s, n = self.s, self.n
        depth, i = 1, start
        while i < n:
            c = s[i]
            if c == "\\":
                i += 2
                continue
            if c == "'":
                end = s.find("'", i + 1)
                i = n if end < 0 else end + 1
                continue
            if c == '"':
                i += 1
                while i < n and s[i] != '"':
                    i += 2 if s[i] == "\\" else 1
                i += 1
                continue
            if c == "(":
                depth += 1
            elif c == ")":
                depth -= 1
                if depth == 0:
                    return s[start:i], i + 1
            i += 1
        self.incomplete = True
        return s[start:n], n

    def _ansi_c(self) -> str:
        s, n = self.s, self.n
        i = self.i + 2
        out: list[str] = []
        while i < n and s[i] != "'":
            c = s[i]
            if c != "\\" or i + 1 >= n:
                out.append(c)
                i += 1
                continue
            e = s[i + 1]
            if e in _ANSI_ESC:
                out.append(_ANSI_ESC[e])
                i += 2
            elif e in "xuU":
                width = {"x": 2, "u": 4, "U": 8}[e]
                j = i + 2
                while j < n and j < i + 2 + width and s[j] in "0123456789abcdefABCDEF":
                    j += 1
                out.append(chr(int(s[i + 2 : j], 16)) if j > i + 2 else "\\" + e)
                self.ansi_c = True
                i = j
            elif e in "01234567":
                j = i + 1
                while j < n and j < i + 4 and s[j] in "01234567":
                    j += 1
                out.append(chr(int(s[i + 1 : j], 8)))
                self.ansi_c = True
                i = j
            else:
                out.append("\\" + e)
                i += 2
        if i >= n:
            self.incomplete = True
        self.i = i + 1
        return "".join(out)


def lex(text: str) -> Lexed:
    return _Lexer(text).run()
