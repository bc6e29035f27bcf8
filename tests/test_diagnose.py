"""`python run.py diagnose` against real rmail processes: healthy, and broken in the ways
operators break them (a listener down, a damaged shard, an expired certificate)."""

import datetime
import json
import os
import smtplib
import socket
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests import harness

PHASES = ["configuration", "storage", "tls", "listeners", "dns", "smtp", "imap", "http"]


def _free_ports(n) -> list[int]:
    socks = [socket.socket() for _ in range(n)]
    for s in socks:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in socks]
    for s in socks:
        s.close()
    return ports


def _config(tmp_path, **overrides) -> str:
    ports = dict(zip(("smtp", "submission", "submissions", "imap", "imaps", "http"), _free_ports(6)))
    values = {f"listen__{key}": port for key, port in ports.items()}
    values.update(overrides)
    path = harness.write_config(tmp_path, **values)
    directory = harness.add_users(path)
    directory.add_alias("example.com", "postmaster", "alice")
    return path


def _diagnose(config_path) -> tuple[int, dict]:
    result = subprocess.run([sys.executable, os.path.join(harness.ROOT, "run.py"), "diagnose",
                             "--config", config_path], capture_output=True, text=True,
                            timeout=harness.TIMEOUT * 2)
    lines = result.stdout.splitlines()
    phases = {}
    for line in lines[:-1]:
        level, _, rest = line.partition(" ")
        phase, _, text = rest.partition(": ")
        phases[phase] = (level, text)
    assert list(phases) == PHASES, result.stdout + result.stderr
    assert lines[-1].endswith("failed")
    return result.returncode, phases


@pytest.fixture
def running(tmp_path):
    config = _config(tmp_path)
    proc = harness.Process(config)
    yield config, proc
    proc.stop()


def _deliver(port):
    with smtplib.SMTP("127.0.0.1", port, timeout=harness.TIMEOUT) as s:
        s.sendmail("x@ext.example", ["alice@example.com"], b"Subject: d\r\n\r\nhello\r\n")


def test_a_healthy_server_passes_everything_but_dns(running):
    config, proc = running
    _deliver(proc.ports["smtp"])
    status, phases = _diagnose(config)
    assert status == 0
    levels = {phase: level for phase, (level, _) in phases.items()}
    assert levels == {**{p: "PASS" for p in PHASES}, "dns": "WARN"}
    assert "1 message(s)" in phases["storage"][1]
    assert "autoconfig names mail.example.com" in phases["http"][1]


def test_a_stopped_listener_fails(running, tmp_path):
    config, _ = running
    with open(config) as f:
        data = json.load(f)
    data["listen"]["imaps"] = _free_ports(1)[0]  # where the running server does not listen
    other = tmp_path / "other.json"
    other.write_text(json.dumps(data))
    status, phases = _diagnose(str(other))
    assert status == 1
    assert phases["listeners"][0] == "FAIL" and "listen.imaps" in phases["listeners"][1]
    assert phases["imap"][0] == "PASS"  # the STARTTLS port still answers


def test_nothing_running_fails_the_round_trips(tmp_path):
    status, phases = _diagnose(_config(tmp_path))
    assert status == 1
    for phase in ("listeners", "smtp", "imap", "http"):
        assert phases[phase][0] == "FAIL", phases[phase]
    assert phases["configuration"][0] == "PASS"


def test_a_damaged_shard_fails_storage(running):
    config, proc = running
    _deliver(proc.ports["smtp"])
    proc.stop()
    index = os.path.join(os.path.dirname(config), "data", "domains", "example.com",
                         "mailboxes", "alice", "index.sqlite")
    with open(index, "r+b") as f:
        f.write(b"this is not a database at all" * 10)
    status, phases = _diagnose(config)
    assert status == 1
    assert phases["storage"][0] == "FAIL" and "alice@example.com" in phases["storage"][1]


def test_a_missing_message_file_and_quarantine_are_reported(running):
    config, proc = running
    _deliver(proc.ports["smtp"])
    _deliver(proc.ports["smtp"])
    shard = os.path.join(os.path.dirname(config), "data", "domains", "example.com",
                         "mailboxes", "alice")
    os.makedirs(os.path.join(shard, "quarantine"), exist_ok=True)
    with open(os.path.join(shard, "quarantine", "leftover"), "wb") as f:
        f.write(b"x")
    status, phases = _diagnose(config)
    assert phases["storage"][0] == "WARN" and "1 file(s) in" in phases["storage"][1]
    os.unlink(os.path.join(shard, "messages", sorted(os.listdir(os.path.join(shard, "messages")))[0]))
    status, phases = _diagnose(config)
    assert status == 1
    assert phases["storage"][0] == "FAIL" and "1 indexed message(s) have no file" in phases["storage"][1]


def _expired_certificate(directory) -> tuple[str, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "mail.example.com")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=400))
            .not_valid_after(now - datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("mail.example.com")]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = os.path.join(directory, "old.pem"), os.path.join(directory, "old.key")
    with open(cert_path, "wb") as f:
        f.write(cert.public_bytes(serialization.Encoding.PEM))
    with open(key_path, "wb") as f:
        f.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                  serialization.NoEncryption()))
    return cert_path, key_path


def test_an_expired_certificate_fails_tls(tmp_path):
    cert, key = _expired_certificate(str(tmp_path))
    status, phases = _diagnose(_config(tmp_path, tls__cert=cert, tls__key=key))
    assert status == 1
    assert phases["tls"][0] == "FAIL" and "expired on" in phases["tls"][1]


def test_a_broken_config_fails_the_first_phase_only(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"listen": {"smtp": "twenty-five"}}')
    result = subprocess.run([sys.executable, os.path.join(harness.ROOT, "run.py"), "diagnose",
                             "--config", str(path)], capture_output=True, text=True,
                            timeout=harness.TIMEOUT)
    assert result.returncode == 1
    assert result.stdout.startswith("FAIL configuration: ") and "listen.smtp" in result.stdout
