"""Tables of programs that run another program, and of interpreters whose flags carry code.

Data, not logic: the analyser in ``_analyze.py`` reads these to find the command
behind ``sudo``, ``nohup``, ``timeout 5`` ... and the code behind ``python -c``.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Wrapper:
    """``prog [options] [positional...] COMMAND ARGS``: options taking a value, positionals to skip."""

    opts_with_arg: frozenset[str] = frozenset()
    positional: int = 0
    skip_assignments: bool = False  # env: NAME=VALUE before the command


def _w(opts: str = "", positional: int = 0, skip_assignments: bool = False) -> Wrapper:
    return Wrapper(frozenset(opts.split()), positional, skip_assignments)


WRAPPERS: dict[str, Wrapper] = {
    "sudo": _w("-u -g -C -D -h -p -r -t -U -T --user --group --chdir --prompt --host"),
    "doas": _w("-u -C"),
    "env": _w("-u -C -P --unset --chdir", skip_assignments=True),
    "nohup": _w(),
    "setsid": _w(),
    "stdbuf": _w("-i -o -e"),
    "nice": _w("-n --adjustment"),
    "ionice": _w("-c -n -p -t --class --classdata"),
    "chrt": _w("-p", positional=1),
    "timeout": _w("-s -k --signal --kill-after", positional=1),
    "time": _w("-f -o --format --output"),
    "command": _w(),
    "builtin": _w(),
    "exec": _w("-a"),
    "unbuffer": _w(),
    "torsocks": _w("-a -P -u -p -i --address --port"),
    "torify": _w(),
    "tsocks": _w(),
    "proxychains": _w("-f"),
    "proxychains4": _w("-f"),
    "strace": _w("-o -e -p -s -u -E -P -I -b -a -O -S -X"),
    "ltrace": _w("-o -e -p -s -u -E -a -n -l"),
    "xargs": _w("-I -n -P -d -L -s -E -a --delimiter --max-args --max-procs --arg-file --replace"),
    "chroot": _w("--userspec --groups", positional=1),
    "unshare": _w("-S -G -R -w --setuid --setgid --root --wd --map-user --map-group"),
    "nsenter": _w("-t -S -G -w -r -T --target --setuid --setgid --wd --root"),
    "setpriv": _w("--reuid --regid --groups --inh-caps --bounding-set --ambient-caps"),
    "firejail": _w(),
    "systemd-run": _w("-p -u -E -H -M -t --unit --property --setenv --description --on-calendar --uid --gid"),
    "busybox": _w(),
    "sshpass": _w("-p -f -d -e -P"),
    "caffeinate": _w(),
    "rlwrap": _w(),
    "daemonize": _w("-p -l -u -c -e -o -a"),
    "start-stop-daemon": _w("-x -n -u -p -c -d -r -N --exec --name --pidfile --chuid --chdir"),
    "screen": _w("-S -c -t -L -e -h -p -T -X"),
    "dtach": _w("-e -r"),
    "faketime": _w("-f", positional=1),
    "catchsegv": _w(),
    "eatmydata": _w(),
    "tini": _w(),
    "dumb-init": _w(),
    "flatpak-spawn": _w(),
    "pkexec": _w("--user"),
    "run-one": _w(),
    "retry": _w("-t -d --times --delay"),
    "setarch": _w("-B -R -L -X -Z -3 -F", positional=1),
    "linux32": _w(),
    "linux64": _w(),
    "taskset": _w(positional=1),
    "cpulimit": _w("-l -p -e --limit --pid --exe"),
    "prlimit": _w("-p --pid"),
    "numactl": _w("-C -N -m -p -i --cpunodebind --membind --physcpubind --preferred --interleave"),
    "xvfb-run": _w("-a -n -s -e -f --server-args --server-num --error-file --auth-file"),
    "dbus-launch": _w(),
    "fakeroot": _w("-l -s -i"),
    "proot": _w("-r -b -w -R -q -k --rootfs --bind --cwd"),
    "gosu": _w(positional=1),
    "su-exec": _w(positional=1),
    "setuidgid": _w(positional=1),
    "s6-setuidgid": _w(positional=1),
    "chpst": _w("-u -U -e -/ -n -l -L -m -d -o -p -f -c -r -t"),
}

# Builtins/flags after which nothing runs: `command -v nc` only looks nc up.
LOOKUP_ONLY = {"command": frozenset({"-v", "-V"}), "builtin": frozenset()}

SHELLS = frozenset(
    {
        "sh",
        "bash",
        "dash",
        "zsh",
        "ksh",
        "ash",
        "mksh",
        "yash",
        "rbash",
        "lksh",
        "pdksh",
        "tcsh",
        "csh",
        "fish",
    }
)
SHELL_OPTS_WITH_ARG = frozenset({"-o", "+o", "-O", "+O", "--rcfile", "--init-file"})

# Interpreter -> (code flags, options taking a value). A cluster ending in a code flag
# (perl -ne, python -Bc) takes the next argument as code.
INTERPRETERS: dict[str, tuple[str, frozenset[str], frozenset[str]]] = {
    "python": ("python", frozenset({"-c"}), frozenset({"-W", "-X", "-m", "--check-hash-based-pycs"})),
    "perl": ("perl", frozenset({"-e", "-E"}), frozenset({"-I", "-M", "-m", "-x", "-C"})),
    "ruby": ("ruby", frozenset({"-e"}), frozenset({"-I", "-r", "-C", "-E", "-F"})),
    "node": ("javascript", frozenset({"-e", "--eval", "-p", "--print"}), frozenset({"-r", "--require"})),
    "deno": ("javascript", frozenset({"eval"}), frozenset()),
    "bun": ("javascript", frozenset({"-e", "--eval"}), frozenset()),
    "php": ("php", frozenset({"-r"}), frozenset({"-c", "-d", "-f", "-z"})),
    "lua": ("lua", frozenset({"-e"}), frozenset({"-l"})),
    "tclsh": ("tcl", frozenset(), frozenset()),
    "expect": ("tcl", frozenset({"-c"}), frozenset({"-f"})),
    "pwsh": (
        "powershell",
        frozenset({"-c", "-C", "-command", "-Command", "-COMMAND"}),
        frozenset({"-ExecutionPolicy", "-ep", "-ex", "-WindowStyle", "-w", "-File", "-f"}),
    ),
    "julia": ("julia", frozenset({"-e", "--eval", "-E", "--print"}), frozenset({"-p", "-t", "-J"})),
    "awk": ("awk", frozenset(), frozenset({"-F", "-v", "-f", "--field-separator", "--assign"})),
    "jrunscript": ("javascript", frozenset({"-e"}), frozenset({"-cp", "-classpath", "-l"})),
    "rscript": ("r", frozenset({"-e"}), frozenset({"--default-packages"})),
    "r": ("r", frozenset({"-e"}), frozenset({"-f", "--file"})),
    "elixir": ("elixir", frozenset({"-e", "--eval"}), frozenset({"-r", "--require", "-pa", "-pz", "--erl"})),
}


def interpreter_key(name: str) -> str | None:
    """``python3.11`` -> ``python``; ``gawk`` -> ``awk``; ``nodejs`` -> ``node``."""
    base = name.rstrip("0123456789.")
    if base in ("python", "pypy", "ipython"):
        return "python"
    if base in ("gawk", "mawk", "nawk", "awk", "busybox-awk"):
        return "awk"
    if base == "nodejs":
        return "node"
    if base in ("luajit", "lua"):
        return "lua"
    if base in ("php", "php-cli"):
        return "php"
    if base in ("pwsh", "powershell", "pwsh-preview"):
        return "pwsh"
    return base if base in INTERPRETERS else None


def shell_key(name: str) -> bool:
    return name in SHELLS or name.rstrip("0123456789.") in SHELLS
