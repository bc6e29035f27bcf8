"""The text and cursor of the built-in editor (used when $EDITOR is not set).

Lines are edited as logical lines and shown soft-wrapped to the screen's width;
``visual()`` maps between the two so the curses side only draws.
"""


class TextBuffer:
    def __init__(self, text: str = "", row: int = 0, col: int = 0):
        self.lines = text.split("\n") if text else [""]
        self.row = max(0, min(row, len(self.lines) - 1))
        self.col = max(0, min(col, len(self.lines[self.row])))
        self.top = 0  # first visual row shown

    @property
    def text(self) -> str:
        return "\n".join(self.lines)

    # --- editing -------------------------------------------------------------------

    def insert(self, chars: str):
        for ch in chars:
            if ch == "\n":
                self.newline()
            else:
                line = self.lines[self.row]
                self.lines[self.row] = line[:self.col] + ch + line[self.col:]
                self.col += 1

    def newline(self):
        line = self.lines[self.row]
        self.lines[self.row:self.row + 1] = [line[:self.col], line[self.col:]]
        self.row += 1
        self.col = 0

    def backspace(self):
        if self.col > 0:
            line = self.lines[self.row]
            self.lines[self.row] = line[:self.col - 1] + line[self.col:]
            self.col -= 1
        elif self.row > 0:
            self.col = len(self.lines[self.row - 1])
            self.lines[self.row - 1:self.row + 1] = [self.lines[self.row - 1] + self.lines[self.row]]
            self.row -= 1

    def delete(self):
        line = self.lines[self.row]
        if self.col < len(line):
            self.lines[self.row] = line[:self.col] + line[self.col + 1:]
        elif self.row + 1 < len(self.lines):
            self.lines[self.row:self.row + 2] = [line + self.lines[self.row + 1]]

    def kill_line(self):
        """Ctrl-K: the rest of the line, or the line break when at its end."""
        line = self.lines[self.row]
        if self.col < len(line):
            self.lines[self.row] = line[:self.col]
        else:
            self.delete()

    # --- moving --------------------------------------------------------------------

    def left(self):
        if self.col > 0:
            self.col -= 1
        elif self.row > 0:
            self.row -= 1
            self.col = len(self.lines[self.row])

    def right(self):
        if self.col < len(self.lines[self.row]):
            self.col += 1
        elif self.row + 1 < len(self.lines):
            self.row += 1
            self.col = 0

    def up(self, count: int = 1):
        self.row = max(0, self.row - count)
        self.col = min(self.col, len(self.lines[self.row]))

    def down(self, count: int = 1):
        self.row = min(len(self.lines) - 1, self.row + count)
        self.col = min(self.col, len(self.lines[self.row]))

    def home(self):
        self.col = 0

    def end(self):
        self.col = len(self.lines[self.row])

    # --- showing -------------------------------------------------------------------

    def visual(self, width: int):
        """(rows, cursor): rows are the soft-wrapped pieces of every line, cursor is
        the (row, column) of the cursor among them."""
        width = max(1, width)
        rows, cursor = [], (0, 0)
        for number, line in enumerate(self.lines):
            pieces = [line[i:i + width] for i in range(0, len(line), width)] or [""]
            if number == self.row:
                piece, column = divmod(self.col, width)
                if piece >= len(pieces):  # at the end of a line that fills its rows exactly
                    pieces.append("")
                cursor = (len(rows) + piece, column)
            rows.extend(pieces)
        return rows, cursor

    def window(self, width: int, height: int):
        """(visible rows, cursor on screen), scrolled so the cursor shows."""
        rows, (crow, ccol) = self.visual(width)
        if crow < self.top:
            self.top = crow
        elif crow >= self.top + height:
            self.top = crow - height + 1
        return rows[self.top:self.top + height], (crow - self.top, ccol)
