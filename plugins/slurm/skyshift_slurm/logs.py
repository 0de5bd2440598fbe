"""Reading replica output files with `tail`, the same way on this machine and over ssh.

The manager's `logs()` runs `tail_command` through a transport and passes each output line to
`parse_line`. Every line arrives prefixed with its replica index, because tail's own `==> FILE <==`
headers go missing for files that appear while tail follows (GNU coreutils 9.1).
"""

from __future__ import annotations

import re
import shlex

# Seconds between checks for new output when tail cannot use inotify (files on NFS, for example).
FOLLOW_POLL_SECONDS = 0.5
_REPLICA_FILE = re.compile(r"^replica-(\d+)\.out$")


def tail_command(files: dict[int, str], lines: int | None, follow: bool) -> list[str]:
    """Print the last `lines` lines of each replica's file (all when None), each prefixed `<index><TAB>`.

    Without `follow` the files are read one after another. With `follow`, one `tail -F` per file
    prints what is appended, also to files that do not exist yet. When the command's standard
    input closes, its whole process group ends, so no tail outlives the reader. The caller must
    therefore start it in a process group of its own.
    """
    count = str(lines) if lines is not None else "+1"
    options = f"-n {count} -F -s {FOLLOW_POLL_SECONDS}" if follow else f"-n {count}"
    # The shell's read takes one line at a time from the pipe, so followed lines arrive as they
    # are written. awk and sed may keep input in a buffer instead (mawk does).
    prefix = "while IFS= read -r line || [ -n \"$line\" ]; do printf '%s\\t%s\\n' "
    readers = [
        f'tail {options} -- {shlex.quote(path)} 2>/dev/null | {prefix}{index} "$line"; done'
        for index, path in sorted(files.items())
    ]
    if not follow:
        return ["sh", "-c", "\n".join(readers)]
    script = "\n".join(
        [
            "trap 'trap - EXIT HUP INT TERM; kill 0' EXIT HUP INT TERM",
            *(f"{reader} &" for reader in readers),
            "cat >/dev/null",
        ]
    )
    return ["sh", "-c", script]


def parse_line(line: str) -> tuple[int, str] | None:
    """Split a `tail_command` line into (replica index, text); None for anything else."""
    index, separator, text = line.partition("\t")
    if not separator or not index.isdigit():
        return None
    return int(index), text


def list_command(directory: str) -> list[str]:
    """List a work directory's files, printing nothing when it does not exist."""
    return ["sh", "-c", 'ls -1 -- "$1" 2>/dev/null || true', "sh", directory]


def replica_files(listing: str) -> list[int]:
    """Return the replica indices of the `replica-<index>.out` files in an `ls -1` listing."""
    indices = []
    for name in listing.splitlines():
        match = _REPLICA_FILE.match(name.strip())
        if match:
            indices.append(int(match.group(1)))
    return sorted(indices)
