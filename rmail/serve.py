"""Serving in the foreground: what ``python run.py [CONFIG]`` and ``make run`` do.

Builds the same service as the twistd plugin, logs to stdout, and lets the reactor's
own SIGTERM/SIGINT handlers stop it (the service finishes transactions in flight first).
"""

import os
import sys

from twisted.internet import reactor
from twisted.logger import Logger, globalLogBeginner

from rmail import config as rconfig
from rmail import service
from rmail import logs

log = Logger(namespace="rmail")


def run(config_path: str, log_format: str = "text") -> int:
    try:
        svc = service.build(config_path)
        svc.privilegedStartService()
    except (rconfig.ConfigError, service.StartError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    globalLogBeginner.beginLoggingTo([logs.OBSERVERS[log_format](sys.stdout)],
                                     redirectStandardIO=False)
    reactor.suggestThreadPoolSize(20)
    reactor.callWhenRunning(svc.startService)
    reactor.callWhenRunning(_print_welcome, svc)
    reactor.addSystemEventTrigger("before", "shutdown", svc.stopService)
    reactor.run()
    return 0


def _print_welcome(svc):
    config = svc.config
    python = os.path.relpath(sys.executable) if sys.prefix != sys.base_prefix else "python"
    if python.startswith(".."):
        python = sys.executable
    print(f"rmail is serving {config.hostname} for {', '.join(config.domains)}:", flush=True)
    for line in svc.describe_listeners():
        print(f"  {line}", flush=True)
    if not any(svc.directory.users(d) for d in config.domains):
        print("No users yet. Add the first one (in another terminal):\n"
              f"  {python} run.py user add alice@{config.domains[0]}", flush=True)
    print("Stop with Ctrl-C; reload config.json and users with SIGHUP.", flush=True)
