"""``python run.py diagnose``: is this server set up right, and if not, what to do.

Eight phases, in the order a problem in one explains failures in the next: the
configuration, the storage, the TLS certificate, the listeners, DNS, and a round trip
over SMTP, IMAP and HTTP to the server the config describes.  Each prints one line,
``PASS|WARN|FAIL phase: what was found — the fix``; the exit status is 1 when any phase
failed.  A plain command-line program: blocking sockets with short timeouts, nothing
that can hang (DNS gets a time budget of its own).
"""

import datetime
import http.client
import os
import socket
import sqlite3
import ssl
import time
from typing import NamedTuple

from cryptography import x509

from rmail import config as rconfig
from rmail.directory import Directory, DirectoryError
from rmail.tls import TLSError, load_options

TIMEOUT = 5.0  # seconds for one network step
DNS_BUDGET = 6.0  # seconds for the whole DNS phase
CERT_WARN_DAYS = 14


class Finding(NamedTuple):
    level: str  # PASS, WARN or FAIL
    phase: str
    found: str
    fix: str = ""

    def line(self) -> str:
        return f"{self.level} {self.phase}: {self.found}" + (f" — {self.fix}" if self.fix else "")


def run(config_path: str, out=print) -> int:
    """Run every phase, print one line each; 0 when nothing failed, else 1."""
    findings = []
    config = None
    try:
        config = rconfig.load(config_path)
        findings.append(_configuration(config))
    except rconfig.ConfigError as e:
        findings.append(Finding("FAIL", "configuration", str(e),
                                "fix the key named, then run diagnose again"))
    for finding in findings:
        out(finding.line())
    if config is not None:
        for phase in (_storage, _certificate, _listeners, _dns, _smtp, _imap, _http):
            try:
                finding = phase(config)
            except Exception as e:  # a phase must report, never crash the rest
                finding = Finding("FAIL", phase.__name__.strip("_"), f"unexpected error: {e!r}",
                                  "report this as a bug in rmail")
            findings.append(finding)
            out(finding.line())
    failed = sum(f.level == "FAIL" for f in findings)
    warned = sum(f.level == "WARN" for f in findings)
    out(f"{len(findings) - failed - warned} passed, {warned} warnings, {failed} failed")
    return 1 if failed else 0


# -- 1 configuration ----------------------------------------------------------------------

def _configuration(config) -> Finding:
    if not config.http.jwt_secret:
        return Finding("WARN", "configuration", "http.jwt_secret is empty, so the API refuses "
                       "every login", "set it to a long random string and send SIGHUP")
    try:
        directory = Directory(config.mail_root_path, config.domains)
        directory.refresh()
        users = sum(len(directory.users(domain)) for domain in config.domains)
    except DirectoryError as e:
        return Finding("FAIL", "configuration", str(e), "fix or restore the file named")
    if not users:
        return Finding("WARN", "configuration", f"{config.path} is valid but there are no users",
                       "add one: python run.py user add you@" + config.domains[0])
    return Finding("PASS", "configuration",
                   f"{config.path}: {len(config.domains)} domain(s), {users} user(s)")


# -- 2 storage ------------------------------------------------------------------------------

def _storage(config) -> Finding:
    root = config.mail_root_path
    if not os.path.isdir(root):
        return Finding("FAIL", "storage", f"mail_root {root} does not exist",
                       "create it or fix mail_root; `python run.py init` makes one")
    probe = os.path.join(root, f".diagnose-{os.getpid()}")
    try:
        with open(probe, "wb") as f:
            f.write(b"x")
        os.unlink(probe)
    except OSError as e:
        return Finding("FAIL", "storage", f"mail_root {root} is not writable ({e.strerror})",
                       "give the user rmail runs as write access to it")
    shards, messages, problems, notes = 0, 0, [], []
    domains = os.path.join(root, "domains")
    for domain in sorted(os.listdir(domains)) if os.path.isdir(domains) else ():
        boxes = os.path.join(domains, domain, "mailboxes")
        for local in sorted(os.listdir(boxes)) if os.path.isdir(boxes) else ():
            shards += 1
            count, problem, note = _check_shard(os.path.join(boxes, local), f"{local}@{domain}")
            messages += count
            if problem:
                problems.append(problem)
            if note:
                notes.append(note)
    queued = _queue_quarantine(root)
    if queued:
        notes.append(queued)
    if problems:  # the quarantine is still worth knowing about: it goes last
        return Finding("FAIL", "storage", "; ".join(problems + notes),
                       "restore the shard from a backup, or restart rmail to repair what it can "
                       "(each repair is logged)")
    if notes:
        return Finding("WARN", "storage", "; ".join(notes),
                       "look at the files in quarantine/, re-import what you need, delete the rest")
    return Finding("PASS", "storage", f"{root}: {shards} mailbox(es), {messages} message(s), "
                   "index and files agree")


def _check_shard(path: str, address: str):
    """(messages, problem or None, note or None) for one user's shard."""
    index = os.path.join(path, "index.sqlite")
    messages_dir = os.path.join(path, "messages")
    if not os.path.exists(index):
        return 0, None, None  # created on first use
    try:
        db = sqlite3.connect(f"file:{index}?mode=ro", uri=True, timeout=TIMEOUT)
        try:
            check = db.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                return 0, f"{address}: the index is damaged ({check})", None
            indexed = {row[0] for row in db.execute("SELECT DISTINCT file FROM messages")}
            count = db.execute("SELECT count(*) FROM messages").fetchone()[0]
        finally:
            db.close()
    except sqlite3.Error as e:
        return 0, f"{address}: cannot read {index} ({e})", None
    try:
        on_disk = set(os.listdir(messages_dir)) if os.path.isdir(messages_dir) else set()
    except OSError as e:
        return count, f"{address}: cannot read {messages_dir} ({e.strerror})", None
    missing = indexed - on_disk
    if missing:
        return count, f"{address}: {len(missing)} indexed message(s) have no file", None
    notes = []
    strays = on_disk - indexed
    if strays:
        notes.append(f"{len(strays)} message file(s) without an index entry (the next start "
                     "moves them to quarantine/)")
    quarantine = os.path.join(path, "quarantine")
    quarantined = len(os.listdir(quarantine)) if os.path.isdir(quarantine) else 0
    if quarantined:
        notes.append(f"{quarantined} file(s) in {quarantine}")
    return count, None, f"{address}: " + ", ".join(notes) if notes else None


def _queue_quarantine(root: str):
    """A note on the outbound queue's damaged entries (one ID.reason file each), or None."""
    quarantine = os.path.join(root, "queue", "quarantine")
    try:
        damaged = sum(name.endswith(".reason") for name in os.listdir(quarantine))
    except OSError:
        return None
    if not damaged:
        return None
    return (f"outbound queue: {damaged} damaged entr{'y' if damaged == 1 else 'ies'} in "
            f"{quarantine} (ID.reason says why)")


# -- 3 TLS certificate ----------------------------------------------------------------------

def _certificate(config) -> Finding:
    cert_path, key_path = config.tls_cert_path, config.tls_key_path
    try:
        load_options(cert_path, key_path)
    except TLSError as e:
        return Finding("FAIL", "tls", str(e))
    with open(cert_path, "rb") as f:
        cert = x509.load_pem_x509_certificate(f.read())
    now = datetime.datetime.now(datetime.timezone.utc)
    expires = cert.not_valid_after_utc
    days = (expires - now).days
    if expires <= now:
        return Finding("FAIL", "tls", f"{cert_path} expired on {expires:%Y-%m-%d}",
                       "install a renewed certificate and send SIGHUP (kill -HUP the server)")
    if cert.not_valid_before_utc > now:
        return Finding("FAIL", "tls", f"{cert_path} is not valid before "
                       f"{cert.not_valid_before_utc:%Y-%m-%d}", "check the system clock")
    names = _certificate_names(cert)
    self_signed = cert.issuer == cert.subject
    what = f"{cert_path}: {'self-signed, ' if self_signed else ''}for {', '.join(names) or '?'}, " \
           f"{days} days left"
    if config.hostname.lower() not in names:
        return Finding("WARN", "tls", what + f"; it does not name {config.hostname}",
                       "clients will refuse it: get a certificate for the hostname")
    if days < CERT_WARN_DAYS:
        return Finding("WARN", "tls", what, "renew it soon, then send SIGHUP")
    return Finding("PASS", "tls", what)


def _certificate_names(cert) -> list:
    try:
        alt = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        names = [str(n).lower() for n in alt.get_values_for_type(x509.DNSName)]
        names += [str(ip) for ip in alt.get_values_for_type(x509.IPAddress)]
    except x509.ExtensionNotFound:
        names = []
    names += [a.value.lower() for a in cert.subject.get_attributes_for_oid(
        x509.oid.NameOID.COMMON_NAME) if a.value.lower() not in names]
    return names


# -- 4 listeners ----------------------------------------------------------------------------

def _connect_host(config) -> str:
    address = config.listen.address
    return {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(address, address)


def _listeners(config) -> Finding:
    host = _connect_host(config)
    listeners = config.listeners()
    closed = []
    for key, port in listeners.items():
        try:
            socket.create_connection((host, port), timeout=TIMEOUT).close()
        except OSError:
            closed.append(f"listen.{key} ({port})")
    if closed:
        return Finding("FAIL", "listeners", f"nothing answers on {host} at " + ", ".join(closed),
                       "start rmail (python run.py), or see its log for why it cannot bind")
    return Finding("PASS", "listeners", f"{host}: " + ", ".join(
        f"{key} {port}" for key, port in listeners.items()))


# -- 5 DNS -------------------------------------------------------------------------------------

def _dns(config) -> Finding:
    import dns.exception
    import dns.resolver
    resolver = dns.resolver.Resolver(configure=not config.relay.dns_servers)
    if config.relay.dns_servers:
        resolver.nameservers = []
        for server in config.relay.dns_servers:
            host, _, port = server.rpartition(":") if server.count(":") == 1 else (server, "", "")
            resolver.nameservers.append(host)
            if port:
                resolver.port = int(port)
    resolver.lifetime = 2.0
    deadline = time.monotonic() + DNS_BUDGET
    missing, found = [], []
    for domain in config.domains:
        for name, rtype, test, record in (
                (domain, "MX", None, f"{domain}. MX 10 {config.hostname}."),
                (domain, "TXT", "v=spf1", f'{domain}. TXT "v=spf1 mx -all"'),
                (f"_dmarc.{domain}", "TXT", "v=dmarc1",
                 f'_dmarc.{domain}. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@{domain}"')):
            if time.monotonic() > deadline:
                return Finding("WARN", "dns", "the DNS servers answer too slowly to check "
                               + ", ".join(config.domains),
                               "check relay.dns_servers or /etc/resolv.conf")
            try:
                answer = resolver.resolve(name, rtype, raise_on_no_answer=False)
            except dns.resolver.NXDOMAIN:
                answer = None
            except (dns.exception.DNSException, OSError) as e:
                return Finding("WARN", "dns", f"cannot resolve {name} {rtype} "
                               f"({type(e).__name__})", "check relay.dns_servers or "
                               "/etc/resolv.conf; mail from other servers needs MX records")
            texts = [r.to_text().lower() for r in answer] if answer is not None else []
            if rtype == "MX" and texts:
                found.append(f"{domain} MX {texts[0].split()[-1].rstrip('.')}")
            elif test is None and not texts or test and not any(test in t for t in texts):
                missing.append(record)
    if missing:
        return Finding("WARN", "dns", "missing records: " + "; ".join(missing),
                       "publish them at your DNS provider")
    return Finding("PASS", "dns", ", ".join(found) + "; SPF and DMARC published")


# -- 6-8 round trips ---------------------------------------------------------------------------

def _smtp(config) -> Finding:
    import smtplib
    port = config.listen.smtp or config.listen.submission
    if not port:
        return Finding("PASS", "smtp", "no SMTP listener configured")
    domain = config.domains[0]
    try:
        with smtplib.SMTP(_connect_host(config), port, timeout=TIMEOUT) as s:
            code, banner = s.ehlo("diagnose.invalid")
            if code != 250:
                return Finding("FAIL", "smtp", f"EHLO answered {code}", "see the server log")
            if config.listen.smtp:
                s.mail("")
                code, reply = s.rcpt(f"postmaster@{domain}")
                s.rset()
                if code != 250:
                    return Finding("WARN", "smtp", f"RCPT TO:<postmaster@{domain}> answered "
                                   f"{code} {reply.decode(errors='replace')}",
                                   "RFC 5321 wants a postmaster: python run.py alias add "
                                   f"{domain} postmaster YOU")
    except (OSError, smtplib.SMTPException) as e:
        return Finding("FAIL", "smtp", f"no SMTP conversation on port {port} ({e})",
                       "start rmail, or see its log")
    return Finding("PASS", "smtp", f"port {port}: EHLO, and postmaster@{domain} accepted")


def _imap(config) -> Finding:
    import imaplib
    port, tls = (config.listen.imap, False) if config.listen.imap else (config.listen.imaps, True)
    if not port:
        return Finding("PASS", "imap", "no IMAP listener configured")
    try:
        if tls:
            ctx = ssl.create_default_context()
            ctx.check_hostname, ctx.verify_mode = False, ssl.CERT_NONE
            imap = imaplib.IMAP4_SSL(_connect_host(config), port, ssl_context=ctx,
                                     timeout=TIMEOUT)
        else:
            imap = imaplib.IMAP4(_connect_host(config), port, timeout=TIMEOUT)
        caps = imap.capabilities
        imap.logout()
    except (OSError, imaplib.IMAP4.error) as e:
        return Finding("FAIL", "imap", f"no IMAP conversation on port {port} ({e})",
                       "start rmail, or see its log")
    if "IMAP4REV1" not in caps:
        return Finding("FAIL", "imap", f"port {port} does not speak IMAP4rev1", "see the log")
    return Finding("PASS", "imap", f"port {port}: greeting and capabilities "
                   f"({len(caps)} of them, IDLE {'yes' if 'IDLE' in caps else 'no'})")


def _http(config) -> Finding:
    port = config.listen.http
    if not port:
        return Finding("PASS", "http", "no HTTP listener configured")
    path = f"/.well-known/autoconfig/mail/config-v1.1.xml?emailaddress=postmaster%40{config.domains[0]}"
    try:
        conn = http.client.HTTPConnection(_connect_host(config), port, timeout=TIMEOUT)
        conn.request("GET", path)
        response = conn.getresponse()
        body = response.read()
        conn.close()
    except OSError as e:
        return Finding("FAIL", "http", f"no HTTP answer on port {port} ({e})",
                       "start rmail, or see its log")
    if response.status != 200 or config.hostname.encode() not in body:
        return Finding("FAIL", "http", f"GET autoconfig answered {response.status}",
                       "see the server log")
    return Finding("PASS", "http", f"port {port}: autoconfig names {config.hostname}")
