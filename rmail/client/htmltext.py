"""Readable text from an HTML part, for messages that have no text/plain alternative.

Not a renderer: paragraphs and line breaks become newlines, list items get a bullet,
links keep their address after the text, scripts, styles and the head are dropped, and
runs of whitespace collapse the way a browser collapses them (except inside <pre>).
"""

import html.parser
import re

_BLOCKS = {"p", "div", "section", "article", "header", "footer", "table", "tr", "ul", "ol",
           "h1", "h2", "h3", "h4", "h5", "h6", "blockquote", "pre", "form", "hr", "dl", "dt",
           "dd", "address", "figure", "main", "nav", "aside"}
_HIDDEN = {"script", "style", "head", "title", "template", "noscript"}
_SPACE = re.compile(r"[ \t\r\n\f]+")


class _TextCollector(html.parser.HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.out = []
        self.hidden = 0
        self.pre = 0
        self.quote = 0
        self.links = []  # (href, index in out where the link's text starts) for <a>
        self.started = False  # any visible text yet (no blank lines before it)

    def _tail(self, n: int) -> str:
        """The last *n* characters written (without joining everything: big pages)."""
        tail = ""
        for piece in reversed(self.out):
            tail = piece + tail
            if len(tail) >= n:
                break
        return tail[-n:]

    def _append(self, text):
        if text:
            self.out.append(text)
            self.started = self.started or bool(text.strip())

    def _newline(self, count=1):
        if not self.started:
            return
        tail = self._tail(count)
        have = len(tail) - len(tail.rstrip("\n"))
        if have < count:
            self.out.append("\n" * (count - have))

    def handle_starttag(self, tag, attrs):
        if tag in _HIDDEN:
            self.hidden += 1
        elif tag == "br":
            self.out.append("\n")
        elif tag == "li":
            self._newline()
            self._append("* ")
        elif tag in ("td", "th"):
            self.out.append(" ")
        elif tag == "img":
            alt = dict(attrs).get("alt")
            if alt:
                self._append(f"[{alt}]")
        elif tag == "a":
            self.links.append((dict(attrs).get("href") or "", len(self.out)))
        elif tag in _BLOCKS:
            self._newline(2 if tag in ("p", "h1", "h2", "h3", "blockquote", "table") else 1)
            if tag == "pre":
                self.pre += 1
            if tag == "blockquote":
                self.quote += 1
            if tag == "hr":
                self.out.append("-" * 20 + "\n")

    def handle_endtag(self, tag):
        if tag in _HIDDEN:
            self.hidden = max(0, self.hidden - 1)
        elif tag == "a" and self.links:
            href, start = self.links.pop()
            shown = "".join(self.out[start:]).strip()
            if href and not href.startswith(("#", "mailto:")) and href != shown:
                self.out.append(f" <{href}>")
        elif tag in _BLOCKS:
            if tag == "pre":
                self.pre = max(0, self.pre - 1)
            if tag == "blockquote":
                self.quote = max(0, self.quote - 1)
            self._newline(2 if tag in ("p", "h1", "h2", "h3", "blockquote", "table") else 1)

    def handle_data(self, data):
        if self.hidden:
            return
        if not self.pre:
            data = _SPACE.sub(" ", data)
            if data.startswith(" ") and (not self.started or self._tail(1) in (" ", "\n")):
                data = data[1:]
        if self.quote and data:
            data = data.replace("\n", "\n" + "> " * self.quote)
            if self._tail(1) in ("", "\n"):
                data = "> " * self.quote + data
        self._append(data)


def html_to_text(markup: str) -> str:
    parser = _TextCollector()
    parser.feed(markup)
    parser.close()
    lines = [line.rstrip() for line in "".join(parser.out).split("\n")]
    text = "\n".join(lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip("\n")
