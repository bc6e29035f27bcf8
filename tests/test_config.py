"""config.json: the schema's defaults, refusals with dotted paths, path resolution, and
the CLI's `init` and start-up failures, run as real processes."""

import json
import os
import socket
import subprocess
import sys

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from rmail import config as rconfig
from tests import harness

ROOT = harness.ROOT
CLI_TIMEOUT = 60


def run_cli(*args, cwd=ROOT):
    """`python run.py ARGS` as a real process; bounded in time."""
    return subprocess.run([sys.executable, os.path.join(ROOT, "run.py"), *args], cwd=cwd,
                          capture_output=True, timeout=CLI_TIMEOUT, stdin=subprocess.DEVNULL)


assert_one_line_error = harness.assert_one_line_error


# -- defaults -----------------------------------------------------------------------------

def test_every_default_matches_the_spec_table():
    config = rconfig.parse({})
    assert config.hostname == socket.getfqdn()
    assert config.domains == ["example.com"]
    assert config.mail_root == "data"
    assert config.listen.address == "0.0.0.0"
    assert (config.listen.smtp, config.listen.submission, config.listen.submissions,
            config.listen.imap, config.listen.imaps, config.listen.http) == (25, 587, 465, 143, 993, 9002)
    assert config.tls.cert is None and config.tls.key is None
    assert config.smtp.max_message_size == 52428800
    assert config.smtp.max_recipients == 100
    assert config.relay.enabled is True
    assert config.relay.smarthost is None
    assert config.relay.dns_servers is None
    assert config.relay.port == 25
    assert config.relay.retry_intervals == [60, 300, 900, 3600, 14400]
    assert config.relay.max_queue_time == 432000
    assert config.imap.allow_plaintext_auth is True
    assert config.http.token_ttl == 86400
    assert config.http.cors_origins == ["*"]
    assert config.storage.backend == "shard"
    assert config.storage.threads == 2


def test_defaults_are_the_complete_key_set():
    """to_dict of an empty file is exactly the table: no key missing, none extra."""
    data = rconfig.parse({}).to_dict()
    data.pop("hostname")
    assert data == {
        "domains": ["example.com"],
        "mail_root": "data",
        "listen": {"address": "0.0.0.0", "smtp": 25, "submission": 587, "submissions": 465,
                   "imap": 143, "imaps": 993, "http": 9002},
        "tls": {"cert": None, "key": None, "min_version": "1.2"},
        "smtp": {"max_message_size": 52428800, "max_recipients": 100, "max_command_line": 2048,
                 "max_errors": 20, "idle_timeout": 300},
        "relay": {"enabled": True, "smarthost": None, "dns_servers": None, "port": 25,
                  "retry_intervals": [60, 300, 900, 3600, 14400], "max_queue_time": 432000},
        "imap": {"allow_plaintext_auth": True, "idle_timeout": 1800, "login_timeout": 60,
                 "max_command_line": 65536, "max_literal": 102400},
        "http": {"jwt_secret": "", "token_ttl": 86400, "cors_origins": ["*"]},
        "limits": {"connections_per_address": 30, "connections_per_minute": 300,
                   "exempt_networks": ["127.0.0.0/8", "::1/128"], "login_failures": 10,
                   "login_lockout": 60},
        "storage": {"backend": "shard", "threads": 2},
    }


def test_a_partial_section_keeps_the_other_defaults():
    config = rconfig.parse({"listen": {"smtp": 2525}, "relay": {"port": 587}})
    assert config.listen.smtp == 2525
    assert config.listen.submission == 587 and config.listen.address == "0.0.0.0"
    assert config.relay.port == 587 and config.relay.enabled is True
    assert config.relay.retry_intervals == [60, 300, 900, 3600, 14400]


# -- refusals -----------------------------------------------------------------------------

def test_unknown_nested_key_is_refused_with_its_dotted_path():
    with pytest.raises(rconfig.ConfigError) as e:
        rconfig.parse({"listen": {"smpt": 25}})
    assert "listen.smpt" in str(e.value)


def test_unknown_top_level_key_is_refused_by_name():
    with pytest.raises(rconfig.ConfigError) as e:
        rconfig.parse({"hostnme": "mail.example.com"})
    assert "hostnme" in str(e.value)


@pytest.mark.parametrize("data, path", [
    ({"listen": {"smtp": "25"}}, "listen.smtp"),
    ({"smtp": {"max_message_size": True}}, "smtp.max_message_size"),
    ({"domains": "example.com"}, "domains"),
    ({"relay": {"retry_intervals": [60, "x"]}}, "relay.retry_intervals[1]"),
    ({"relay": {"enabled": 1}}, "relay.enabled"),
    ({"http": {"cors_origins": "*"}}, "http.cors_origins"),
    ({"listen": 25}, "listen"),
])
def test_wrong_type_is_refused_with_its_dotted_path(data, path):
    with pytest.raises(rconfig.ConfigError) as e:
        rconfig.parse(data)
    message = str(e.value)
    assert path in message
    assert "\n" not in message


def test_bool_is_not_accepted_as_an_integer():
    """JSON true is a Python int subclass; the schema must still refuse it for an int key."""
    with pytest.raises(rconfig.ConfigError, match=r"smtp\.max_message_size"):
        rconfig.parse({"smtp": {"max_message_size": True}})
    with pytest.raises(rconfig.ConfigError, match=r"listen\.smtp"):
        rconfig.parse({"listen": {"smtp": False}})


def test_storage_threads_must_be_positive():
    assert rconfig.parse({"storage": {"threads": 6}}).storage.threads == 6
    for bad in (0, -1):
        with pytest.raises(rconfig.ConfigError, match=r"storage\.threads"):
            rconfig.parse({"storage": {"threads": bad}})


def test_null_disables_a_listener():
    config = rconfig.parse({"listen": {"smtp": None, "submission": None, "submissions": None,
                                       "imap": None, "imaps": None, "http": None}})
    assert config.listen.smtp is None and config.listen.http is None
    assert config.listeners() == {}
    assert rconfig.parse({"listen": {"imap": None}}).listeners() == {
        "smtp": 25, "submission": 587, "submissions": 465, "imaps": 993, "http": 9002}


def test_null_is_refused_where_the_schema_does_not_allow_it():
    with pytest.raises(rconfig.ConfigError, match=r"smtp\.max_recipients"):
        rconfig.parse({"smtp": {"max_recipients": None}})


# -- paths --------------------------------------------------------------------------------

def test_relative_paths_resolve_against_the_config_files_directory(tmp_path, monkeypatch):
    conf_dir = tmp_path / "etc" / "rmail"
    conf_dir.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    path = conf_dir / "config.json"
    path.write_text(json.dumps({"mail_root": "maildata",
                                "tls": {"cert": "certs/c.pem", "key": "../keys/k.pem"}}))
    monkeypatch.chdir(elsewhere)
    config = rconfig.load(str(path))
    assert config.mail_root_path == str(conf_dir / "maildata")
    assert config.tls_cert_path == str(conf_dir / "certs" / "c.pem")
    assert config.tls_key_path == str(tmp_path / "etc" / "keys" / "k.pem")


def test_default_tls_paths_live_under_the_resolved_mail_root(tmp_path, monkeypatch):
    path = tmp_path / "config.json"
    path.write_text("{}")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = rconfig.load("../config.json")  # a relative config path, from another cwd
    assert config.mail_root_path == str(tmp_path / "data")
    assert config.tls_cert_path == str(tmp_path / "data" / "tls" / "cert.pem")
    assert config.tls_key_path == str(tmp_path / "data" / "tls" / "key.pem")


def test_absolute_paths_are_kept(tmp_path):
    path = tmp_path / "config.json"
    path.write_text(json.dumps({"mail_root": "/var/mail/rmail"}))
    assert rconfig.load(str(path)).mail_root_path == "/var/mail/rmail"


# -- reading the file ---------------------------------------------------------------------

def test_invalid_json_is_one_line_with_line_and_column(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{\n  "hostname": "mail.example.com",\n  "domains": [\n}\n')
    with pytest.raises(rconfig.ConfigError) as e:
        rconfig.load(str(path))
    message = str(e.value)
    assert "\n" not in message
    assert "line 4" in message and "column 1" in message


def test_missing_file_says_to_run_init(tmp_path):
    with pytest.raises(rconfig.ConfigError) as e:
        rconfig.load(str(tmp_path / "nope.json"))
    message = str(e.value)
    assert "nope.json" in message
    assert "init" in message


@pytest.mark.parametrize("form", ["--config X serve", "X", "serve --config X", "serve X"])
def test_serve_with_an_unknown_key_exits_1_with_one_line(tmp_path, form):
    path = harness.write_config(tmp_path)
    data = json.loads(open(path).read())
    data["listen"]["smpt"] = 25
    with open(path, "w") as f:
        json.dump(data, f)
    args = [path if word == "X" else word for word in form.split()]
    result = run_cli(*args)
    assert_one_line_error(result, "listen.smpt")


def test_serve_with_invalid_json_exits_1_with_one_line(tmp_path):
    path = tmp_path / "config.json"
    path.write_text('{"hostname": }')
    assert_one_line_error(run_cli(str(path)), "line 1", "column")


def test_serve_without_a_config_file_says_to_run_init(tmp_path):
    result = run_cli(str(tmp_path / "config.json"))
    assert_one_line_error(result, "init")


# -- init ---------------------------------------------------------------------------------

def _init(directory, *extra):
    path = os.path.join(str(directory), "config.json")
    result = run_cli("init", *extra, "--config", path)
    return path, result


def test_init_writes_a_config_with_a_random_jwt_secret(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    path_a, result_a = _init(tmp_path / "a", "--hostname", "mail.example.net")
    path_b, result_b = _init(tmp_path / "b", "--hostname", "mail.example.net")
    assert result_a.returncode == 0, result_a.stderr.decode()
    assert result_b.returncode == 0, result_b.stderr.decode()
    secret_a = json.loads(open(path_a).read())["http"]["jwt_secret"]
    secret_b = json.loads(open(path_b).read())["http"]["jwt_secret"]
    assert len(secret_a) >= 32 and len(secret_b) >= 32
    assert secret_a != secret_b
    # The written file is a valid config the server would accept, with the given hostname.
    config = rconfig.load(path_a)
    assert config.hostname == "mail.example.net"
    assert config.http.jwt_secret == secret_a


def test_init_writes_a_self_signed_certificate_for_the_hostname(tmp_path):
    path, result = _init(tmp_path, "--hostname", "mx.rmail-test.example")
    assert result.returncode == 0, result.stderr.decode()
    cert_path = tmp_path / "data" / "tls" / "cert.pem"
    key_path = tmp_path / "data" / "tls" / "key.pem"
    assert cert_path.exists() and key_path.exists()
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    (cn,) = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    assert cn.value == "mx.rmail-test.example"
    assert cert.issuer == cert.subject  # self-signed
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert "mx.rmail-test.example" in san.get_values_for_type(x509.DNSName)
    from cryptography.hazmat.primitives import serialization
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    assert key.public_key().public_numbers() == cert.public_key().public_numbers()


def test_init_refuses_to_overwrite_without_force(tmp_path):
    path, first = _init(tmp_path, "--hostname", "one.example.net")
    assert first.returncode == 0, first.stderr.decode()
    before = open(path, "rb").read()
    path, again = _init(tmp_path, "--hostname", "two.example.net")
    assert_one_line_error(again, "--force")
    assert open(path, "rb").read() == before


def test_init_force_overwrites(tmp_path):
    path, first = _init(tmp_path, "--hostname", "one.example.net")
    assert first.returncode == 0, first.stderr.decode()
    before = json.loads(open(path).read())
    path, forced = _init(tmp_path, "--force", "--hostname", "two.example.net")
    assert forced.returncode == 0, forced.stderr.decode()
    after = json.loads(open(path).read())
    assert after["hostname"] == "two.example.net"
    assert after["http"]["jwt_secret"] != before["http"]["jwt_secret"]


def test_init_dev_listens_on_loopback_unprivileged_ports(tmp_path):
    path, result = _init(tmp_path, "--dev")
    assert result.returncode == 0, result.stderr.decode()
    listen = json.loads(open(path).read())["listen"]
    assert listen == {"address": "127.0.0.1", "smtp": 2525, "submission": 2587,
                      "submissions": 2465, "imap": 1143, "imaps": 1993, "http": 9002}


def test_init_without_dev_keeps_the_standard_ports(tmp_path):
    path, result = _init(tmp_path)
    assert result.returncode == 0, result.stderr.decode()
    listen = json.loads(open(path).read())["listen"]
    assert listen["address"] == "0.0.0.0" and listen["smtp"] == 25 and listen["imaps"] == 993


# -- start-up failures --------------------------------------------------------------------

def test_a_port_that_cannot_be_bound_stops_the_start_naming_its_key(tmp_path):
    blocker = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]
        path = harness.write_config(tmp_path, listen__smtp=port)
        result = run_cli(path)
    finally:
        blocker.close()
    line = assert_one_line_error(result, "listen.smtp", str(port))
    assert "listen.submission" not in line
