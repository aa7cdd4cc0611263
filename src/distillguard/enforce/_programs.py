"""`equivalent-program`: the code blocks of a flagged account's answer in an equivalent form
drawn afresh for every answer.

A reasoning defence leaves the program a person asked for alone, so a harvester who drops the
reasoning still learns the programs. This defence changes the program itself, never what it
does: in every fenced Python block (info string `python`, `py`, `python3`, `py3`, or none when
the block parses as Python) each function's local variables get names drawn at random, and
plain string literals one quote style drawn per block. Parameters, globals, attributes,
imports, nested functions and classes keep their names, so every call and every output is the
original's; a function that could observe its own names (`locals()`, `vars()`, `eval`,
`exec`, `dir()`, `f"{x=}"`, `global`, `nonlocal`, a nested class, `match`) keeps them. Only
names are replaced in the source text, so comments and layout stay as written. The rewritten
block is parsed again and must be the original's syntax tree under the renaming, else the
original is served. A block that does not parse, any other language and all text outside
blocks pass unchanged.

`ProgramFilter` does the same on a stream: text outside blocks passes at once (a line that
may open a fence waits for its end), each block is held until its closing fence.
"""

from __future__ import annotations

import ast
import builtins
import io
import keyword
import random
import re
import tokenize
from typing import Literal

CodeDefence = Literal["unchanged", "equivalent-program"]
CODE_DEFENCES: tuple[str, ...] = ("unchanged", "equivalent-program")

#: fence info strings of Python blocks (an empty one: when the block parses as Python)
PYTHON_INFO = ("python", "py", "python3", "py3")
#: names a local variable may get (with a number added when a block needs more)
NAME_POOL = (
    "acc", "buf", "cell", "chunk", "cur", "elem", "entry", "head", "item", "key", "mark", "node",
    "obj", "out", "part", "piece", "pos", "prev", "rest", "slot", "step", "tail", "temp", "token",
    "unit", "val", "value", "word",
)
# calls and syntax that let a function see or bind its own local names by string
_INTROSPECTION = frozenset({"locals", "vars", "eval", "exec", "dir"})
_SCOPES = (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda, ast.ListComp, ast.SetComp, ast.DictComp,
           ast.GeneratorExp)
_FENCE = re.compile(r"^( {0,3})(`{3,}|~{3,})([^\n]*)$")


def _introspects(fn: ast.AST) -> bool:
    """Whether renaming a local of `fn` could change what it does."""
    for node in ast.walk(fn):
        if isinstance(node, ast.Global | ast.Nonlocal | ast.ClassDef | ast.Match):
            return True
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in _INTROSPECTION:
            return True
        # f"{x=}" prints the expression's text: a Constant ending in "=" before the value
        if isinstance(node, ast.JoinedStr) and any(
                isinstance(v, ast.Constant) and isinstance(v.value, str) and v.value.endswith("=") for v in node.values):
            return True
    return False


def _own_stores(fn: ast.FunctionDef | ast.AsyncFunctionDef) -> set[str]:
    """Names `fn` assigns in its own scope (not inside a nested function, lambda or comprehension)."""
    out: set[str] = set()
    todo: list[ast.AST] = list(fn.body)
    while todo:
        node = todo.pop()
        if isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store | ast.Del):
            out.add(node.id)
        if not isinstance(node, _SCOPES):
            todo.extend(ast.iter_child_nodes(node))
    return out


def _bound_otherwise(fn: ast.AST) -> set[str]:
    """Names bound in `fn` other than by a plain assignment (parameters, nested functions,
    imports, `except ... as`), and names inside f-strings: these keep their names."""
    out: set[str] = set()
    for node in ast.walk(fn):
        if isinstance(node, ast.arg):
            out.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            out.add(node.name)
        elif isinstance(node, ast.alias):
            out.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            out.add(node.name)
        elif isinstance(node, ast.JoinedStr):
            out |= {n.id for n in ast.walk(node) if isinstance(n, ast.Name)}
    return out


def _renaming(tree: ast.Module, rng: random.Random) -> dict[tuple[int, int], str]:
    """(line, byte column) of every Name to rename -> its new name."""
    taken = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)} | set(dir(builtins)) | set(keyword.kwlist)
    taken |= {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    taken |= _bound_otherwise(tree)
    pool = [n for n in NAME_POOL if n not in taken]
    rng.shuffle(pool)
    out: dict[tuple[int, int], str] = {}
    outer = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
    inner = {id(m) for n in outer for m in ast.walk(n) if m is not n and isinstance(m, ast.FunctionDef | ast.AsyncFunctionDef)}
    for fn in (f for f in outer if id(f) not in inner and not _introspects(f)):
        names = sorted(_own_stores(fn) - _bound_otherwise(fn) - {"_"})
        new: dict[str, str] = {}
        for i, name in enumerate(names):
            if name.startswith("__"):
                continue
            new[name] = pool[i % len(pool)] + (str(i // len(pool) + 2) if i >= len(pool) else "") if pool else f"v{i}"
        for node in (n for stmt in fn.body for n in ast.walk(stmt)):
            if isinstance(node, ast.Name) and node.id in new:
                out[(node.lineno, node.col_offset)] = new[node.id]
    return out


class _Renamer(ast.NodeTransformer):
    def __init__(self, renaming: dict[tuple[int, int], str]) -> None:
        self.renaming = renaming

    def visit_Name(self, node: ast.Name) -> ast.Name:
        node.id = self.renaming.get((node.lineno, node.col_offset), node.id)
        return node


def _plain_string(tok: str) -> bool:
    """A one-line string literal without prefix, quotes or escapes inside: either quote will do."""
    return len(tok) >= 2 and tok[0] in "'\"" and tok[-1] == tok[0] and not tok.startswith(("'''", '"""')) \
        and not any(c in tok[1:-1] for c in "'\"\\")


def equivalent_python(source: str, rng: random.Random) -> str:
    """`source` with its functions' local variables renamed and its plain strings in one quote
    style, both drawn with `rng`; `source` itself when it does not parse or the rewrite would
    not be the same program."""
    try:
        tree = ast.parse(source)
        tokens = list(tokenize.generate_tokens(io.StringIO(source).readline))
    except (SyntaxError, ValueError, tokenize.TokenError, RecursionError):
        return source
    renaming = _renaming(tree, rng)
    quote = rng.choice("'\"")
    lines = source.splitlines(keepends=True)
    edits: list[tuple[int, int, int, str]] = []  # (line, start col, end col, new text), characters
    for tok in tokens:
        (row, col), (erow, ecol) = tok.start, tok.end
        if tok.type == tokenize.NAME:
            byte_col = len(lines[row - 1][:col].encode())
            if (row, byte_col) in renaming:
                edits.append((row, col, ecol, renaming[(row, byte_col)]))
        elif tok.type == tokenize.STRING and row == erow and _plain_string(tok.string) and tok.string[0] != quote:
            edits.append((row, col, ecol, quote + tok.string[1:-1] + quote))
    if not edits:
        return source
    for row, col, ecol, text in sorted(edits, reverse=True):
        line = lines[row - 1]
        lines[row - 1] = line[:col] + text + line[ecol:]
    out = "".join(lines)
    try:
        same = ast.dump(ast.parse(out)) == ast.dump(_Renamer(renaming).visit(tree))
    except (SyntaxError, ValueError, RecursionError):
        same = False
    return out if same else source


def _is_python(info: str, body: str) -> bool:
    lang = info.strip().split(maxsplit=1)[0].lower() if info.strip() else ""
    if lang:
        return lang in PYTHON_INFO
    try:
        ast.parse(body)
    except (SyntaxError, ValueError, RecursionError):
        return False
    return True


class ProgramFilter:
    """Streaming `equivalent-program`: feed text deltas, get the served text back; `finish()`
    gives what is still held (a block left open by the stream's end, unchanged)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self.rng = rng or random.Random()
        self._line = ""  # the current line, held while it may open a fence
        self._mid_line = False  # the current line has been sent in part: it opens no fence
        self._fence: re.Match[str] | None = None  # the open block's fence
        self._opening = ""  # ... and its line as it came
        self._block: list[str] = []  # the open block's lines after its fence

    def feed(self, delta: str) -> str:
        out: list[str] = []
        text = self._line + delta
        self._line = ""
        while text:
            nl = text.find("\n")
            if nl < 0:
                self._partial(text, out)
                break
            line, text = text[: nl + 1], text[nl + 1:]
            self._whole(line, out)
        return "".join(out)

    def finish(self) -> str:
        """What is held: a block closed by the last line (rewritten), an unfinished last line,
        or an unclosed block as it came."""
        out: list[str] = []
        rest, self._line = self._line, ""
        if self._fence is not None and rest and _closes(self._fence, rest):
            self._whole(rest, out)
            rest = ""
        if self._fence is not None:
            rest = self._opening + "".join(self._block) + rest
        self._fence, self._block, self._mid_line = None, [], False
        return "".join(out) + rest

    def _partial(self, text: str, out: list[str]) -> None:
        """An unfinished line: held inside a block or while it may still open one."""
        if self._fence is not None or (not self._mid_line and _may_open(text)):
            self._line = text
        else:
            out.append(text)
            self._mid_line = True

    def _whole(self, line: str, out: list[str]) -> None:
        mid, self._mid_line = self._mid_line, False
        if self._fence is None:
            opened = None if mid else _FENCE.match(line.rstrip("\n"))
            if opened is not None and not (opened.group(2)[0] == "`" and "`" in opened.group(3)):
                self._fence, self._opening = opened, line
                return
            out.append(line)
            return
        if _closes(self._fence, line):
            body = "".join(self._block)
            if _is_python(self._fence.group(3), body):
                body = equivalent_python(body, self.rng)
            out.append(self._opening + body + line)
            self._fence, self._block = None, []
            return
        self._block.append(line)


def _may_open(text: str) -> bool:
    """Whether an unfinished line could still turn out to open a fence."""
    rest = text[len(text) - len(text.lstrip(" ")):]
    if len(text) - len(rest) > 3:
        return False
    return rest == "" or "```".startswith(rest) or "~~~".startswith(rest) or rest.startswith(("```", "~~~"))


def _closes(fence: re.Match[str], line: str) -> bool:
    m = _FENCE.match(line.rstrip("\n"))
    return m is not None and m.group(2)[0] == fence.group(2)[0] and len(m.group(2)) >= len(fence.group(2)) \
        and not m.group(3).strip()


def equivalent_programs(text: str, rng: random.Random | None = None) -> str:
    """`text` with every Python code block in an equivalent form (`ProgramFilter`, whole)."""
    f = ProgramFilter(rng)
    return f.feed(text) + f.finish()
