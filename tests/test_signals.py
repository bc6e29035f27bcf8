"""Signals and the twistd plugin, on real rmail processes."""

import json
import os
import signal
import smtplib
import subprocess
import sys
import time

from tests import harness
from tests.harness import TIMEOUT, Process, read_reply


def _edit_config(path, change):
    with open(path) as f:
        data = json.load(f)
    change(data)
    with open(path, "w") as f:
        json.dump(data, f)


def _ehlo_size(port) -> int:
    s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
    s.ehlo("client.example.com")
    size = int(s.esmtp_features["size"])
    s.quit()
    return size


def test_sighup_reloads_config_and_keeps_connections(tmp_path):
    """SIGHUP applies a valid new config at once; an open connection survives it."""
    config = harness.write_config(tmp_path)
    harness.add_users(config, {"alice@example.com": "pw"})
    proc = Process(config)
    try:
        port = proc.ports["smtp"]
        held = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
        held.ehlo("held.example.com")
        assert _ehlo_size(port) == 52428800
        _edit_config(config, lambda d: d["smtp"].update(max_message_size=123456))
        proc.signal(signal.SIGHUP)
        proc.wait_for_output(rb"configuration reloaded")
        assert _ehlo_size(port) == 123456
        assert held.noop()[0] == 250
        held.sendmail("x@ext.example", ["alice@example.com"], b"Subject: after reload\r\n\r\nx\r\n")
        held.quit()
    finally:
        proc.stop()
    assert proc.proc.returncode == 0


def test_sighup_with_broken_config_keeps_the_old_one(tmp_path):
    """A broken config on SIGHUP is refused with a log line naming the key; the old one stays."""
    config = harness.write_config(tmp_path)
    proc = Process(config)
    try:
        _edit_config(config, lambda d: d["smtp"].update(max_mesage_size=1))
        proc.signal(signal.SIGHUP)
        line = proc.wait_for_output(rb"reload: refused")
        assert b"smtp.max_mesage_size" in line
        assert _ehlo_size(proc.ports["smtp"]) == 52428800
        with open(config, "w") as f:
            f.write("{ not json")
        proc.signal(signal.SIGHUP)
        proc.wait_for_output(rb"reload: refused")
        assert _ehlo_size(proc.ports["smtp"]) == 52428800
    finally:
        proc.stop()
    assert proc.proc.returncode == 0


def test_sigterm_finishes_the_transaction_in_flight(tmp_path):
    """SIGTERM mid-DATA: new connections are refused, the open message still gets 250, exit 0."""
    config = harness.write_config(tmp_path)
    harness.add_users(config, {"alice@example.com": "pw"})
    proc = Process(config)
    port = proc.ports["smtp"]
    import socket
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    f = sock.makefile("rb")
    read_reply(f)
    for line in (b"EHLO c.example.com", b"MAIL FROM:<s@ext.example>",
                 b"RCPT TO:<alice@example.com>", b"DATA"):
        sock.sendall(line + b"\r\n")
        read_reply(f)
    sock.sendall(b"Subject: in flight\r\n\r\nfirst half\r\n")
    proc.signal(signal.SIGTERM)
    proc.wait_for_output(rb"rmail: stopping")
    refused = False
    try:
        probe = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
        probe.close()
    except ConnectionRefusedError:
        refused = True
    assert refused
    sock.sendall(b"second half\r\n.\r\n")
    try:
        reply = read_reply(f)
    except OSError:
        proc.stop()
        raise AssertionError(proc.output.decode())
    assert reply == ["250 2.0.0 OK: message accepted for delivery"]
    closing = f.readline()
    assert closing.startswith(b"421 4.3.2")
    sock.close()
    assert proc.wait() == 0
    from rmail.config import load
    root = load(config).mail_root_path
    messages = os.path.join(root, "domains", "example.com", "mailboxes", "alice", "messages")
    (name,) = os.listdir(messages)
    with open(os.path.join(messages, name), "rb") as m:
        assert m.read().endswith(b"first half\r\nsecond half\r\n")


def test_sigterm_when_idle_exits_zero(tmp_path):
    proc = Process(harness.write_config(tmp_path))
    proc.signal(signal.SIGTERM)
    assert proc.wait() == 0
    assert b"rmail: stopped" in proc.output


def test_twistd_plugin_serves_the_same_service(tmp_path):
    """`twistd -n rmail --config` builds the same service; `twistd rmail --help` lists the option."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = dict(os.environ, PYTHONPATH=harness.ROOT)
    helptext = subprocess.run([twistd, "rmail", "--help"], cwd=harness.ROOT, env=env,
                              capture_output=True, timeout=60)
    assert helptext.returncode == 0 and b"--config" in helptext.stdout
    config = harness.write_config(tmp_path, listen__smtp=_free_port())
    harness.add_users(config, {"alice@example.com": "pw"})
    port = json.load(open(config))["listen"]["smtp"]
    proc = subprocess.Popen([twistd, "-n", "--pidfile=", "rmail", "--config", config],
                            cwd=harness.ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        wrapper = Process.__new__(Process)
        wrapper.proc, wrapper.output = proc, b""
        wrapper.wait_for_output(rb"rmail: serving")
        s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
        assert s.sendmail("x@ext.example", ["alice@example.com"], b"Subject: twistd\r\n\r\nx\r\n") == {}
        s.quit()
        proc.send_signal(signal.SIGTERM)
        # twistd re-raises the signal that stopped it (as systemd expects) once the
        # service has stopped cleanly.
        assert wrapper.wait() in (0, -signal.SIGTERM)
        assert b"rmail: stopped" in wrapper.output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_twistd_daemonizes_with_pidfile_and_logfile(tmp_path):
    """`twistd --pidfile P --logfile L rmail --config C`: detaches, serves, logs to the file,
    stops on SIGTERM to the pid in the pidfile; a missing config is a usage error."""
    twistd = os.path.join(os.path.dirname(sys.executable), "twistd")
    env = dict(os.environ, PYTHONPATH=harness.ROOT)
    missing = subprocess.run([twistd, "-n", "rmail", "--config", str(tmp_path / "nope.json")],
                             cwd=harness.ROOT, env=env, capture_output=True, timeout=60)
    assert missing.returncode != 0 and b"no config file" in missing.stdout + missing.stderr
    config = harness.write_config(tmp_path, listen__smtp=_free_port())
    harness.add_users(config, {"alice@example.com": "pw"})
    port = json.load(open(config))["listen"]["smtp"]
    pidfile, logfile = tmp_path / "rmail.pid", tmp_path / "rmail.log"
    started = subprocess.run([twistd, "--pidfile", str(pidfile), "--logfile", str(logfile),
                              "rmail", "--config", config], cwd=harness.ROOT, env=env,
                             capture_output=True, timeout=60)
    assert started.returncode == 0, started.stderr
    pid = None
    try:
        deadline = time.monotonic() + 3 * TIMEOUT
        while not (pidfile.exists() and logfile.exists() and b"rmail: serving" in logfile.read_bytes()):
            assert time.monotonic() < deadline, "the daemon did not start"
            time.sleep(0.1)
        pid = int(pidfile.read_text())
        s = smtplib.SMTP("127.0.0.1", port, timeout=TIMEOUT)
        assert s.sendmail("x@ext.example", ["alice@example.com"], b"Subject: d\r\n\r\nx\r\n") == {}
        s.quit()
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 3 * TIMEOUT
        while pidfile.exists():
            assert time.monotonic() < deadline, "the daemon did not stop"
            time.sleep(0.1)
        pid = None  # stopped by itself
    finally:  # never leave a daemon behind, whatever failed
        if pid is None and pidfile.exists():
            pid = int(pidfile.read_text() or 0) or None
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
    assert b"rmail: stopped" in logfile.read_bytes()


def _free_port() -> int:
    import socket
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def test_sighup_reloads_the_certificate(tmp_path):
    """A renewed certificate is served to new connections after SIGHUP."""
    import ssl
    from rmail.tls import generate_self_signed
    cert, key = str(tmp_path / "cert.pem"), str(tmp_path / "key.pem")
    generate_self_signed("old.example.com", cert, key)
    config = harness.write_config(tmp_path, tls__cert=cert, tls__key=key)
    proc = Process(config)

    def served_name():
        ctx = ssl.create_default_context(cafile=cert)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        s = smtplib.SMTP_SSL("127.0.0.1", proc.ports["submissions"], timeout=TIMEOUT, context=ctx)
        der = s.sock.getpeercert(binary_form=True)
        s.quit()
        from cryptography import x509
        return x509.load_der_x509_certificate(der).subject.rfc4514_string()
    try:
        assert served_name() == "CN=old.example.com"
        generate_self_signed("new.example.com", cert, key)
        proc.signal(signal.SIGHUP)
        proc.wait_for_output(rb"configuration reloaded")
        assert served_name() == "CN=new.example.com"
    finally:
        proc.stop()


def test_sigterm_says_bye_to_imap_sessions(tmp_path):
    """SIGTERM closes IMAP sessions with an untagged BYE, and the process exits 0."""
    import imaplib
    config = harness.write_config(tmp_path)
    harness.add_users(config, {"alice@example.com": "pw"})
    proc = Process(config)
    imap = imaplib.IMAP4("127.0.0.1", proc.ports["imap"], timeout=TIMEOUT)
    imap.login("alice@example.com", "pw")
    imap.select("INBOX")
    proc.signal(signal.SIGTERM)
    assert imap.readline().startswith(b"* BYE")
    assert proc.wait() == 0
