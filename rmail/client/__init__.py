"""rmail's terminal mail client: ``python -m rmail.client``.

An ordinary IMAP and SMTP-submission client of any server; it imports nothing from the
rest of rmail.  The UI logic (``folders``, ``messages``, ``reading``, ``compose``,
``editbuffer``, ``keys``, ``layout``) is plain Python with no terminal; ``screen`` and
``dialogs`` draw it with curses; ``session`` and ``watch`` speak IMAP, ``submission``
speaks SMTP; ``app`` ties them together and ``startup`` runs it.
"""
