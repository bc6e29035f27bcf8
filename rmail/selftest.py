"""``python run.py test``: a throwaway rmail, end to end, with the clients people use.

Starts a server as its own process in a temporary directory on free loopback ports
(never the operator's config or mail), with two users and a local SMTP receiver
standing in for the rest of the Internet, then runs each case with the standard
library's clients: mail in over SMTP, submission with STARTTLS and AUTH, reading, flags,
MOVE and IDLE over IMAP, aliases, the HTTP API, and relaying out.  Prints one line per
case and ``N passed, N failed``; removes everything it made.
"""

import http.client
import imaplib
import json
import os
import re
import secrets
import shutil
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time

from rmail import config as rconfig
from rmail.directory import Directory

TIMEOUT = 15.0
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOMAIN = "selftest.example"


class CaseFailed(Exception):
    pass


def check(condition, what: str):
    if not condition:
        raise CaseFailed(what)


class Sink:
    """The rest of the Internet: an SMTP receiver on 127.0.0.1 keeping what it is sent."""

    def __init__(self):
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.messages = []  # (sender, [recipients], data)
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            threading.Thread(target=self._session, args=(conn,), daemon=True).start()

    def _session(self, conn):
        conn.settimeout(TIMEOUT)
        f = conn.makefile("rb")
        send = lambda line: conn.sendall(line.encode() + b"\r\n")  # noqa: E731
        sender, recipients = None, []
        try:
            send("220 sink.selftest ESMTP")
            for raw in f:
                verb = raw[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    send("250 sink.selftest")
                elif verb == b"MAIL":
                    sender, recipients = raw.decode().split(":", 1)[1].strip(" <>\r\n"), []
                    send("250 OK")
                elif verb == b"RCPT":
                    recipients.append(raw.decode().split(":", 1)[1].strip(" <>\r\n"))
                    send("250 OK")
                elif verb == b"DATA":
                    send("354 go on")
                    data = b""
                    for line in f:
                        if line == b".\r\n":
                            break
                        data += line[1:] if line.startswith(b".") else line
                    self.messages.append((sender, recipients, data))
                    send("250 OK kept")
                elif verb == b"QUIT":
                    send("221 bye")
                    return
                else:
                    send("250 OK")
        except OSError:
            pass
        finally:
            conn.close()

    def close(self):
        self.server.close()


class Throwaway:
    """rmail in a temporary directory, as a child process."""

    def __init__(self, sink_port: int):
        self.dir = tempfile.mkdtemp(prefix="rmail-selftest-")
        self.config_path = os.path.join(self.dir, "config.json")
        subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), "init", "--config",
                        self.config_path, "--hostname", "mail." + DOMAIN, "--domain", DOMAIN],
                       check=True, capture_output=True, timeout=60)
        with open(self.config_path) as f:
            data = json.load(f)
        data["listen"] = {key: 0 for key in data["listen"]}  # free ports, printed at start
        data["listen"]["address"] = "127.0.0.1"
        data["relay"]["smarthost"] = f"127.0.0.1:{sink_port}"  # the Internet is the sink
        with open(self.config_path, "w") as f:
            json.dump(data, f)
        self.config = rconfig.load(self.config_path)
        self.directory = Directory(self.config.mail_root_path, self.config.domains)
        self.passwords = {}
        for local in ("alice", "bob"):
            self.passwords[f"{local}@{DOMAIN}"] = secrets.token_urlsafe(12)
            self.directory.add_user(f"{local}@{DOMAIN}", self.passwords[f"{local}@{DOMAIN}"],
                                    admin=local == "alice")
        self.proc = subprocess.Popen([sys.executable, os.path.join(ROOT, "run.py"), "--config",
                                      self.config_path], stdout=subprocess.PIPE,
                                     stderr=subprocess.STDOUT, cwd=self.dir,
                                     env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.ports = self._ports()

    def _ports(self) -> dict:
        names = {"SMTP": "smtp", "submission (STARTTLS)": "submission",
                 "submission (TLS)": "submissions", "IMAP (STARTTLS)": "imap",
                 "IMAP (TLS)": "imaps", "HTTP": "http"}
        deadline = time.monotonic() + TIMEOUT
        ports, output = {}, b""
        while time.monotonic() < deadline:
            line = self.proc.stdout.readline()
            if not line:
                break
            output += line
            m = re.match(rb"\s+(.+?) 127\.0\.0\.1:(\d+)$", line.rstrip())
            if m and m.group(1).decode() in names:
                ports[names[m.group(1).decode()]] = int(m.group(2))
            if line.startswith(b"Stop with"):
                threading.Thread(target=self.proc.stdout.read, daemon=True).start()
                return ports
        raise RuntimeError("the throwaway server did not start:\n" + output.decode(errors="replace"))

    def tls(self):
        ctx = ssl.create_default_context(cafile=self.config.tls_cert_path)
        ctx.check_hostname = False
        return ctx

    def imap(self, address):
        imap = imaplib.IMAP4("127.0.0.1", self.ports["imap"], timeout=TIMEOUT)
        imap.starttls(ssl_context=self.tls())
        imap.login(address, self.passwords[address])
        return imap

    def http(self, method, path, body=None, token=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.ports["http"], timeout=TIMEOUT)
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        conn.request(method, path, json.dumps(body) if body is not None else None, headers)
        response = conn.getresponse()
        data = response.read()
        conn.close()
        return response.status, json.loads(data) if data else None

    def stop(self):
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(TIMEOUT)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        shutil.rmtree(self.dir, ignore_errors=True)


def _wait(predicate, what):
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    raise CaseFailed(f"timed out waiting for {what}")


def _subjects(server, address, folder="INBOX"):
    imap = server.imap(address)
    try:
        imap.select(folder, readonly=True)
        _, data = imap.fetch("1:*", "(BODY.PEEK[HEADER.FIELDS (SUBJECT)])")
        return [item[1].decode().split(":", 1)[1].strip() for item in data
                if isinstance(item, tuple)]
    finally:
        imap.logout()


def _message(sender, to, subject):
    return (f"From: {sender}\r\nTo: {to}\r\nSubject: {subject}\r\n"
            f"Message-ID: <{secrets.token_hex(8)}@{DOMAIN}>\r\n\r\nSelf-test body.\r\n")


# -- the cases ---------------------------------------------------------------------------------

def case_smtp_in(server, sink):
    alice = f"alice@{DOMAIN}"
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as s:
        s.sendmail("someone@elsewhere.example", [alice],
                   _message("someone@elsewhere.example", alice, "inbound"))
    check("inbound" in _subjects(server, alice), "the message is not in alice's INBOX")


def case_no_open_relay(server, sink):
    with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as s:
        s.ehlo()
        s.mail("someone@elsewhere.example")
        code, reply = s.rcpt("victim@elsewhere.example")
    check(code == 550 and b"5.7.1" in reply, f"an unauthenticated relay got {code}")


def case_submission(server, sink):
    bob, alice = f"bob@{DOMAIN}", f"alice@{DOMAIN}"
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=TIMEOUT) as s:
        s.starttls(context=server.tls())
        s.login(bob, server.passwords[bob])
        s.sendmail(bob, [alice], _message(bob, alice, "submitted"))
    check("submitted" in _subjects(server, alice), "the submitted message did not arrive")


def case_imap_read_flags_move(server, sink):
    alice = f"alice@{DOMAIN}"
    imap = server.imap(alice)
    try:
        imap.select("INBOX")
        _, data = imap.uid("SEARCH", None, "SUBJECT", "inbound")
        uid = data[0].split()[-1]
        _, data = imap.uid("FETCH", uid, "(BODY.PEEK[])")
        check(b"Self-test body." in data[0][1], "BODY[] does not hold the message")
        imap.uid("STORE", uid, "+FLAGS", "(\\Flagged)")
        _, data = imap.uid("FETCH", uid, "(FLAGS)")
        check(b"\\Flagged" in data[0], "the flag was not stored")
        status, _ = imap.uid("MOVE", uid, "Archive")
        check(status == "OK", "UID MOVE failed")
    finally:
        imap.logout()
    check("inbound" in _subjects(server, alice, "Archive"), "the message is not in Archive")


def case_imap_idle(server, sink):
    alice = f"alice@{DOMAIN}"
    imap = server.imap(alice)
    try:
        _, data = imap.select("INBOX")
        imap.send(b"i1 IDLE\r\n")
        check(imap.readline().startswith(b"+"), "IDLE was not accepted")
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as s:
            s.sendmail("x@elsewhere.example", [alice], _message("x@elsewhere.example", alice, "idle"))
        line = imap.readline()
        check(line.endswith(b"EXISTS\r\n"), f"IDLE heard {line!r}, not EXISTS")
        imap.send(b"DONE\r\n")
        line = imap.readline()
        while line.startswith(b"* "):  # RECENT, as this session was the first told
            line = imap.readline()
        check(line.startswith(b"i1 OK"), "IDLE did not end on DONE")
    finally:
        imap.logout()


def case_aliases(server, sink):
    server.directory.add_alias(DOMAIN, "sales-.*", "bob")
    bob = f"bob@{DOMAIN}"

    def delivered():
        with smtplib.SMTP("127.0.0.1", server.ports["smtp"], timeout=TIMEOUT) as s:
            s.ehlo()
            s.mail("x@elsewhere.example")
            if s.rcpt(f"sales-eu@{DOMAIN}")[0] != 250:
                return False
            s.data(_message("x@elsewhere.example", f"sales-eu@{DOMAIN}", "alias"))
        return True
    _wait(delivered, "the server to see the new alias")
    check("alias" in _subjects(server, bob), "mail for sales-eu@ did not reach bob")


def case_http_api(server, sink):
    alice = f"alice@{DOMAIN}"
    status, body = server.http("POST", "/auth/login",
                               {"username": alice, "password": server.passwords[alice]})
    check(status == 200 and body.get("token"), f"login answered {status}")
    token = body["token"]
    status, body = server.http("GET", "/folders", token=token)
    check(status == 200 and "INBOX" in [f["name"] for f in body["folders"]],
          f"GET /folders answered {status}")
    status, body = server.http("GET", "/folders/INBOX/messages?limit=5", token=token)
    check(status == 200 and body["total"] >= 1, f"listing INBOX answered {status}")
    status, body = server.http("POST", "/messages/send", {"to": [f"bob@{DOMAIN}"],
                                                          "subject": "over http",
                                                          "body": "Sent by the API."}, token)
    check(status == 202 and body.get("message_id"), f"send answered {status}")
    check("over http" in _subjects(server, f"bob@{DOMAIN}"), "the API's message did not arrive")
    check("over http" in _subjects(server, alice, "Sent"), "no copy in Sent")
    status, _ = server.http("GET", "/folders", token=token[:-4] + "AAAA")
    check(status == 401, f"a forged token got {status}")


def case_relay_out(server, sink):
    bob = f"bob@{DOMAIN}"
    with smtplib.SMTP("127.0.0.1", server.ports["submission"], timeout=TIMEOUT) as s:
        s.starttls(context=server.tls())
        s.login(bob, server.passwords[bob])
        s.sendmail(bob, ["friend@elsewhere.example"],
                   _message(bob, "friend@elsewhere.example", "outbound"))
    _wait(lambda: any(b"Subject: outbound" in data for _, _, data in sink.messages),
          "the relayed message at the receiver")
    sender, recipients, _ = next(m for m in sink.messages if b"Subject: outbound" in m[2])
    check(sender == bob and recipients == ["friend@elsewhere.example"], "wrong envelope relayed")


CASES = [case_smtp_in, case_no_open_relay, case_submission, case_imap_read_flags_move,
         case_imap_idle, case_aliases, case_http_api, case_relay_out]


def run(out=print) -> int:
    sink = Sink()
    try:
        server = Throwaway(sink.port)
    except Exception as e:
        out(f"FAIL start: {e}")
        sink.close()
        out("0 passed, 1 failed")
        return 1
    passed = failed = 0
    try:
        out(f"rmail self-test: a throwaway server in {server.dir}")
        for case in CASES:
            name = case.__name__[len("case_"):].replace("_", " ")
            started = time.monotonic()
            try:
                case(server, sink)
            except Exception as e:
                failed += 1
                out(f"FAIL {name}: {e}")
            else:
                passed += 1
                out(f"PASS {name} ({time.monotonic() - started:.2f}s)")
    finally:
        server.stop()
        sink.close()
    out(f"{passed} passed, {failed} failed")
    return 0 if failed == 0 else 1

