"""The HTTP JSON API (docs/http.md): a Klein app served by Twisted Web on ``listen.http``.

- ``site``: the listener's factory and the wire-level rules (body limits, CORS, raw
  path segments, JSON instead of Twisted's HTML error pages, graceful stop);
- ``router``: runs the routes for each request and writes their answers;
- ``app``: the routes, which call the same authenticator, policy, directory and store
  as SMTP and IMAP;
- ``tokens`` (JWT), ``listing`` (message lists from the index), ``compose`` (the
  messages the API sends), ``autoconfig`` (Thunderbird and Outlook set-up documents),
  ``upload``/``stream`` (message bodies in and out without blocking the reactor),
  ``inputs``/``errors`` (what clients send, and the JSON errors they get back).
"""

from twisted.internet import reactor

from rmail.web.app import API
from rmail.web.site import ApiSite


def build_site(settings, directory, store, authenticator, policy, ports, gate=None,
               clock=reactor):
    """The factory for the ``http`` listener; *ports* () -> {listener key: bound port}."""
    api = API(settings, directory, store, authenticator, policy, ports)
    return ApiSite(settings, api, gate=gate, clock=clock)
