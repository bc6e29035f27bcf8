"""`python run.py install` / `uninstall` with --unit-dir: the unit file, key by key."""

import os
import shutil
import subprocess
import sys

from tests import harness


def _run(*args):
    return subprocess.run([sys.executable, os.path.join(harness.ROOT, "run.py"), *args],
                          capture_output=True, text=True, timeout=harness.TIMEOUT)


def _unit(path) -> dict:
    """systemd's format: sections, and keys that may repeat (kept in order)."""
    sections, current = {}, None
    with open(path) as f:
        for line in f:
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            if line.startswith("["):
                current = sections.setdefault(line.strip("[]"), {})
            else:
                key, _, value = line.partition("=")
                current.setdefault(key, []).append(value)
    return sections


def test_install_writes_a_hardened_unit_and_uninstall_removes_it(tmp_path):
    config = harness.write_config(tmp_path)
    units = tmp_path / "units"
    result = _run("install", "--unit-dir", str(units), "--config", config)
    assert result.returncode == 0, result.stderr
    path = units / "rmail.service"
    unit = _unit(path)
    service = {key: values[-1] for key, values in unit["Service"].items()}
    mail_root = os.path.join(str(tmp_path), "data")
    assert service["ExecStart"] == (f"{sys.executable} {os.path.join(harness.ROOT, 'run.py')} "
                                    f"--config {config}")
    assert service["User"] == service["Group"] == "rmail"
    assert service["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert service["Restart"] == "on-failure"
    assert service["AmbientCapabilities"] == "CAP_NET_BIND_SERVICE"
    assert service["CapabilityBoundingSet"] == "CAP_NET_BIND_SERVICE"
    assert service["NoNewPrivileges"] == "true"
    assert service["ProtectSystem"] == "strict"
    # The config and mail of a test live under /tmp, which PrivateTmp would hide.
    assert service["PrivateTmp"] == ("false" if mail_root.startswith("/tmp/") else "true")
    # Only mail_root and the directory of the certificate in use are writable.
    writable = service["ReadWritePaths"].split()
    assert writable[0] == mail_root
    assert writable[1:] == [os.path.dirname(harness.shared_certificate()[0])]
    assert unit["Install"]["WantedBy"] == ["multi-user.target"]
    assert "not enabled" in result.stdout
    if shutil.which("systemd-analyze"):  # systemd's own check of the file, where it exists
        check = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                               text=True, timeout=harness.TIMEOUT)
        assert check.returncode == 0, check.stderr

    # A second install replaces its own file; uninstall removes it.
    assert _run("install", "--unit-dir", str(units), "--user", "mail", "--config", config).returncode == 0
    assert _unit(path)["Service"]["User"] == ["mail"]
    result = _run("uninstall", "--unit-dir", str(units))
    assert result.returncode == 0, result.stderr
    assert not path.exists()
    result = _run("uninstall", "--unit-dir", str(units))
    assert result.returncode == 1 and "nothing to uninstall" in result.stderr


def test_a_unit_file_rmail_did_not_write_is_left_alone(tmp_path):
    config = harness.write_config(tmp_path)
    units = tmp_path / "units"
    units.mkdir()
    foreign = units / "rmail.service"
    foreign.write_text("[Service]\nExecStart=/usr/bin/something-else\n")
    result = _run("install", "--unit-dir", str(units), "--config", config)
    assert result.returncode == 1 and "not written by rmail" in result.stderr
    result = _run("uninstall", "--unit-dir", str(units))
    assert result.returncode == 1 and "left alone" in result.stderr
    assert foreign.read_text() == "[Service]\nExecStart=/usr/bin/something-else\n"
