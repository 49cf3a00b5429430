"""What a command does, as behaviour: the effects rules match, whatever program or spelling is used.

``effects(analysis)`` looks at every simple command, file operation and code payload the
analyser found and names what they would do:

- ``connect``: opens a connection to a remote host (``Connects`` holds ``host:port``);
- ``send``: sends local data to a remote host (upload, POST, data piped or redirected into a
  network client, code that writes a file it read to a client socket, a copy to a host);
- ``serve``: serves files or a shell to the network (quick web servers, listeners);
- ``read_credential`` / ``search_credential``: reads, copies or hunts for credential-class files;
- ``write_persistence``: writes a place that runs code later (shell start-up files of any
  shell, cron, systemd, authorized_keys, rc scripts, preload, sudoers, account files);
- ``detach``: starts a process that outlives the call (nohup, setsid, ``&``, screen -dm ...);
- ``decode_exec``: runs something it decoded;
- ``socket_shell``: code in any language that joins a socket to a shell or to exec/popen;
- ``encrypt``: encrypts files without a prompt (passphrase or key on the command line);
- ``set_clock``, ``timestomp``, ``account_change``, ``discovery``, ``proxy``.

Tables here are data; rules (Sigma, in ``rules/``) decide what is worth an alert.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from corral.detect._analyze import Analysis, SimpleCommand, basename, find_roots, ssh_destination
from corral.detect._prefilter import LiteralGate
from corral.detect._wrappers import interpreter_key, shell_key

_CHANGES = ("write", "append", "link", "modify", "chmod", "permit")  # file ops that change a file

_LOCAL_HOST = re.compile(r"^(localhost|127(\.\d+){3}|\[?::1\]?|0\.0\.0\.0|ip6-localhost)$", re.I)
_NET_CLIENTS = frozenset(
    ["nc", "ncat", "netcat", "telnet", "socat", "openssl", "ssh", "curl", "wget", "http", "xh", "ftp", "tftp"]
)
_URL = re.compile(r"^(?:[a-z][a-z0-9+.-]*://)(?:[^@/\s]*@)?(\[[^\]]+\]|[^:/\s?#]+)(?::(\d+))?", re.I)
_DEV_NET = re.compile(r"/dev/(?:tcp|udp)/([^/\s\"']+)/(\d+|\$\{?\w+\}?)")
_SSH_TARGET = re.compile(r"^(?:[\w.-]+@)?([\w.-]+|\[[^\]]+\])(?::|$)")

CREDENTIAL_PATH = re.compile(
    # Private keys only: a public key (id_*.pub) is meant to be read and handed out.
    r"(\.aws/credentials|\.aws/config$|/\.ssh/id_[a-z0-9_]+(?!\w|\.pub\b)|(^|/)id_(rsa|dsa|ecdsa|ed25519)$"
    r"|(^|/)\.gnupg(/|$)"
    r"|(^|/)\.netrc$|\.git-credentials|\.docker/config\.json|\.kube/config|kubeconfig"
    r"|gcloud/(credentials\.db|access_tokens\.db|application_default_credentials\.json|legacy_credentials)"
    r"|\.azure/(accessTokens\.json|msal_token_cache)|(^|/)\.oci(/|$)|/etc/(g?shadow|sudoers)(-|$)"
    r"|(^|/)\.pgpass$|(^|/)\.my\.cnf$|(^|/)\.vault-token$|/var/run/secrets/|/run/secrets/"
    r"|\.config/gh/hosts\.yml|\.password-store|(^|/)\.?wallet\.dat$|\.kdbx$)",
    re.I,
)
_STRONG_CRED_NAMES = re.compile(
    r"^[*]?(credentials|id_rsa\*?|id_dsa|id_ecdsa|id_ed25519|\.netrc|\.git-credentials|accessTokens\.json"
    r"|msal_token_cache\.json|credentials\.db|access_tokens\.db|\.gnupg|\.pgpass|wallet\.dat|\*\.kdbx"
    r"|\.vault-token|kubeconfig|\.aws|\.ssh|authorized_keys|shadow)[*]?$",
    re.I,
)
_WEAK_CRED_NAMES = re.compile(
    r"^[*]?(\*\.pem|\*\.key|\*\.p12|\*\.pfx|token|\*token\*|\*secret\*|\*\.asc|\*\.tfstate|\*\.tfvars)$", re.I
)
_PASSWORD_WORDS = re.compile(
    r"pass(word|wd)?|secret|token|api[_-]?key|aws_secret|private[_ -]key|BEGIN", re.I
)
_BROAD_ROOT = re.compile(
    r"^(/+|/+(home|root|etc|var|opt|mnt|srv|users|Users|media|proc)(/.*)?|~[^/]*(/\.[^/]+)?/?|\$\{?HOME\}?/?"
    r"|/+\.[\w.-]+(/.*)?)$"
)

PERSISTENCE_PATH = re.compile(
    r"((^|/)\.(bash_profile|bash_login|bash_logout|bashrc|profile|zshrc|zprofile|zshenv|zlogin|zlogout|kshrc"
    r"|mkshrc|cshrc|tcshrc|login|xinitrc|xprofile|xsessionrc)$|\.config/fish/(config\.fish|conf\.d/)"
    r"|\.config/autostart/|/etc/(profile|bash\.bashrc|bashrc|zshrc|zsh/|profile\.d/|environment$|rc\.local"
    r"|rc\.common|init\.d/|cron|anacrontab|systemd/|ld\.so\.preload|sudoers|passwd$|shadow$|group$|update-motd\.d/"
    r"|xdg/autostart/)|/var/spool/cron|\.ssh/authorized_keys|\.config/systemd/user/|/lib/systemd/system/"
    r"|/usr/lib/systemd/)",
    re.I,
)

_SERVER_MODULES = re.compile(
    r"^(http\.server|SimpleHTTPServer|CGIHTTPServer|pyftpdlib|uploadserver|updog|wsgidav)$"
)
_SOCKET = re.compile(
    r"fsockopen|stream_socket_(client|server)|TCPSocket|TCPServer|net\.connect|new net\.Socket"
    r"|createConnection|net\.createServer|socket\.tcp|require\(\s*['\"]socket['\"]\s*\)|/inet/tcp|/inet/udp"
    r"|IO::Socket|new Socket\("
    r"|Socket\.new|java\.net\.Socket|socket\.socket|\bztcp\b|Network\.Socket|net\.dial|net\.Dial|TcpClient|\bsocket\("
    r"|\bconnect\s*\(\s*[\w\"'.]+\s*,|\.bind\(|\.listen\(|\.accept\(|\[\s*socket\s+[^\]\s]"
    r"|socketConnection|gen_tcp[.:]connect",  # R; Erlang and Elixir
    re.I,
)
_SHELL_REF = re.compile(
    r"(/bin/|\b)(ba|z|k|da|a|tc|c)?sh\b(\s+-i)?|cmd\.exe|\bpopen\s*\(\s*\w+\s*[,)]|IO\.popen\(\s*\w+|system\s*\$_"
    r"|\|&\s*getline|getline\s+c\b|\bexec\s*\(\s*\$\w+|proc_open|shell_exec|child_process|Runtime\.getRuntime|"
    r"ProcessBuilder|callCommand|os\.execute\s*\(\s*\w+\s*\)|io\.popen\s*\(\s*\w+"
    # PowerShell runs what it received with Invoke-Expression; Tcl with exec or a pipe open.
    r"|(?i:\biex\b|Invoke-Expression)|\bexec\s+\$\w+|\bopen\s+\"\|"
    # R runs what it read through pipe() or system(); Elixir and Erlang through System.cmd, os:cmd.
    r"|\bpipe\s*\(\s*\w+|\bsystem\s*\(\s*[A-Za-z_]\w*\s*[,)]|System\.cmd\s*\(|:?\bos[.:]cmd\s*\(",
)
# Code that reads a local file and writes to a client socket: the file leaves through that socket.
_FILE_READ = re.compile(
    r"\bio\.open\s*\(|\bopen\s*\(|File\.(read|open|binread)|readFileSync|createReadStream|\bfopen\s*\("
    r"|file_get_contents|\bslurp\b|readFile|\.read_bytes\(|\.read_text\(",
)
_SOCKET_WRITE = re.compile(  # a method call in any syntax: s.send( (most), t:send( (Lua), $s->send( (Perl)
    r"(\.|:|->)(send|sendall|write|puts|print|syswrite)\s*\(|\b(send|fwrite)\s*\(|\bsyswrite\b", re.I
)
_CLIENT_SOCKET = re.compile(
    r"socket\.socket|create_connection|\bsocket\(|net\.connect|createConnection|new net\.Socket|TCPSocket"
    r"|IO::Socket|fsockopen|stream_socket_client|socket\.tcp|java\.net\.Socket|TcpClient|net\.Dial|\bztcp\b"
    r"|/inet/tcp|Socket\.new|\[\s*socket\s+[^-\]\s]|\.tcp\s*\("  # LuaSocket: (require "socket").tcp()
    r"|socketConnection|gen_tcp[.:]connect",
    re.I,
)
_SERVER_CODE = re.compile(r"\.bind\(|\.listen\(|\.accept\(|createServer|TCPServer|stream_socket_server")
_LOOPBACK_LITERAL = re.compile(r"localhost|127\.0\.0\.1|::1")


def _outside_substitutions(word: str) -> str:
    """``word`` less what ``$(...)``, ``${...}`` and backticks hold."""
    out: list[str] = []
    depth, tick, i = 0, False, 0
    while i < len(word):
        c = word[i]
        if c == "`" and depth == 0:
            tick = not tick
        elif tick:
            pass
        elif word.startswith(("$(", "${"), i) or (depth and c in "({"):
            depth += 1
            i += 1 if c in "({" else 2
            continue
        elif depth and c in ")}":
            depth -= 1
        elif depth == 0:
            out.append(c)
        i += 1
    return "".join(out)


_DIRECTORY_SRV = re.compile(r"^_(ldap|kerberos|kpasswd|gc)\._(tcp|udp)\.|^_ldap\._tcp\.dc\._msdcs\.", re.I)
# The key an ssh-family client logs in with (`-i KEY`, `-iKEY`, `IdentityFile=KEY`, also inside an
# `rsync -e`/`GIT_SSH_COMMAND` string): the key is used there, not read out, so it is no credential read.
_SSH_IDENTITY = re.compile(r"(?:^|\s)-i\s*['\"]?[^\s'\"]+|(?i:identityfile)[=\s]\s*['\"]?[^\s'\"]+")
_SSH_CLIENTS = frozenset(("ssh", "scp", "sftp", "autossh", "ssh-copy-id"))
# Programs whose arguments naming a credential file are no read of it: they print or set the path.
_CRED_NOT_READ = frozenset(("echo", "printf", "ssh-keygen", "chmod", "ls"))
# Programs given a key that do not read it out: they set or show its metadata, or (ssh-add) load it
# into an agent that signs with it but never hands it back.
_KEY_NOT_READ = frozenset(
    ("chmod", "chown", "chgrp", "ls", "stat", "test", "[", "ssh-keygen", "setfacl", "ssh-add")
)
_PROC_NET = re.compile(r"^/proc/(net/(arp|route|ipv6_route|fib_trie|tcp6?|udp)|(\d+|self)/net/(arp|route))")
# Code that walks a tree looking for files by a credential's name: the same hunt as find -name.
_WALK = re.compile(
    r"os\.walk|\bglob\.|\.rglob\(|\.glob\(|Dir\.glob|File\.Find|readdirSync|filepath\.Walk|\bfind\s"
)
_QUOTED = re.compile(r"[\"']([^\"'\n]{1,300})[\"']")  # string literals in code
_PROXY_VARS = re.compile(
    r"^(https?_proxy|HTTPS?_PROXY|all_proxy|ALL_PROXY|ftp_proxy|FTP_PROXY|socks_proxy)=(.+)$"
)
_HIST_OFF = re.compile(
    r"^(HISTFILE=(/dev/null)?|HISTSIZE=0|HISTFILESIZE=0|SAVEHIST=0|HISTCONTROL=\S*ignore(space|both)\S*|HISTIGNORE=.*\*.*)$"
)


@functools.cache
def _gate() -> LiteralGate:
    """The costly patterns run only where one Aho-Corasick pass over the whole analysis (text,
    payloads, every argument and path) finds a literal they need: most commands touch none of
    these. Built on first use: deriving the literals is most of importing this module."""
    return LiteralGate(
        {"cred": CREDENTIAL_PATH, "persist": PERSISTENCE_PATH, "devnet": _DEV_NET, "socket": _SOCKET}
    )


@dataclass
class Effects:
    names: set[str] = field(default_factory=set)
    connects: list[str] = field(default_factory=list)
    credential_paths: list[str] = field(default_factory=list)
    # Arguments naming something under .ssh/, less the keys an ssh client logs in with and the
    # arguments of programs that do not read a key out (chmod 600 KEY, ssh-add KEY).
    key_mentions: list[str] = field(default_factory=list)
    persistence_paths: list[str] = field(default_factory=list)

    def add(self, name: str) -> None:
        self.names.add(name)


def _remote(host: str) -> bool:
    h = host.strip("[]")
    return bool(h) and not _LOCAL_HOST.match(h)


def _target_of_url(arg: str) -> tuple[str, str] | None:
    m = _URL.match(arg)
    if m is None:
        return None
    scheme = arg.split(":", 1)[0].lower()
    port = m.group(2) or {"http": "80", "https": "443", "ftp": "21", "ws": "80", "wss": "443"}.get(scheme, "")
    return m.group(1), port


def _operands(argv: tuple[str, ...]) -> list[str]:
    return [a for a in argv[1:] if not a.startswith("-")]


_HTTPIE_FILE = re.compile(r"^([\w.-]*(:?=)?@|@)[^\s@]+$")
_DATA_FLAGS = ("-d", "--data", "--data-binary", "--data-raw", "--data-urlencode", "--json")


class _Scan:
    def __init__(self, a: Analysis) -> None:
        self.a = a
        self.out = Effects()
        self.cwd_broad = False  # an earlier `cd /`, `cd ~` or `cd /tmp` in the same text
        parts = [a.text, *(t for _, t in a.payloads), *(f.path for f in a.files)]
        parts.extend(x for c in a.commands for x in c.argv)
        possible = _gate().possible("\n".join(parts))
        self.cred = "cred" in possible
        self.persist = "persist" in possible
        self.devnet = "devnet" in possible
        self.socket = "socket" in possible

    def serve(self, argv: tuple[str, ...]) -> None:
        """A server is a finding when it is exposed on every interface or hands out a broad tree."""
        args = argv[1:]
        if any(
            a in ("127.0.0.1", "localhost", "::1") or a.startswith(("127.0.0.1:", "localhost:")) for a in args
        ):
            return
        wide = any(a in ("0.0.0.0", "::", "[::]") or a.startswith(("0.0.0.0:", "[::]:")) for a in args)
        for i, a in enumerate(args):
            if i and args[i - 1] in ("--directory", "-d", "-t", "-h", "--root") and _BROAD_ROOT.match(a):
                wide = True
        if wide or self.cwd_broad:
            self.out.add("serve")

    def connect(self, host: str, port: str) -> None:
        if _remote(host):
            self.out.add("connect")
            self.out.connects.append(f"{host}:{port}")

    def run(self) -> Effects:
        a = self.a
        for c in a.commands:
            if c.argv:
                self.command(c)
        for f in a.files if self.persist else ():
            if f.op in _CHANGES and PERSISTENCE_PATH.search(f.path):
                self.out.add("write_persistence")
                self.out.persistence_paths.append(f.path)
        if self.devnet:
            for m in _DEV_NET.finditer(a.text + "\n" + "\n".join(t for _, t in a.payloads)):
                self.connect(m.group(1), m.group(2))
        remote = any(_remote(c.rsplit(":", 1)[0]) for c in self.out.connects)
        for pipe in a.pipelines:
            if remote and len(pipe) > 1 and any(p in _NET_CLIENTS for p in pipe[1:]):
                self._piped_to_network(pipe)
            decoder = pipe[0] in ("base64", "xxd", "openssl", "rev", "gunzip", "zcat", "tr")
            if len(pipe) > 1 and decoder and (shell_key(pipe[-1]) or interpreter_key(pipe[-1]) is not None):
                self.out.add("decode_exec")
        code = [t for lang, t in a.payloads if lang not in ("shell", "heredoc")]
        if a.payloads == [] and "\n" in a.text:  # a code tool's text, or a script body
            code.append(a.text)
        for text in code:
            if self.cred and "/.ssh/" in text:
                self.out.key_mentions.append(text)  # code fed from a heredoc or a file names a key
            literals = _QUOTED.findall(text)
            if _WALK.search(text) and any(_STRONG_CRED_NAMES.match(x.rsplit("/", 1)[-1]) for x in literals):
                self.out.add("search_credential")  # the names find -name counts as a hunt
            if any(_PROC_NET.match(x) for x in literals):
                self.out.add("discovery")
            if not (self.socket and _SOCKET.search(text)):
                continue
            if _SHELL_REF.search(text):
                self.out.add("socket_shell")
            client = not _SERVER_CODE.search(text) and not _LOOPBACK_LITERAL.search(text)
            if (
                client
                and _CLIENT_SOCKET.search(text)
                and _FILE_READ.search(text)
                and _SOCKET_WRITE.search(text)
            ):
                self.out.add("send")
        return self.out

    def _credential(self, path: str, *, read: bool, key_read: bool) -> None:
        """A path a program is given (or fed): a credential read, a key named, or neither."""
        if read and CREDENTIAL_PATH.search(path):
            self.out.add("read_credential")
            self.out.credential_paths.append(path)
        if key_read and "/.ssh/" in path:
            self.out.key_mentions.append(path)

    def _piped_to_network(self, pipe: tuple[str, ...]) -> None:
        head = pipe[0]
        if head in (
            "tar",
            "zip",
            "cat",
            "dd",
            "base64",
            "xxd",
            "gzip",
            "bzip2",
            "xz",
            "find",
            "7z",
        ):
            self.out.add("send")

    def command(self, c: SimpleCommand) -> None:
        argv = c.argv
        name = c.name.lower()
        args = argv[1:]
        if c.source == "decoded" and c.depth > 0:
            self.out.add("decode_exec")
        if c.background or name in ("nohup", "setsid", "disown", "daemonize", "start-stop-daemon"):
            self.out.add("detach")
        if name in ("screen",) and any(a.startswith("-d") for a in args):
            self.out.add("detach")
        if name == "tmux" and args[:1] and args[0] in ("new", "new-session") and "-d" in args:
            self.out.add("detach")
        if name not in ("echo", "printf") and any(_PROC_NET.match(a) for a in (*args, c.stdin_path or "")):
            self.out.add("discovery")  # the neighbour and route tables, whatever program reads them
        fed = c.stdin_path if c.stdin_path and not c.stdin_path.startswith("/dev/") else None
        if self.cred:
            for arg in _without_identities(name, args):
                self._credential(arg, read=name not in _CRED_NOT_READ, key_read=name not in _KEY_NOT_READ)
            if fed:  # whatever the program, a file redirected into it is read
                self._credential(fed, read=True, key_read=True)
        connected = len(self.out.connects)
        for arg in args:
            m = _PROXY_VARS.match(arg) if name in ("export", "env", "declare", "typeset") else None
            if m and m.group(2).strip("'\""):
                self.out.add("proxy")
            if name in ("export", "env", "declare") and _HIST_OFF.match(arg):
                self.out.add("disable_history")
        if name in ("cd", "pushd") and args and (_BROAD_ROOT.match(args[0]) or args[0].startswith("/tmp")):
            self.cwd_broad = True
        handler = getattr(self, "_" + name.replace("-", "_").replace(".", "_"), None)
        if handler is not None:
            handler(argv)
        if fed and name in _NET_CLIENTS and len(self.out.connects) > connected:
            self.out.add("send")  # `nc host port < file`: the file goes to the host it connected to
        key = interpreter_key(name)
        if key == "python" and "-m" in args:
            mod = args[args.index("-m") + 1] if args.index("-m") + 1 < len(args) else ""
            if _SERVER_MODULES.match(mod):
                self.serve(argv)
        if key == "php" and "-S" in args:
            self.serve(argv)
        if key == "ruby" and any(a == "-run" or a.startswith("-run") for a in args) and "httpd" in args:
            self.serve(argv)

    # -- per program -------------------------------------------------------------------------------

    def _curl(self, argv: tuple[str, ...]) -> None:
        for a in argv[1:]:
            t = _target_of_url(a)
            if t:
                self.connect(*t)
        args = argv[1:]
        if self._from_file(args) and any(_remote(c.rsplit(":", 1)[0]) for c in self.out.connects):
            self.out.add("send")
        if any(
            a in ("-x", "--proxy", "--preproxy") or a.startswith(("--socks", "--proxy=", "-x"))
            for a in argv[1:]
        ):
            self.out.add("proxy")

    _wget = _curl

    def _http(self, argv: tuple[str, ...]) -> None:
        """HTTPie and xh: ``METHOD URL ITEM...``, where ``field@path``, ``field=@path``,
        ``field:=@path`` and a bare ``@path`` send a file's contents."""
        ops = _operands(argv)
        if ops and ops[0].isupper():
            ops = ops[1:]
        if not ops:
            return
        url = ops[0] if "://" in ops[0] else "http://" + ops[0].lstrip(":")
        target = _target_of_url(url)
        if target is None or ops[0].startswith(":"):  # `:8000/x` is localhost's port
            return
        self.connect(*target)
        if any(_HTTPIE_FILE.match(item) for item in ops[1:]) and _remote(target[0]):
            self.out.add("send")

    _https = _xh = _xhs = _http

    @staticmethod
    def _from_file(args: tuple[str, ...]) -> bool:
        """Does a curl/wget command line upload a file or stdin (not just send a literal body)?"""
        for i, a in enumerate(args):
            prev = args[i - 1] if i else ""
            if a in ("-T", "--upload-file", "--post-file", "--body-file") or a.startswith(
                ("-T", "--upload-file=", "--post-file=", "--body-file=")
            ):
                return True
            if prev in _DATA_FLAGS and a.lstrip("'\"").startswith("@"):
                return True
            if prev in ("-F", "--form") and ("=@" in a or "=<" in a):
                return True
            if any(a.startswith((f + "=@", f + "@")) for f in _DATA_FLAGS):
                return True
        return False

    def _nc(self, argv: tuple[str, ...]) -> None:
        args = argv[1:]
        if any(a == "--proxy" or a.startswith("--proxy=") for a in args):
            self.out.add("proxy")  # ncat relayed through an HTTP or SOCKS proxy
        if any(a.startswith("-l") or a == "--listen" or (a.startswith("-") and "l" in a[1:4]) for a in args):
            self.serve(argv)
            return
        ops = _operands(argv)
        if len(ops) >= 2 and ops[-1].isdigit():
            self.connect(ops[-2], ops[-1])

    _ncat = _netcat = _telnet = _nc

    def _socat(self, argv: tuple[str, ...]) -> None:
        for a in argv[1:]:
            m = re.match(r"^(?:tcp[46]?|udp[46]?|openssl|ssl)(?:-connect)?:([^:,]+):(\d+)", a, re.I)
            if m:
                self.connect(m.group(1), m.group(2))
            if re.match(r"^(tcp[46]?|udp[46]?|openssl)-listen:", a, re.I):
                if any(re.match(r"^(file|exec|system|open|gopen):", b, re.I) for b in argv[1:]):
                    self.out.add("serve")
                else:
                    self.serve(argv)

    def _httpd(self, argv: tuple[str, ...]) -> None:
        if any(a in ("-p", "-f", "-h") for a in argv[1:]):
            self.serve(argv)

    def _openssl(self, argv: tuple[str, ...]) -> None:
        args = argv[1:]
        if args[:1] == ("s_client",):
            for i, a in enumerate(args):
                if a == "-connect" and i + 1 < len(args):
                    host, _, port = args[i + 1].rpartition(":")
                    self.connect(host or args[i + 1], port)
        sub = args[0] if args else ""
        if sub in ("rsautl", "pkeyutl", "smime", "cms") and "-encrypt" in args:
            self.out.add("encrypt")
        cipher = sub == "enc" or sub.startswith(("aes", "des", "bf", "chacha", "camellia"))
        keyed = any(a in ("-k", "-pass", "-K", "-kfile") for a in args) or sub != "enc"
        if cipher and "-d" not in args and keyed:
            self.out.add("encrypt")

    def _ssh(self, argv: tuple[str, ...]) -> None:
        dest = ssh_destination(argv)
        m = _SSH_TARGET.match(dest) if dest is not None else None
        if m is None:
            return
        self.connect(m.group(1), "22")
        if not _remote(m.group(1)):
            return  # to this sandbox's own loopback: an archive streamed there stays in the sandbox
        text = " ".join(argv[1:])
        if re.search(r"\btar\b[^|]*\s-?[a-z]*c[a-z]*f?\s*-\s", text + " ") or re.search(r"cat\s*>", text):
            self.out.add("archive_over_ssh")

    def _scp(self, argv: tuple[str, ...]) -> None:
        ops = _operands(argv)
        if len(ops) >= 2 and ":" in ops[-1]:
            m = _SSH_TARGET.match(ops[-1])
            if m and _remote(m.group(1)):  # a copy to this sandbox's own loopback sends nothing out
                self.connect(m.group(1), "22")
                self.out.add("send")

    _rsync = _sftp = _scp

    def _dig(self, argv: tuple[str, ...]) -> None:
        for a in argv[1:]:
            # Labels put after data: $(... | xxd -p).x.example.net, not a name a command prints.
            substituted = "${" in a or "$(" in a or "`" in a
            if substituted and not a.startswith(("-", "@", "+")) and "." in _outside_substitutions(a):
                self.out.add("dns_encode")
            if _DIRECTORY_SRV.match(a) or a.lower() in ("axfr", "-type=axfr", "-t=axfr", "-query=axfr"):
                self.out.add("discovery")  # domain controllers and Kerberos by SRV record, or a zone transfer

    def _whois(self, argv: tuple[str, ...]) -> None:
        """``whois -h HOST [-p PORT] DATA`` writes DATA to any host's port: an upload (GTFOBins)."""
        args = argv[1:]
        host = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "-h"), None)
        if host is None:
            return
        port = next((args[i + 1] for i, a in enumerate(args[:-1]) if a == "-p"), "43")
        self.connect(host, port)
        if _remote(host) and any("$(" in a or "`" in a for a in _operands(argv)):
            self.out.add("send")

    def _ldapsearch(self, argv: tuple[str, ...]) -> None:
        args = argv[1:]
        servers = [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("-H", "-h")]
        hosts = [(_target_of_url(s) or (s, ""))[0] for s in servers]
        if any(_remote(h) for h in hosts):
            self.out.add("discovery")  # accounts and hosts listed from a directory server

    _nslookup = _host = _drill = _dig

    def _find(self, argv: tuple[str, ...]) -> None:
        args = list(argv[1:])
        roots = find_roots(args)
        broad = any(_BROAD_ROOT.match(r) for r in roots) or not roots
        for i, a in enumerate(args):
            if a in ("-name", "-iname", "-path", "-ipath", "-wholename") and i + 1 < len(args):
                pat = args[i + 1].strip("'\"")
                leaf = pat.rsplit("/", 1)[-1]
                if _STRONG_CRED_NAMES.match(leaf) or (broad and _WEAK_CRED_NAMES.match(leaf)):
                    self.out.add("search_credential")
        if self.cred and any(CREDENTIAL_PATH.search(r) for r in roots):
            self.out.add("search_credential")

    def _locate(self, argv: tuple[str, ...]) -> None:
        if any(_STRONG_CRED_NAMES.match(a.rsplit("/", 1)[-1]) for a in _operands(argv)):
            self.out.add("search_credential")

    def _grep(self, argv: tuple[str, ...]) -> None:
        args = argv[1:]
        recursive = any(
            a in ("-r", "-R", "--recursive")
            or (a.startswith("-") and not a.startswith("--") and ("r" in a or "R" in a))
            for a in args
        )
        ops = _operands(argv)
        recursive = recursive or any("/**/" in p for p in ops[1:])  # the files a find found
        if (
            recursive
            and len(ops) >= 2
            and _PASSWORD_WORDS.search(ops[0])
            and any(_BROAD_ROOT.match(p.split("/**/", 1)[0] or "/") for p in ops[1:])
        ):
            self.out.add("search_credential")

    _egrep = _rg = _ag = _grep

    def _touch(self, argv: tuple[str, ...]) -> None:
        args = argv[1:]
        for i, a in enumerate(args):
            nxt = args[i + 1] if i + 1 < len(args) else ""
            if (
                a in ("-r", "--reference")
                or a.startswith("--reference=")
                or (
                    a == "-t"
                    or a.startswith("-t")
                    or (a.startswith("-") and not a.startswith("--") and a[-1:] in "tr")
                )
            ):
                self.out.add("timestomp")
            elif a in ("-d", "--date") or a.startswith("--date="):
                value = a.split("=", 1)[1] if "=" in a else nxt
                if re.search(r"\b(19|20)\d\d\b|^@\d+", value):
                    self.out.add("timestomp")

    def _date(self, argv: tuple[str, ...]) -> None:
        """``date -s``, or a bare MMDDhhmm[[CC]YY] operand; the value of -d/-r/-f is a date to show."""
        args = argv[1:]
        operands = []
        i = 0
        while i < len(args):
            a = args[i]
            if a in ("-d", "--date", "-r", "--reference", "-f", "--file"):
                i += 2
                continue
            if not a.startswith(("-", "+")):
                operands.append(a)
            i += 1
        if any(a in ("-s", "--set") or a.startswith("--set=") for a in args) or any(
            re.fullmatch(r"\d{8}(\d{2}){0,2}(\.\d\d)?", a) for a in operands
        ):
            self.out.add("set_clock")

    def _timedatectl(self, argv: tuple[str, ...]) -> None:
        if any(a in ("set-time", "set-ntp") for a in argv[1:]):
            self.out.add("set_clock")

    def _hwclock(self, argv: tuple[str, ...]) -> None:
        if any(a in ("--set", "-w", "--systohc") for a in argv[1:]):
            self.out.add("set_clock")

    def _gpg(self, argv: tuple[str, ...]) -> None:
        args = argv[1:]
        enc = any(
            a in ("-c", "--symmetric", "-e", "--encrypt") or re.fullmatch(r"-[a-z]*[ce][a-z]*", a)
            for a in args
        )
        batch = any(a.startswith(("--batch", "--passphrase", "--pinentry-mode")) for a in args)
        if enc and batch:
            self.out.add("encrypt")

    _gpg2 = _gpg

    def _7z(self, argv: tuple[str, ...]) -> None:
        if argv[1:2] and argv[1] in ("a", "u") and any(a.startswith("-p") and len(a) > 2 for a in argv[2:]):
            self.out.add("encrypt")

    _7za = _7zr = _7z

    def _zip(self, argv: tuple[str, ...]) -> None:
        # -e/--encrypt asks for the password on the terminal, which a tool call does not have
        if any(a in ("-P", "--password") or a.startswith("--password=") for a in argv[1:]):
            self.out.add("encrypt")

    def _useradd(self, argv: tuple[str, ...]) -> None:
        self.out.add("account_change")

    _adduser = _usermod = _chpasswd = _newusers = _groupadd = _useradd

    def _pw(self, argv: tuple[str, ...]) -> None:
        if argv[1:2] and argv[1] in ("useradd", "usermod", "groupmod", "groupadd", "user"):
            self.out.add("account_change")

    def _passwd(self, argv: tuple[str, ...]) -> None:
        if _operands(argv) or "--stdin" in argv:
            self.out.add("account_change")

    def _gpasswd(self, argv: tuple[str, ...]) -> None:
        if any(a in ("-a", "-M", "--add") for a in argv[1:]):
            self.out.add("account_change")

    def _ldapadd(self, argv: tuple[str, ...]) -> None:
        self.out.add("account_change")

    _ldapmodify = _ldapadd

    def _samba_tool(self, argv: tuple[str, ...]) -> None:
        if argv[1:3] in (("user", "add"), ("user", "create"), ("group", "addmembers")):
            self.out.add("account_change")

    def _dscl(self, argv: tuple[str, ...]) -> None:
        if "-create" in argv or "-append" in argv:
            self.out.add("account_change")

    def _arp(self, argv: tuple[str, ...]) -> None:
        if not any(a in ("-s", "-d", "--set", "--delete") for a in argv[1:]):
            self.out.add("discovery")

    _arp_scan = _nbtscan = _nmblookup = _smbstatus = _showmount = _smbutil = _arp
    _rpcclient = _enum4linux = _enum4linux_ng = _smbmap = _avahi_browse = _mdns_scan = _netdiscover = _arp
    _lldpctl = _lldpcli = _arp

    def _traceroute(self, argv: tuple[str, ...]) -> None:
        if any(_remote(h) for h in _operands(argv)[:1]):
            self.out.add("discovery")  # the hops to another host, or (rpcinfo) the RPC services it offers

    _traceroute6 = _tracepath = _mtr = _rpcinfo = _traceroute

    def _nmcli(self, argv: tuple[str, ...]) -> None:
        if any(a in ("show", "s") for a in argv[2:3]) and argv[1:2] and argv[1] in ("dev", "device", "d"):
            self.out.add("discovery")

    def _smbclient(self, argv: tuple[str, ...]) -> None:
        if "-L" in argv or any(a.startswith("--list") for a in argv):
            self.out.add("discovery")

    def _ip(self, argv: tuple[str, ...]) -> None:
        args = [a for a in argv[1:] if not a.startswith("-")]
        if not args:
            return
        obj = args[0]
        rest = args[1:2]
        if obj in ("neigh", "neighbor", "neighbour", "n", "ne", "nei", "tcp_metrics", "tcpmetrics") or (
            obj in ("route", "r", "ro", "rou") and (not rest or rest[0] in ("show", "list", "ls", "get", "s"))
        ):
            self.out.add("discovery")

    def _route(self, argv: tuple[str, ...]) -> None:
        if not any(a in ("add", "del", "delete") for a in argv[1:]):
            self.out.add("discovery")

    def _netstat(self, argv: tuple[str, ...]) -> None:
        if any(a.startswith("-") and not a.startswith("--") and ("r" in a or "i" in a) for a in argv[1:]):
            self.out.add("discovery")
        if any(a in ("--route", "--interfaces") for a in argv[1:]):
            self.out.add("discovery")

    def _unset(self, argv: tuple[str, ...]) -> None:
        if "HISTFILE" in argv[1:]:
            self.out.add("disable_history")

    def _set(self, argv: tuple[str, ...]) -> None:
        if "+o" in argv and "history" in argv:
            self.out.add("disable_history")

    def _history(self, argv: tuple[str, ...]) -> None:
        if "-c" in argv or ("-w" in argv and "/dev/null" in argv):
            self.out.add("disable_history")


for _n in ("ccencrypt", "ccrypt", "mcrypt", "aescrypt", "age", "gpgtar", "scrypt"):
    setattr(_Scan, "_" + _n, lambda self, argv: self.out.add("encrypt") if "-d" not in argv else None)
del _n


def effects(a: Analysis) -> Effects:
    """Every behaviour ``a`` would show, for rules to match (``Effects`` fields on records)."""
    return _Scan(a).run()


def program(argv0: str) -> str:
    return basename(argv0).lower()


def _without_identities(name: str, args: Sequence[str]) -> list[str]:
    """The arguments less the keys that an ssh client is told to log in with (``_SSH_IDENTITY``)."""
    out: list[str] = []
    skip = False
    for a in args:
        if skip:
            skip = False
            continue
        if name in _SSH_CLIENTS and a == "-i":
            skip = True
            continue
        if name in _SSH_CLIENTS and a.startswith("-i"):
            continue
        if "ssh" in a or "dentity" in a.lower():
            a = _SSH_IDENTITY.sub(" ", a)
        out.append(a)
    return out
