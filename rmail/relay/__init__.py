"""The outbound relay: a persistent queue and the sender that empties it.

Mail that an authenticated user addresses to another domain is accepted by
``rmail.delivery.MailPolicy`` and handed to ``RelayService.enqueue``; from then on this
package owns it, until every recipient has either accepted it or been reported to the
sender in a delivery status notification.  The relay is a child service of its own, so
neither the SMTP server nor the HTTP API needs the other to send.

Modules, from the disk up:

- ``entry``: one queued message and the state of each of its recipients (pure data);
- ``queue``: the on-disk layout under ``{mail_root}/queue/`` and every blocking file
  operation on it (durable writes, repair and quarantine at start, the lock);
- ``control``: how ``python run.py queue ...`` asks a running server to act;
- ``routes``: where a domain's mail goes (MX, A/AAAA fallback, null MX, smarthost),
  with ``hostports`` parsing the config's ``host:port`` strings;
- ``results``: the reply recorded for each recipient, real or made up (DNS, timeouts);
- ``body`` and ``client``: one SMTP client session to one host (STARTTLS, pipelining,
  dot-stuffing, the RFC 5321 timeouts);
- ``dsn``: the RFC 3464 bounce;
- ``service``: scheduling, retries, bounces, shutdown, and the log line per attempt.
"""
