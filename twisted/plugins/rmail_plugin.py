"""The twistd plugin: `twistd -n rmail --config config.json` builds the same service as run.py."""

from twisted.application.service import IServiceMaker
from twisted.plugin import IPlugin
from twisted.python import usage
from zope.interface import implementer


class Options(usage.Options):
    optParameters = [["config", "c", "config.json", "the rmail config file"]]

    def postOptions(self):
        import os
        if not os.path.exists(self["config"]):
            raise usage.UsageError(f"no config file {self['config']}: run `python run.py init` "
                                   "or give --config PATH")


@implementer(IServiceMaker, IPlugin)
class RmailServiceMaker:
    tapname = "rmail"
    description = "rmail: SMTP, IMAP and an HTTP API in one process"
    options = Options

    def makeService(self, options):
        from rmail import service
        return service.build(options["config"])


serviceMaker = RmailServiceMaker()
