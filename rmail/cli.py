"""``python run.py ...``: serving, init, users and aliases.

Each command declares its arguments and help once, here.  Errors are one line on
stderr and exit status 1; nothing here prints a traceback for a user mistake.

    python run.py [CONFIG]                     serve (default ./config.json)
    python run.py init [--dev] [--force]       write config.json and a certificate
    python run.py user add|passwd|remove|list  manage users
    python run.py alias list|add|remove        manage aliases
"""

import argparse
import dataclasses
import getpass
import json
import os
import secrets
import sys

from rmail import config as rconfig
from rmail import durable
from rmail.directory import Directory, DirectoryError, split_address

COMMANDS = ("init", "user", "alias", "serve")


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
    return p


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
    if not argv or (argv[0] not in COMMANDS and not argv[0].startswith("-")):
        argv = ["serve"] + argv  # `run.py` and `run.py /path/to/config.json`
    elif argv[0] in ("-h", "--help"):
        _parser().print_help()
        return 0
    args = _parser().parse_args(argv)
    if config is not None:
        args.config = config
    try:
        return {"serve": cmd_serve, "init": cmd_init, "user": cmd_user,
                "alias": cmd_alias}[args.command](args)
    except (CommandError, DirectoryError, rconfig.ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130


# -- serve --------------------------------------------------------------------------------

def cmd_serve(args) -> int:
    from rmail import serve
    return serve.run(args.config_file or args.config)


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
