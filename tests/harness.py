"""Starting real rmail servers for tests: in this process (reactor thread) or as a process."""

import base64
import http.client
import json
import os
import re
import select
import signal
import socket
import ssl
import subprocess
import sys
import time

from twisted.internet import defer, reactor

from rmail import config as rconfig
from rmail.directory import Directory
from rmail.tls import generate_self_signed

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TIMEOUT = 20  # seconds: the bound of every wait in the tests

USERS = {"alice@example.com": "alice-pw", "bob@example.com": "bob-pw",
         "sales@example.com": "sales-pw", "carol@example.org": "carol-pw"}

_cert_dir = None


def with_timeout(fn, *args, **kwargs):
    d = defer.maybeDeferred(fn, *args, **kwargs)
    return d.addTimeout(TIMEOUT, reactor)


def shared_certificate():
    """One self-signed certificate for every test server (generating is slowish)."""
    global _cert_dir
    if _cert_dir is None:
        import tempfile
        _cert_dir = tempfile.mkdtemp(prefix="rmail-test-tls-")
        generate_self_signed("mail.example.com", os.path.join(_cert_dir, "cert.pem"),
                             os.path.join(_cert_dir, "key.pem"))
    return os.path.join(_cert_dir, "cert.pem"), os.path.join(_cert_dir, "key.pem")


def write_config(directory, **overrides) -> str:
    """A config.json on free loopback ports (0) with the shared certificate."""
    cert, key = shared_certificate()
    config = rconfig.Config(
        hostname="mail.example.com", domains=["example.com", "example.org"],
        listen=rconfig.Listen(address="127.0.0.1", smtp=0, submission=0, submissions=0,
                              imap=0, imaps=0, http=0),
        tls=rconfig.TLS(cert=cert, key=key),
        http=rconfig.HTTP(jwt_secret="test-secret-" + "x" * 32),
        # Outbound mail never leaves the machine: DNS questions go to a loopback port
        # where nothing answers (relay tests point this at their own DNS server).
        relay=rconfig.Relay(dns_servers=["127.0.0.1:9"]),
    )
    data = config.to_dict()
    for dotted, value in overrides.items():
        node = data
        *parents, last = dotted.split("__")
        for p in parents:
            node = node[p]
        node[last] = value
    path = os.path.join(str(directory), "config.json")
    with open(path, "w") as f:
        json.dump(data, f, indent=2)
    return path


def add_users(config_path, users=USERS):
    config = rconfig.load(config_path)
    directory = Directory(config.mail_root_path, config.domains)
    for address, password in users.items():
        directory.add_user(address, password, admin=address.startswith("alice@"))
    return directory


def client_tls() -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=shared_certificate()[0])
    ctx.check_hostname = False
    return ctx


class Server:
    """rmail running in this process, on the test reactor thread."""

    def __init__(self, tmp_path, in_reactor, users=USERS, **overrides):
        self.tmp_path = tmp_path
        self.in_reactor = in_reactor
        self.config_path = write_config(tmp_path, **overrides)
        self.directory = add_users(self.config_path, users) if users else None
        self.service = None

    def start(self):
        from rmail import service
        self.service = self.in_reactor(service.build, self.config_path)
        self.in_reactor(self.service.startService)
        self.host = "127.0.0.1"

    def stop(self):
        if self.service is not None and self.service.running:
            self.in_reactor(self.service.stopService)

    def port(self, key):
        return self.service.port(key)

    @property
    def store(self):
        return self.service.store

    def messages(self, address, folder="INBOX"):
        """[(uid, flags, bytes)] of a folder, read through the store like the protocols do."""
        infos = self.in_reactor(self.store.user(address).messages, folder)
        out = []
        for info in infos:
            with open(info.path, "rb") as f:
                out.append((info.uid, info.flags, f.read()))
        return out

    def wait_for(self, predicate, what="condition"):
        deadline = time.monotonic() + TIMEOUT
        while time.monotonic() < deadline:
            value = predicate()
            if value:
                return value
            time.sleep(0.02)
        raise AssertionError(f"timed out waiting for {what}")


class Process:
    """rmail as a real process (`python run.py CONFIG`), for signals and the CLI."""

    def __init__(self, config_path, extra_env=None):
        env = dict(os.environ, PYTHONUNBUFFERED="1", **(extra_env or {}))
        self.proc = subprocess.Popen(
            [sys.executable, os.path.join(ROOT, "run.py"), config_path],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, cwd=os.path.dirname(config_path))
        self.output = b""
        self.ports = {}
        line = self.wait_for_output(rb"rmail: serving .*")
        keys = {b"SMTP": "smtp", b"submission (STARTTLS)": "submission",
                b"submission (TLS)": "submissions", b"IMAP (STARTTLS)": "imap",
                b"IMAP (TLS)": "imaps", b"HTTP": "http"}
        for name, port in re.findall(rb"([A-Za-z]+(?: \([A-Z]+\))?) [\d.]+:(\d+)", line):
            if name in keys:
                self.ports[keys[name]] = int(port)

    def wait_for_output(self, pattern, timeout=TIMEOUT):
        """Read output until a line matches *pattern*; return that line."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern)
        while True:
            for line in self.output.splitlines():
                if regex.search(line):
                    self.output = self.output.replace(line, b"<seen>", 1)
                    return line
            remaining = deadline - time.monotonic()
            if remaining <= 0 or self.proc.poll() is not None and not _readable(self.proc.stdout, 0):
                raise AssertionError(f"no output matching {pattern!r}; got:\n{self.output.decode()}")
            if _readable(self.proc.stdout, min(remaining, 0.5)):
                chunk = os.read(self.proc.stdout.fileno(), 65536)
                if chunk:
                    self.output += chunk

    def signal(self, signum):
        self.proc.send_signal(signum)

    def wait(self, timeout=TIMEOUT):
        try:
            rest, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            raise
        self.output += rest or b""
        return self.proc.returncode

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.wait()
            except subprocess.TimeoutExpired:
                pass


def _readable(f, timeout) -> bool:
    return bool(select.select([f], [], [], timeout)[0])


def smtp_dialogue(port, lines, host="127.0.0.1", tls=False):
    """Send raw lines, one at a time, and collect every reply line (for exact transcripts)."""
    sock = socket.create_connection((host, port), timeout=TIMEOUT)
    if tls:
        sock = client_tls().wrap_socket(sock)
    f = sock.makefile("rb")
    transcript = [read_reply(f)]
    for line in lines:  # a str is one command line; bytes are sent as they are
        sock.sendall(line if isinstance(line, bytes) else line.encode() + b"\r\n")
        transcript.append(read_reply(f))
    sock.close()
    return transcript


def read_reply(f) -> list[str]:
    """One (possibly multi-line) SMTP reply as a list of lines without CRLF."""
    lines = []
    while True:
        raw = f.readline()
        if not raw:
            raise ConnectionError(f"connection closed after {lines}")
        line = raw.decode().rstrip("\r\n")
        lines.append(line)
        if len(line) < 4 or line[3] != "-":
            return lines


class SMTPClient:
    """A blocking raw SMTP client: one command line in, one (multi-line) reply out."""

    def __init__(self, port, tls=False):
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        if tls:
            self.sock = client_tls().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")
        self.greeting = read_reply(self.f)
        assert self.greeting[0].startswith("220 ")

    def send(self, data):
        self.sock.sendall(data if isinstance(data, bytes) else data.encode() + b"\r\n")

    def reply(self) -> list[str]:
        return read_reply(self.f)

    def cmd(self, line) -> list[str]:
        self.send(line)
        return self.reply()

    def first(self, line) -> str:
        """The first line of the reply to *line*."""
        return self.cmd(line)[0]

    def starttls(self):
        assert self.first("STARTTLS").startswith("220 2.0.0")
        self.sock = client_tls().wrap_socket(self.sock)
        self.f = self.sock.makefile("rb")

    def login(self, address, password):
        token = base64.b64encode(f"\0{address}\0{password}".encode()).decode()
        return self.first(f"AUTH PLAIN {token}")

    def closed(self) -> bool:
        """True when the server has closed the connection (EOF on the next read)."""
        try:
            return self.f.readline() == b""
        except ConnectionResetError:
            return True

    def close(self):
        self.f.close()  # the socket closes only once its file object is closed too
        self.sock.close()


def assert_one_line_error(result, *needles):
    """Exit status 1 and exactly one line on stderr, naming every needle, no traceback."""
    err = result.stderr.decode()
    assert result.returncode == 1, (result.returncode, err)
    assert "Traceback" not in err, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])
    return lines[0]


class HTTPResponse:
    """What an HTTP request got back: status, headers (case-insensitive) and body."""

    def __init__(self, status, headers, body):
        self.status = status
        self.headers = headers
        self.body = body

    def json(self):
        assert self.headers.get("Content-Type", "").startswith("application/json"), self.headers
        return json.loads(self.body)

    def __repr__(self):
        return f"<HTTPResponse {self.status} {self.body[:200]!r}>"


class APIClient:
    """A blocking client of the HTTP API (http.client), one connection per request."""

    def __init__(self, port, host="127.0.0.1"):
        self.host = host
        self.port = port
        self.token = None

    def request(self, method, path, json_body=None, data=None, headers=None, token=None):
        headers = dict(headers or {})
        token = token if token is not None else self.token
        if token:
            headers.setdefault("Authorization", f"Bearer {token}")
        if json_body is not None:
            data = json.dumps(json_body).encode()
            headers.setdefault("Content-Type", "application/json")
        conn = http.client.HTTPConnection(self.host, self.port, timeout=TIMEOUT)
        try:
            conn.request(method, path, body=data, headers=headers)
            response = conn.getresponse()
            return HTTPResponse(response.status, response.headers, response.read())
        finally:
            conn.close()

    def login(self, address, password):
        local, _, domain = address.partition("@")
        response = self.request("POST", "/auth/login",
                                {"username": local, "password": password, "domain": domain})
        assert response.status == 200, response
        self.token = response.json()["token"]
        return self.token
