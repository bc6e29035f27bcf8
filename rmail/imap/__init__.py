"""IMAP: Twisted's IMAP4Server extended for rmail's store (see server.py)."""
