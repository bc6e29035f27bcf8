"""``python run.py install`` / ``uninstall``: rmail as a systemd service.

``install`` writes ``rmail.service`` for this checkout and config: a dedicated system
user, the one capability needed for ports below 1024, SIGHUP for ``systemctl reload``,
restart on failure, and the hardening systemd offers (read-only system, private /tmp,
no new privileges) with only mail_root writable.  Into the system unit directory it
also creates the user, hands it mail_root, and enables and starts the service.  With
``--unit-dir`` it writes only the unit file (for packaging, and for tests).

``uninstall`` removes only a unit file ``install`` wrote (it carries a marker line),
stopping the service first; the user and the mail are left in place.
"""

import os
import pwd
import shutil
import subprocess
import sys

from rmail import config as rconfig
from rmail import durable

SYSTEM_UNIT_DIR = "/etc/systemd/system"
UNIT_NAME = "rmail.service"
MARKER = "# Written by `python run.py install`; `python run.py uninstall` removes it."
CHECKOUT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


class InstallError(Exception):
    pass


def unit_text(config, user: str) -> str:
    """The unit file for *config* (a loaded Config), run as *user*."""
    config_path = os.path.abspath(config.path)
    mail_root = config.mail_root_path
    writable = [mail_root]
    for path in (config.tls_cert_path, config.tls_key_path):
        directory = os.path.dirname(path)  # renewed certificates are written there
        if not _inside(path, mail_root) and directory not in writable:
            writable.append(directory)
    # ProtectHome=true would hide a checkout or config kept under a home directory.
    paths = (CHECKOUT, config_path, *writable)
    homes = ("/home", "/root", "/run/user")
    protect_home = "read-only" if any(_inside(p, h) for p in paths for h in homes) else "true"
    # PrivateTmp=true would hide a config or mail kept under /tmp (a trial install).
    private_tmp = "false" if any(_inside(p, t) for p in paths for t in ("/tmp", "/var/tmp")) \
        else "true"
    lines = [
        MARKER,
        "[Unit]",
        f"Description=rmail mail server for {', '.join(config.domains)} (SMTP, IMAP, HTTP API)",
        "After=network-online.target",
        "Wants=network-online.target",
        "",
        "[Service]",
        "Type=simple",
        f"User={user}",
        f"Group={user}",
        f"WorkingDirectory={os.path.dirname(config_path)}",
        f"ExecStart={sys.executable} {os.path.join(CHECKOUT, 'run.py')} --config {config_path}",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "Restart=on-failure",
        "RestartSec=5",
        "TimeoutStopSec=45",
        "AmbientCapabilities=CAP_NET_BIND_SERVICE",
        "CapabilityBoundingSet=CAP_NET_BIND_SERVICE",
        "NoNewPrivileges=true",
        "ProtectSystem=strict",
        f"ReadWritePaths={' '.join(writable)}",
        f"ProtectHome={protect_home}",
        f"PrivateTmp={private_tmp}",
        "PrivateDevices=true",
        "ProtectKernelTunables=true",
        "ProtectKernelModules=true",
        "ProtectControlGroups=true",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "RestrictNamespaces=true",
        "RestrictRealtime=true",
        "LockPersonality=true",
        "SystemCallArchitectures=native",
        "UMask=0077",
        "LimitNOFILE=65536",
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines)


def install(config_path: str, unit_dir: str | None = None, user: str = "rmail", out=print) -> str:
    """Write the unit (and, into the system directory, set up and start the service);
    return the unit file's path."""
    config = rconfig.load(config_path)
    system = unit_dir is None
    unit_dir = unit_dir or SYSTEM_UNIT_DIR
    path = os.path.join(unit_dir, UNIT_NAME)
    if os.path.exists(path) and not _ours(path):
        raise InstallError(f"{path} exists and was not written by rmail; remove it first")
    if system:
        if os.geteuid() != 0:
            raise InstallError("installing a system service needs root: sudo python run.py install")
        if shutil.which("systemctl") is None:
            raise InstallError("systemctl not found: this system does not run systemd "
                               "(use --unit-dir to write the unit file only)")
        _ensure_user(user, config.mail_root_path, out)
        _hand_over(config, user)
    durable.make_dirs(unit_dir)
    durable.write_atomic(path, unit_text(config, user).encode(), mode=0o644)
    out(f"wrote {path}")
    if system:
        _systemctl("daemon-reload")
        _systemctl("enable", "--now", UNIT_NAME)
        out(f"enabled and started {UNIT_NAME}: systemctl status rmail; journalctl -u rmail")
    else:
        out(f"not enabled (--unit-dir): systemctl link {path} && systemctl enable --now rmail")
    return path


def uninstall(unit_dir: str | None = None, out=print) -> None:
    system = unit_dir is None
    path = os.path.join(unit_dir or SYSTEM_UNIT_DIR, UNIT_NAME)
    if not os.path.exists(path):
        raise InstallError(f"{path} does not exist: nothing to uninstall")
    if not _ours(path):
        raise InstallError(f"{path} was not written by `python run.py install`; left alone")
    if system:
        if os.geteuid() != 0:
            raise InstallError("removing a system service needs root: sudo python run.py uninstall")
        _systemctl("disable", "--now", UNIT_NAME)
    os.unlink(path)
    durable.fsync_dir(os.path.dirname(path))
    if system:
        _systemctl("daemon-reload")
    out(f"removed {path}; the mail, the config and the system user are left as they were")


def _ours(path: str) -> bool:
    try:
        with open(path) as f:
            return f.readline().rstrip("\n") == MARKER
    except OSError:
        return False


def _inside(path: str, directory: str) -> bool:
    path, directory = os.path.abspath(path), os.path.abspath(directory)
    return path == directory or path.startswith(directory.rstrip("/") + "/")


def _ensure_user(user: str, home: str, out) -> None:
    try:
        pwd.getpwnam(user)
        return
    except KeyError:
        pass
    subprocess.run(["useradd", "--system", "--user-group", "--no-create-home", "--home-dir", home,
                    "--shell", "/usr/sbin/nologin", user], check=True)
    out(f"created the system user {user}")


def _hand_over(config, user: str) -> None:
    """mail_root (and the TLS files) belong to the service user; the config is readable by
    its group only (it holds the JWT secret)."""
    entry = pwd.getpwnam(user)
    for top in {config.mail_root_path, os.path.dirname(config.tls_cert_path),
                os.path.dirname(config.tls_key_path)}:
        for root, dirs, files in os.walk(top):
            for name in [root] + [os.path.join(root, n) for n in dirs + files]:
                os.chown(name, entry.pw_uid, entry.pw_gid)
    os.chown(config.path, 0, entry.pw_gid)
    os.chmod(config.path, 0o640)


def _systemctl(*args) -> None:
    result = subprocess.run(["systemctl", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise InstallError(f"systemctl {' '.join(args)} failed: {result.stderr.strip()}")
