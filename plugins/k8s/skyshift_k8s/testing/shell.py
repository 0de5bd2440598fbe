"""A tiny POSIX-shell simulator that decides what a simulated container does.

The kubelet never runs processes. It turns a container's command and args into a script
(`container_script`) and simulates it with `simulate_script`, which yields timed output lines,
a run time and an exit code. `pods/exec` simulates its command the same way.

Supported syntax:

- simple commands separated by `;`, newlines, `&&` and `||`, and `# comments`;
- single and double quotes, backslash escapes, and `$NAME`, `${NAME}`, `$?`, `$#`, `$@`, `$*` and
  positional `$1`..`$9`, `${10}` expansion. An unquoted expansion is split into fields at blanks, as
  with the default IFS (NOTE: a quoted "$@" gives one field, unlike in a real shell);
- the redirections `>&2`, `1>&2`, `2>&1`, `>FILE` and `2>FILE`, where output to a file is discarded;
- `NAME=value` assignments.

Supported commands:

- `echo [-n] [-e] WORDS...` and `printf FORMAT [ARGS...]` (`%s`, `%d`, `%%`, `\\n`, `\\t`) write output.
- `sleep SECONDS` advances the simulated clock (suffixes s, m, h, d; `sleep infinity` never ends).
- `exit [CODE]` ends the script with CODE (default: the last status).
- `true`, `:`, `false`, `cat` (copies stdin), `env`, `printenv [NAME]`, `hostname`, `pwd`, `cd`,
  `export NAME=value`, `set -- ARGS...` and `shift [N]` (positional parameters; other `set` options
  are accepted and ignored), and `sh -c SCRIPT [NAME [ARGS...]]` / `bash -c SCRIPT`.

Any other command writes `sh: 1: NAME: not found` to stderr and has status 127, as in a minimal
image. A syntax error (an unterminated quote, a pipe `|`, a background `&`) ends the script with
status 2.
"""

from __future__ import annotations

import math
import os
import shlex
from collections.abc import Mapping
from dataclasses import dataclass, field

_SHELLS = {"sh", "bash", "ash", "dash", "zsh"}


@dataclass(frozen=True)
class Output:
    """One line that the program writes, `offset` seconds after it starts."""

    offset: float
    stream: str  # "stdout" or "stderr"
    text: str


@dataclass(frozen=True)
class ShellRun:
    """The simulated run of a script."""

    outputs: tuple[Output, ...]
    duration: float  # seconds; math.inf when the script never exits
    exit_code: int | None  # None when the script never exits


class _SyntaxError(Exception):
    pass


class _Exit(Exception):
    def __init__(self, code: int) -> None:
        super().__init__(code)
        self.code = code


# ("text", literal), ("var", name) for a quoted expansion, or ("split", name) for an unquoted one,
# whose value is split into fields at blanks. Variables expand when the command runs.
Segment = tuple[str, str]


@dataclass
class _Command:
    words: list[list[Segment]] = field(default_factory=list)
    stdout_target: str = "stdout"  # "stdout", "stderr" or "discard"
    stderr_target: str = "stderr"


def container_script(container: Mapping[str, object]) -> str | None:
    """Return the script that a container runs, or None if it runs its image's default program.

    `sh -c SCRIPT` (or bash, with any flags that include c) yields SCRIPT; any other command and
    args are joined into one shell-quoted command line.
    """
    words = [str(word) for word in (container.get("command") or [])] + [
        str(word) for word in (container.get("args") or [])
    ]
    if not words:
        return None
    if len(words) >= 3 and os.path.basename(words[0]) in _SHELLS and words[1].startswith("-") and "c" in words[1]:
        return words[2]
    return shlex.join(words)


def _tokenize(script: str) -> list[object]:
    """Split a script into words (lists of segments) and operators (tuples like ("op", ";"))."""
    tokens: list[object] = []
    word: list[Segment] = []
    started = False
    i = 0

    def end_word() -> None:
        nonlocal word, started
        if started:
            tokens.append(word)
        word, started = [], False

    def variable(position: int, kind: str) -> tuple[Segment, int]:
        following = script[position + 1 : position + 2]
        if following == "{":
            close = script.find("}", position + 2)
            if close == -1:
                raise _SyntaxError("unterminated ${")
            return (kind, script[position + 2 : close]), close + 1
        if following and (following in "?#@*" or following.isdigit()):
            return (kind, following), position + 2
        end = position + 1
        while end < len(script) and (script[end].isalnum() or script[end] == "_"):
            end += 1
        if end == position + 1:
            return ("text", "$"), end
        return (kind, script[position + 1 : end]), end

    while i < len(script):
        char = script[i]
        if char in " \t":
            end_word()
            i += 1
        elif char in "\n;":
            end_word()
            tokens.append(("op", ";"))
            i += 1
        elif char in "&|":
            end_word()
            if script[i : i + 2] in ("&&", "||"):
                tokens.append(("op", script[i : i + 2]))
                i += 2
            else:
                raise _SyntaxError(f"'{char}' (pipes and background jobs) is not supported by the simulated shell")
        elif char == "#" and not started:
            while i < len(script) and script[i] != "\n":
                i += 1
        elif char == "'":
            close = script.find("'", i + 1)
            if close == -1:
                raise _SyntaxError("unterminated quoted string")
            word.append(("text", script[i + 1 : close]))
            started = True
            i = close + 1
        elif char == '"':
            started = True
            # An empty quoted string is still one (empty) field.
            word.append(("text", ""))
            i += 1
            while True:
                if i >= len(script):
                    raise _SyntaxError("unterminated quoted string")
                if script[i] == '"':
                    i += 1
                    break
                if script[i] == "\\" and i + 1 < len(script) and script[i + 1] in '"\\$`':
                    word.append(("text", script[i + 1]))
                    i += 2
                elif script[i] == "$":
                    segment, i = variable(i, "var")
                    word.append(segment)
                else:
                    word.append(("text", script[i]))
                    i += 1
        elif char == "\\":
            if i + 1 < len(script) and script[i + 1] != "\n":
                word.append(("text", script[i + 1]))
                started = True
            i += 2
        elif char == "$":
            segment, i = variable(i, "split")
            word.append(segment)
            started = True
        elif char == ">" or (char in "12" and not started and script[i + 1 : i + 2] == ">"):
            end_word()
            source = "1"
            if char in "12":
                source = char
                i += 1
            i += 1
            if script[i : i + 2] in ("&1", "&2"):
                tokens.append(("redirect", source, script[i + 1]))
                i += 2
            else:
                tokens.append(("redirect", source, "file"))
                while i < len(script) and script[i] in " \t":
                    i += 1
                while i < len(script) and script[i] not in " \t\n;&|":
                    i += 1
        else:
            word.append(("text", char))
            started = True
            i += 1
    end_word()
    return tokens


class _Simulation:
    def __init__(
        self, env: Mapping[str, str], stdin: str, positional: list[str] | None = None, arg0: str = "sh"
    ) -> None:
        self.env = dict(env)
        self.stdin = stdin
        self.positional = list(positional or [])
        self.arg0 = arg0
        self.offset = 0.0
        self.status = 0
        self.outputs: list[Output] = []
        self._pending = {"stdout": "", "stderr": ""}

    def write(self, stream: str, text: str) -> None:
        if stream == "discard":
            return
        buffered = self._pending[stream] + text
        *complete, rest = buffered.split("\n")
        for line in complete:
            self.outputs.append(Output(self.offset, stream, line))
        self._pending[stream] = rest

    def flush(self) -> None:
        for stream, rest in self._pending.items():
            if rest:
                self.outputs.append(Output(self.offset, stream, rest))
        self._pending = {"stdout": "", "stderr": ""}

    def run(self, script: str) -> None:
        """Run a script; raise _Exit when it calls exit or never ends."""
        try:
            tokens = _tokenize(script)
        except _SyntaxError as err:
            self.write("stderr", f"sh: 1: Syntax error: {err}\n")
            raise _Exit(2) from None
        connector = ";"
        command = _Command()
        for token in tokens + [("op", ";")]:
            if isinstance(token, list):
                command.words.append(token)
            elif token[0] == "redirect":
                _, source, target = token
                destination = {"1": "stdout", "2": "stderr", "file": "discard"}[target]
                if source == "1":
                    command.stdout_target = destination
                else:
                    command.stderr_target = destination
            else:
                if command.words and self._should_run(connector):
                    self.status = self._execute(command)
                if command.words or token[1] == ";":
                    connector = token[1]
                command = _Command()

    def _should_run(self, connector: str) -> bool:
        if connector == "&&":
            return self.status == 0
        if connector == "||":
            return self.status != 0
        return True

    def _value(self, name: str) -> str:
        if name == "?":
            return str(self.status)
        if name == "#":
            return str(len(self.positional))
        if name in ("@", "*"):
            return " ".join(self.positional)
        if name.isdigit():
            index = int(name)
            if index == 0:
                return self.arg0
            return self.positional[index - 1] if index <= len(self.positional) else ""
        return self.env.get(name, "")

    def _expand(self, segments: list[Segment]) -> str:
        """Expand a word into one string, without field splitting (as for assignments)."""
        return "".join(value if kind == "text" else self._value(value) for kind, value in segments)

    def _fields(self, segments: list[Segment]) -> list[str]:
        """Expand a word into fields: unquoted expansions split at blanks, and an unquoted
        expansion that is empty adds no field, as with the default IFS."""
        fields: list[str] = []
        current = ""
        open_field = False
        for kind, value in segments:
            if kind != "split":
                current += value if kind == "text" else self._value(value)
                open_field = True
                continue
            expanded = self._value(value)
            pieces = expanded.split()
            if not pieces:
                if expanded and open_field:
                    fields.append(current)
                    current, open_field = "", False
                continue
            if expanded[0].isspace() and open_field:
                fields.append(current)
                current = ""
            for position, piece in enumerate(pieces):
                if position > 0:
                    fields.append(current)
                    current = ""
                current += piece
            open_field = True
            if expanded[-1].isspace():
                fields.append(current)
                current, open_field = "", False
        if open_field:
            fields.append(current)
        return fields

    def _execute(self, command: _Command) -> int:
        raw_words = list(command.words)
        while raw_words and _is_assignment(raw_words[0]):
            name, value = self._expand(raw_words.pop(0)).split("=", 1)
            self.env[name] = value
        words = [field for segments in raw_words for field in self._fields(segments)]
        if not words:
            return 0
        name, args = words[0], words[1:]
        out, err = command.stdout_target, command.stderr_target

        if name == "echo":
            newline, escapes = "\n", False
            while args and args[0] in ("-n", "-e", "-ne", "-en"):
                newline = "" if "n" in args[0] else newline
                escapes = escapes or "e" in args[0]
                args = args[1:]
            text = " ".join(args)
            if escapes:
                text = text.replace("\\n", "\n").replace("\\t", "\t")
            self.write(out, text + newline)
            return 0

        if name == "printf":
            if not args:
                self.write(err, "printf: usage: printf format [arguments]\n")
                return 2
            self.write(out, _printf(args[0], args[1:]))
            return 0

        if name == "sleep":
            return self._sleep(args, err)

        if name == "exit":
            code = self.status
            if args:
                try:
                    code = int(args[0]) % 256
                except ValueError:
                    self.write(err, f"sh: 1: exit: Illegal number: {args[0]}\n")
                    code = 2
            raise _Exit(code)

        if name in ("true", ":", "cd"):
            return 0

        if name == "false":
            return 1

        if name == "pwd":
            self.write(out, "/\n")
            return 0

        if name == "hostname":
            self.write(out, self.env.get("HOSTNAME", "localhost") + "\n")
            return 0

        if name == "cat":
            if args:
                self.write(err, f"cat: {args[0]}: No such file or directory\n")
                return 1
            self.write(out, self.stdin)
            return 0

        if name in ("env", "printenv"):
            if name == "printenv" and args:
                if args[0] not in self.env:
                    return 1
                self.write(out, self.env[args[0]] + "\n")
                return 0
            for key in sorted(self.env):
                self.write(out, f"{key}={self.env[key]}\n")
            return 0

        if name == "set":
            return self._set(args)

        if name == "shift":
            count = 1
            if args:
                try:
                    count = int(args[0])
                except ValueError:
                    self.write(err, f"sh: 1: shift: Illegal number: {args[0]}\n")
                    raise _Exit(2) from None
            if count < 0 or count > len(self.positional):
                self.write(err, "sh: 1: shift: can't shift that many\n")
                raise _Exit(2)
            self.positional = self.positional[count:]
            return 0

        if name == "export":
            for assignment in args:
                if "=" in assignment:
                    key, value = assignment.split("=", 1)
                    self.env[key] = value
            return 0

        if os.path.basename(name) in _SHELLS and len(args) >= 2 and args[0].startswith("-") and "c" in args[0]:
            nested = _Simulation(self.env, self.stdin, args[3:], args[2] if len(args) > 2 else "sh")
            nested.offset = self.offset
            try:
                nested.run(args[1])
            except _Exit as exit_:
                nested.status = exit_.code
            nested.flush()
            self.outputs.extend(nested.outputs)
            self.offset = nested.offset
            if math.isinf(self.offset):
                raise _Exit(0)
            return nested.status
        self.write(err, f"sh: 1: {name}: not found\n")
        return 127

    def _set(self, args: list[str]) -> int:
        """Run `set [OPTIONS] [--] [ARGS...]`, which replaces the positional parameters when ARGS or `--` are given."""
        remaining = list(args)
        while remaining and remaining[0][:1] in ("-", "+") and remaining[0] != "--":
            remaining.pop(0)
        if remaining and remaining[0] == "--":
            self.positional = remaining[1:]
        elif remaining:
            self.positional = remaining
        return 0

    def _sleep(self, args: list[str], err: str) -> int:
        if not args:
            self.write(err, "sleep: missing operand\n")
            return 1
        total = 0.0
        units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
        for arg in args:
            if arg in ("infinity", "inf"):
                total = math.inf
                continue
            number, unit = (arg[:-1], arg[-1]) if arg[-1:] in units else (arg, "s")
            try:
                total += float(number) * units[unit]
            except ValueError:
                self.write(err, f"sleep: invalid time interval '{arg}'\n")
                return 1
        self.offset += total
        if math.isinf(self.offset):
            raise _Exit(0)  # the caller sees the infinite offset and reports "never exits"
        return 0


def _is_assignment(segments: list[Segment]) -> bool:
    """Tell whether a word is `NAME=value`: its leading literal text names a variable before `=`."""
    prefix = ""
    for kind, value in segments:
        if kind != "text":
            break
        prefix += value
        if "=" in prefix:
            return prefix.split("=", 1)[0].isidentifier()
    return False


def _printf(template: str, args: list[str]) -> str:
    template = template.replace("\\n", "\n").replace("\\t", "\t")
    pieces, index, i = [], 0, 0
    while i < len(template):
        if template[i] == "%" and i + 1 < len(template):
            spec = template[i + 1]
            if spec == "%":
                pieces.append("%")
            elif spec in "sd":
                pieces.append(args[index] if index < len(args) else "")
                index += 1
            else:
                pieces.append(template[i : i + 2])
            i += 2
        else:
            pieces.append(template[i])
            i += 1
    return "".join(pieces)


def simulate_script(script: str, env: Mapping[str, str] | None = None, stdin: str = "") -> ShellRun:
    """Simulate `script` and return its output lines, run time and exit code."""
    simulation = _Simulation(env or {}, stdin)
    code: int | None
    try:
        simulation.run(script)
        code = simulation.status
    except _Exit as exit_:
        code = exit_.code
    simulation.flush()
    if math.isinf(simulation.offset):
        return ShellRun(tuple(simulation.outputs), math.inf, None)
    return ShellRun(tuple(simulation.outputs), simulation.offset, code)
