"""``python run.py ...``: serving, init, users and aliases.

Each command declares its arguments and help once, here.  Errors are one line on
stderr and exit status 1; nothing here prints a traceback for a user mistake.

    python run.py [CONFIG]                     serve (default ./config.json)
    python run.py init [--dev] [--force]       write config.json and a certificate
    python run.py user add|passwd|remove|list  manage users
    python run.py alias list|add|remove        manage aliases
    python run.py queue list|retry|delete      look at and act on the outbound queue
    python run.py diagnose                     check a server's setup, phase by phase
    python run.py install|uninstall            run as a systemd service, or stop doing so
    python run.py test                         an end-to-end run against a throwaway server
    python run.py migrate                      legacy index.json storage into shards
    python run.py import maildir|mbox PATH ADDRESS   mail from Dovecot or an mbox
"""

import argparse
import dataclasses
import getpass
import json
import os
import secrets
import sys
import time

from rmail import config as rconfig
from rmail import durable
from rmail.directory import Directory, DirectoryError, split_address
from rmail.relay.control import ControlError as _ControlError

COMMANDS = ("init", "user", "alias", "queue", "serve", "diagnose", "install", "uninstall", "test",
            "migrate", "import")


class CommandError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python run.py",
        description="rmail: a self-hosted mail server. Without a command, serve.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND")

    def command(name, help_text):
        c = sub.add_parser(name, help=help_text, description=help_text)
        c.add_argument("--config", default="config.json", help="config file (default ./config.json)")
        return c

    s = command("serve", "start the mail server in the foreground (the default)")
    s.add_argument("config_file", nargs="?", help="config file (same as --config)")
    s.add_argument("--log-format", choices=("text", "json"), default="text",
                   help="log lines as text (default) or one JSON object per line")

    i = command("init", "write config.json with a random JWT secret and a self-signed certificate")
    i.add_argument("--dev", action="store_true",
                   help="listen on 127.0.0.1 with unprivileged ports (2525, 2587, 2465, 1143, 1993, 9002)")
    i.add_argument("--force", action="store_true", help="overwrite an existing config file")
    i.add_argument("--hostname", help="the server's name (default: this machine's FQDN)")
    i.add_argument("--domain", action="append", dest="domains",
                   help="a local domain (repeat for several; default example.com)")

    u = command("user", "add, change, remove and list users")
    usub = u.add_subparsers(dest="action", metavar="ACTION", required=True)
    for name, help_text in (("add", "add a user"), ("passwd", "change a user's password")):
        a = usub.add_parser(name, help=help_text)
        a.add_argument("address", help="the full address, e.g. alice@example.com")
        a.add_argument("--password", help="the password (prompted for when absent)")
        if name == "add":
            a.add_argument("--admin", action="store_true", help="may manage aliases over HTTP")
    r = usub.add_parser("remove", help="remove a user (its stored mail is kept)")
    r.add_argument("address")
    lst = usub.add_parser("list", help="list a domain's users")
    lst.add_argument("domain")

    a = command("alias", "list, add and remove a domain's alias rules")
    asub = a.add_subparsers(dest="action", metavar="ACTION", required=True)
    al = asub.add_parser("list", help="list a domain's aliases in resolution order")
    al.add_argument("domain")
    aa = asub.add_parser("add", help="add a rule: local parts matching PATTERN go to TARGET")
    aa.add_argument("domain")
    aa.add_argument("pattern", help="a regular expression matched against the whole local part")
    aa.add_argument("target", help="an existing user (local part or full address)")
    ar = asub.add_parser("remove", help="remove the rule with exactly this pattern")
    ar.add_argument("domain")
    ar.add_argument("pattern")

    command("diagnose", "check the configuration, storage, certificate, listeners, DNS and a "
            "round trip over SMTP, IMAP and HTTP; one line per phase, exit 1 on any FAIL")
    ins = command("install", "run rmail as a systemd service: write rmail.service for this "
                  "checkout and config, create the service user, enable and start it")
    ins.add_argument("--unit-dir", help="write only the unit file, into this directory "
                     "(default: /etc/systemd/system, and set everything up)")
    ins.add_argument("--user", default="rmail", help="the system user to run as (default rmail)")
    uni = command("uninstall", "stop the service and remove the unit file `install` wrote "
                  "(mail, config and user stay)")
    uni.add_argument("--unit-dir", help="the directory given to install --unit-dir")
    command("test", "start a throwaway server on free loopback ports in a temporary directory "
            "and run the end-to-end suite against it (your config and mail are not touched)")

    q = command("queue", "look at and act on the outbound queue (works on a running server)")
    qsub = q.add_subparsers(dest="action", metavar="ACTION", required=True)
    qsub.add_parser("list", help="every queued message: ID, sender, and each recipient's "
                                 "state, attempts, next attempt and last reply")
    qr = qsub.add_parser("retry", help="attempt a message (or --all) now, whatever its schedule")
    qr.add_argument("id", nargs="?", help="the queue ID (from `queue list`)")
    qr.add_argument("--all", action="store_true", help="every queued message")
    qd = qsub.add_parser("delete", help="drop a message from the queue, without a bounce")
    qd.add_argument("id", help="the queue ID (from `queue list`)")
    _moving_commands(command)
    return p


def _moving_commands(command):
    """`migrate` and `import`: mail from the legacy store, Dovecot or an mbox (server stopped)."""
    batch = {"type": int, "default": 1000, "metavar": "N",
             "help": "messages per index commit (default 1000)"}
    m = command("migrate", "copy the legacy index.json storage under mail_root into shard "
                "storage, keeping UIDVALIDITY, UIDs, flags and dates (stop the server first; "
                "safe to run again)")
    m.add_argument("--from", dest="source", metavar="DIR",
                   help="the legacy tree's root (default: mail_root)")
    m.add_argument("--merge", action="store_true",
                   help="add legacy mail with new UIDs to folders where rmail already gave "
                        "out UIDs (otherwise those folders are reported and left alone)")
    m.add_argument("--batch-size", **batch)
    imp = command("import", "add a Maildir (with Maildir++ sub-folders) or an mbox to a "
                  "user's mail, after what is there (stop the server first; safe to run again)")
    isub = imp.add_subparsers(dest="kind", metavar="FORMAT", required=True)
    for kind, what in (("maildir", "a Maildir directory (cur/, new/, .Sub.Folders)"),
                       ("mbox", "an mbox file")):
        k = isub.add_parser(kind, help=f"import {what}")
        k.add_argument("path", help=what)
        k.add_argument("address", help="the user's full address, e.g. alice@example.com")
        k.add_argument("--folder", help="the folder to import into (default INBOX; a "
                       "Maildir's sub-folders go below it)")
        k.add_argument("--batch-size", **batch)


def _take_config(argv: list) -> tuple[list, str | None]:
    """Pull ``--config PATH`` (or ``--config=PATH``) out of argv, wherever it stands."""
    rest, config = [], None
    it = iter(argv)
    for arg in it:
        if arg == "--config":
            config = next(it, None)
            if config is None:
                raise CommandError("--config needs a path")
        elif arg.startswith("--config="):
            config = arg.split("=", 1)[1]
        else:
            rest.append(arg)
    return rest, config


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        argv, config = _take_config(argv)
    except CommandError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    if argv and argv[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    if not argv or argv[0] not in COMMANDS:
        argv = ["serve"] + argv  # `run.py`, `run.py CONFIG`, `run.py --log-format json`
    args = _parser().parse_args(argv)
    if config is not None:
        args.config = config
    try:
        return {"serve": cmd_serve, "init": cmd_init, "user": cmd_user,
                "alias": cmd_alias, "queue": cmd_queue, "diagnose": cmd_diagnose, "install": cmd_install,
                "uninstall": cmd_uninstall, "test": cmd_test,
                "migrate": cmd_migrate, "import": cmd_import}[args.command](args)
    except (CommandError, DirectoryError, rconfig.ConfigError, _ControlError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- serve --------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    from rmail import serve
    return serve.run(args.config_file or args.config, args.log_format)


def cmd_diagnose(args) -> int:
    from rmail import diagnose
    return diagnose.run(args.config)


def cmd_test(args) -> int:
    from rmail import selftest
    return selftest.run()


def cmd_install(args) -> int:
    from rmail import install
    try:
        install.install(args.config, args.unit_dir, args.user)
    except install.InstallError as e:
        raise CommandError(str(e))
    return 0


def cmd_uninstall(args) -> int:
    from rmail import install
    try:
        install.uninstall(args.unit_dir)
    except install.InstallError as e:
        raise CommandError(str(e))
    return 0


# -- init ---------------------------------------------------------------------------------

def cmd_init(args) -> int:
    from rmail.tls import generate_self_signed, is_self_signed
    path = os.path.abspath(args.config)
    if os.path.exists(path) and not args.force:
        raise CommandError(f"{args.config} already exists; use --force to overwrite it")
    fields = {"http": rconfig.HTTP(jwt_secret=secrets.token_urlsafe(48))}
    if args.hostname:
        fields["hostname"] = args.hostname
    if args.domains:
        fields["domains"] = args.domains
    if args.dev:
        fields["listen"] = rconfig.DEV_LISTEN
    config = dataclasses.replace(rconfig.Config(**fields), path=path)
    rconfig.parse(config.to_dict(), path)  # the same checks as at start
    durable.make_dirs(config.mail_root_path)
    missing = not (os.path.exists(config.tls_cert_path) and os.path.exists(config.tls_key_path))
    if missing or (args.force and is_self_signed(config.tls_cert_path)):
        generate_self_signed(config.hostname, config.tls_cert_path, config.tls_key_path)
    durable.write_atomic(path, (json.dumps(config.to_dict(), indent=2) + "\n").encode())
    print(f"wrote {args.config} for {config.hostname} (domains: {', '.join(config.domains)}; "
          f"mail in {config.mail_root_path})")
    print(f"TLS certificate: {config.tls_cert_path} (self-signed; replace it with a real one "
          "and send SIGHUP)")
    return 0


# -- users and aliases ---------------------------------------------------------------------

def _directory(args) -> Directory:
    config = rconfig.load(args.config)
    directory = Directory(config.mail_root_path, config.domains)
    directory.refresh()
    return directory


def _password(args, address) -> str:
    if args.password is not None:
        return args.password
    if not sys.stdin.isatty():
        raise CommandError("no terminal to ask for the password on; pass --password")
    first = getpass.getpass(f"Password for {address}: ")
    if first != getpass.getpass("Again: "):
        raise CommandError("the passwords differ; nothing changed")
    return first


def cmd_user(args) -> int:
    directory = _directory(args)
    if args.action == "add":
        directory.files(split_address(args.address)[1])  # refuse a non-local domain first
        user = directory.add_user(args.address, _password(args, args.address), admin=args.admin)
        print(f"added {user.address}{' (admin)' if user.admin else ''}")
    elif args.action == "passwd":
        if directory.user(args.address) is None:
            raise CommandError(f"no such user: {args.address}")
        user = directory.set_password(args.address, _password(args, args.address))
        print(f"changed the password of {user.address}")
    elif args.action == "remove":
        directory.remove_user(args.address)
        print(f"removed {args.address.lower()}; its stored mail is kept")
    elif args.action == "list":
        directory.files(args.domain)
        for user in directory.users(args.domain):
            print(user.address + ("  admin" if user.admin else ""))
    return 0


def cmd_alias(args) -> int:
    directory = _directory(args)
    if args.action == "list":
        directory.files(args.domain)
        for alias in directory.aliases(args.domain):
            print(f"{alias.pattern}\t-> {alias.target}")
    elif args.action == "add":
        alias = directory.add_alias(args.domain, args.pattern, args.target)
        print(f"added {alias.pattern} -> {alias.target} in {args.domain.lower()}")
    elif args.action == "remove":
        directory.remove_alias(args.domain, args.pattern)
        print(f"removed {args.pattern} from {args.domain.lower()}")
    return 0


# -- the outbound queue --------------------------------------------------------------------

def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(seconds))


def cmd_queue(args) -> int:
    from rmail.relay import control
    from rmail.relay.entry import DamagedEntry, PENDING
    from rmail.relay.queue import QueueDir, QueueLocked, valid_id
    config = rconfig.load(args.config)
    queue = QueueDir(config.mail_root_path)
    if args.action == "list":
        ids = queue.ids() if queue.exists() else []
        if not ids:
            print("the queue is empty")
            return 0
        now, pending = time.time(), 0
        for queue_id in ids:
            try:
                entry = queue.read(queue_id)
            except KeyError:
                continue  # finished while we were reading
            except DamagedEntry as e:
                print(f"{queue_id}  damaged: {e} (quarantined when the server starts)")
                continue
            print(f"{entry.id}  {entry.size} bytes  queued {_when(entry.created)}  "
                  f"from <{entry.sender}>")
            for r in entry.recipients:
                line = f"    <{r.address}>  {r.status}  attempts={r.attempts}"
                if r.status == PENDING:
                    pending += 1
                    line += "  next=" + ("now" if r.next_attempt <= now else _when(r.next_attempt))
                if r.last_reply:
                    line += f"  last: {r.last_reply}"
                print(line)
        print(f"{len(ids)} message{'s' if len(ids) != 1 else ''}, {pending} "
              f"recipient{'s' if pending != 1 else ''} pending")
        return 0
    if args.action == "retry" and bool(args.all) == bool(args.id):
        raise CommandError("queue retry: give a queue ID or --all (not both)")
    if args.id and not valid_id(args.id):
        raise CommandError(f"{args.id!r} is not a queue ID; `queue list` shows them")
    request = {"action": args.action, "id": args.id, "all": bool(getattr(args, "all", False))}
    if not queue.exists():
        raise CommandError(f"no message with queue ID {args.id} in the queue"
                           if args.id else "the queue is empty")
    try:
        queue.lock()
    except QueueLocked:
        answer = control.submit(queue, request)  # a server runs: it acts
    else:
        try:
            answer = control.offline(queue, request)
        finally:
            queue.unlock()
    if not answer.get("ok"):
        raise CommandError(answer.get("error", "the request failed"))
    print(answer["message"])
    return 0


# -- moving to rmail: migrate and import ---------------------------------------------------

def cmd_migrate(args) -> int:
    from rmail import migrate, offline
    from rmail.imap.fetch import describe
    from rmail.store.loader import LoadError
    try:
        return migrate.run(rconfig.load(args.config), args.source, batch_size=args.batch_size,
                           describe=describe, merge=args.merge)
    except (migrate.MigrateRefused, offline.NotOffline, LoadError) as e:
        raise CommandError(str(e))


def cmd_import(args) -> int:
    from rmail import mailimport, offline
    from rmail.imap.fetch import describe
    from rmail.store.loader import LoadError
    try:
        return mailimport.run(rconfig.load(args.config), args.kind, args.path, args.address,
                              args.folder, batch_size=args.batch_size, describe=describe)
    except (mailimport.ImportRefused, offline.NotOffline, LoadError) as e:
        raise CommandError(str(e))
