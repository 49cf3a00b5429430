"""Token stream to pipelines of simple commands.

Compound commands (``if``, ``for``, ``while``, ``case``, subshells, brace groups,
function bodies) are flattened: what matters for detection is every simple
command that could run, not the control flow around it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from corral.detect._lexer import Op, Token, Word

_SEPARATORS = frozenset({";", "&", "&&", "||", "\n", ";;", "(", ")"})
_REDIRECTS = frozenset({"<", ">", ">>", "&>", "&>>", ">&", "<&", ">|", "<>", "<<", "<<-", "<<<"})
_RESERVED = frozenset({"if", "then", "else", "elif", "fi", "do", "done", "while", "until", "!", "{", "}"})
_RESERVED |= {"esac", "time", "coproc"}


@dataclass
class Redirect:
    op: str
    target: Word | None
    heredoc: str | None = None


@dataclass
class Command:
    words: list[Word] = field(default_factory=list)
    assigns: list[tuple[str, Word]] = field(default_factory=list)
    redirects: list[Redirect] = field(default_factory=list)
    loose: list[Word] = field(default_factory=list)  # words of loop/case headers: substitutions still run

    def empty(self) -> bool:
        return not (self.words or self.assigns or self.redirects or self.loose)


@dataclass
class Pipeline:
    commands: list[Command] = field(default_factory=list)
    background: bool = False


def _assignment(w: Word) -> tuple[str, Word] | None:
    if not w.segs or w.segs[0].kind != "lit":
        return None
    head = w.segs[0].text
    name, eq, rest = head.partition("=")
    if not eq or not name or not (name[0].isalpha() or name[0] == "_"):
        return None
    if not all(ch.isalnum() or ch == "_" for ch in name.rstrip("+")):
        return None
    value = Word(([type(w.segs[0])("lit", rest)] if rest else []) + w.segs[1:], w.quoted)
    return name.rstrip("+"), value


def parse(tokens: list[Token]) -> Iterator[Pipeline]:
    """Pipelines in order, lazily (the caller may stop early on huge input)."""
    out: list[Pipeline] = []
    pipe = Pipeline()
    cmd = Command()
    skip_until_sep = False  # inside a `for NAME in WORDS` / `case WORD in` header
    in_case = 0
    case_pattern = False
    i, n = 0, len(tokens)

    def end_command() -> None:
        nonlocal cmd
        if not cmd.empty():
            pipe.commands.append(cmd)
        cmd = Command()

    def end_pipeline(background: bool = False) -> None:
        nonlocal pipe
        end_command()
        if pipe.commands:
            pipe.background = background
            out.append(pipe)
        pipe = Pipeline()

    while i < n:
        if out:
            yield from out
            out.clear()
        tok = tokens[i]
        i += 1
        if isinstance(tok, Op):
            if tok.op in _REDIRECTS:
                nxt = tokens[i] if i < n else None
                target = nxt if isinstance(nxt, Word) else None
                if target is not None:
                    i += 1
                cmd.redirects.append(Redirect(tok.op, target, tok.heredoc))
            elif tok.op in ("|", "|&"):
                end_command()
            elif tok.op in _SEPARATORS:
                if tok.op == "(" and len(cmd.words) == 1 and not cmd.redirects:
                    cmd = Command()  # `name () { ...; }`: a function definition header
                    if i < n and isinstance(tokens[i], Op) and tokens[i].op == ")":  # type: ignore[union-attr]
                        i += 1
                    continue
                if tok.op == ")" and case_pattern:
                    case_pattern = False
                    cmd = Command()
                    continue
                end_pipeline(background=tok.op == "&")
                skip_until_sep = False
                if tok.op == ";;" and in_case:
                    case_pattern = True
            continue
        text = tok.literal() if not tok.quoted else None
        if skip_until_sep:
            if text == "do":
                skip_until_sep = False
            elif text == "in" and in_case and not case_pattern:
                skip_until_sep, case_pattern = False, True
            else:
                cmd.loose.append(tok)
            continue
        if case_pattern:
            continue  # a case pattern like `start|stop)`: not a command
        if not cmd.words:
            if text in _RESERVED:
                if text == "esac":
                    in_case = max(0, in_case - 1)
                continue
            if text in ("for", "select", "case", "function"):
                if text == "case":
                    in_case += 1
                if text == "function":
                    i += 1  # the function's name
                else:
                    skip_until_sep = True
                continue
            assign = _assignment(tok)
            if assign is not None:
                cmd.assigns.append(assign)
                continue
        cmd.words.append(tok)
    end_pipeline()
    yield from out
