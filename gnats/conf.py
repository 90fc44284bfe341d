"""The NATS configuration file format: text in, nested dict out (no I/O but
reading included files, no knowledge of what the keys mean).

Theory of operation: a hand-written recursive-descent parser over the whole
text. A file is a block without braces; a block holds `key value` entries
(`key: value`, `key = value` and `key value` are the same), each ended by a
newline, `;`, `,` or the block's `}`. Values are blocks `{ }`, arrays `[ ]`
(elements split by commas and/or newlines), quoted strings, `$VARIABLES`, and
bare words, which are classified like nats-server does: booleans
(true/false/yes/no/on/off), integers (with an optional size suffix: K/M/G/T/P/E
are powers of 1000, KB/KI/KIB... powers of 1024, case-insensitive), floats, or
strings (`localhost:4242`, `2s`, `nats://a:1`). `#` and `//` start a comment
where a token may start (so `nats://host` stays one word).

Blocks come back as ConfMap (a dict that also records where every key and value
stood, and which keys were read as variables) and arrays as ConfList (a list
with the position of each element), so the options layer can say
`FILE:LINE:COL: ...` about a value. Errors raise ConfigError, whose text is
`FILE:LINE:COL: message`, positioned at the first token that cannot continue
the construct.

Bounds (each against a denial of service by a hostile or broken file):
nesting depth (stack), include depth and count (a diamond of includes grows
exponentially), environment expansion depth (a variable whose value names
itself). Variables share the referenced value, never copy it, so
`B=[$A,$A]; C=[$B,$B]; ...` stays linear; an environment variable is parsed
once per nesting depth, so the same chain through the environment does too.
"""

import bisect
import os
import re
from typing import List, NamedTuple, Optional

MAX_DEPTH = 64              # nested blocks and arrays
MAX_INCLUDE_DEPTH = 16      # include chain length
MAX_INCLUDES = 256          # include directives followed in one parse
MAX_ENV_DEPTH = 8           # environment value naming another variable ...
INT64_MIN, INT64_MAX = -(1 << 63), (1 << 63) - 1

# nats-server leaves an unquoted bcrypt hash ($2a$11$...) alone instead of
# reading it as a variable; the other bcrypt prefixes get the same treatment.
BCRYPT_PREFIXES = ("2a$", "2b$", "2y$")

_SIZE_SUFFIXES = {}
for _i, _letter in enumerate("kmgtpe", 1):
    _SIZE_SUFFIXES[_letter] = 1000 ** _i
    for _s in ("b", "i", "ib"):
        _SIZE_SUFFIXES[_letter + _s] = 1024 ** _i

_BOOLS = {"true": True, "yes": True, "on": True,
          "false": False, "no": False, "off": False}

_WS = " \t\r\f\v"
_BARE_KEY = re.compile(r"[^ \t\r\n\f\v:={}\[\],;\"'#]+")
_BARE_VALUE = re.compile(r"[^ \t\r\n\f\v,\]};]+")
_INT = re.compile(r"-?[0-9]+\Z")
_SIZED = re.compile(r"(-?[0-9]+)([A-Za-z]+)\Z")
_FLOAT = re.compile(r"-?[0-9]+\.[0-9]+\Z")
_VAR_NAME = re.compile(r"[A-Za-z0-9_]+\Z")
_ESCAPES = {"t": "\t", "n": "\n", "r": "\r", '"': '"', "\\": "\\"}


class Pos(NamedTuple):
    file: str
    line: int       # 1-based
    col: int        # 1-based, in characters

    def __str__(self):
        return "%s:%d:%d" % (self.file, self.line, self.col)


# Go's time.ParseDuration spelling, for duration values ("2s", "1m30s").
_DURATION_PART = re.compile(r"([0-9]+(?:\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}


def parse_duration(text: str) -> Optional[float]:
    """Go's time.ParseDuration spelling ("2s", "1m", "500ms", "1h30m") as
    seconds, or None when text is not one."""
    s = text.strip()
    if s in ("0", "-0", "+0"):
        return 0.0
    sign = 1.0
    if s[:1] in "+-" and s:
        sign = -1.0 if s[0] == "-" else 1.0
        s = s[1:]
    if not s:
        return None
    total, i = 0.0, 0
    while i < len(s):
        m = _DURATION_PART.match(s, i)
        if not m:
            return None
        total += float(m.group(1)) * _UNIT_SECONDS[m.group(2)]
        i = m.end()
    return sign * total


class ConfigError(ValueError):
    """A configuration that cannot be used. str() is `FILE:LINE:COL: message`
    when the place is known, else the message alone."""

    def __init__(self, message: str, pos: Optional[Pos] = None):
        self.message = message
        self.pos = pos
        super().__init__("%s: %s" % (pos, message) if pos else message)


class ConfMap(dict):
    """A block. key_pos/value_pos: key -> Pos; used: keys read as $variables."""

    def __init__(self):
        super().__init__()
        self.key_pos = {}
        self.value_pos = {}
        self.used = set()

    def put(self, key, value, kpos, vpos):
        self[key] = value
        self.key_pos[key] = kpos
        self.value_pos[key] = vpos


class ConfList(list):
    """An array; pos[i] is where element i stood."""

    def __init__(self):
        super().__init__()
        self.pos = []


class SizedInt(int):
    """An integer written with a unit suffix ("1m", "64KB"). The text is kept
    because `1m` is also one minute to a duration option."""

    def __new__(cls, value, raw):
        obj = super().__new__(cls, value)
        obj.raw = raw
        return obj

    def __repr__(self):
        return "SizedInt(%d, %r)" % (int(self), self.raw)


def _char_name(c: str) -> str:
    if c == "":
        return "end of file"
    if c == "\n":
        return "new line"
    return repr(c)


class _State:
    """What an include chain shares: the files open above, the include count."""

    def __init__(self):
        self.stack: List[str] = []
        self.includes = 0
        # (name, env_depth) -> parsed environment value. A value's parse does
        # not depend on where it is referenced (it sees no file variables),
        # so each name is parsed at most once per depth: nested references
        # (E1='[$E0 $E0]', E2='[$E1 $E1]', ...) stay linear, not exponential,
        # and the depth check still sees the real nesting.
        self.env_values = {}


class _Parser:
    def __init__(self, text: str, filename: str, state: _State, env_depth: int = 0):
        self.text = text
        self.n = len(text)
        self.file = filename
        self.state = state
        self.env_depth = env_depth
        self.i = 0
        self.scopes: List[ConfMap] = []     # enclosing blocks, for $NAME
        self._line_starts = [0] + [m.end() for m in re.finditer("\n", text)]

    # -- positions and errors ------------------------------------------------
    def pos(self, i: Optional[int] = None) -> Pos:
        i = self.i if i is None else i
        line = bisect.bisect_right(self._line_starts, i)
        return Pos(self.file, line, i - self._line_starts[line - 1] + 1)

    def error(self, message: str, i: Optional[int] = None):
        raise ConfigError(message, self.pos(i))

    def peek(self) -> str:
        return self.text[self.i] if self.i < self.n else ""

    # -- whitespace and comments ---------------------------------------------
    def at_comment(self) -> bool:
        return self.peek() == "#" or self.text.startswith("//", self.i)

    def skip_line_space(self):
        """Spaces and a trailing comment, stopping at the new line."""
        t, n = self.text, self.n
        while self.i < n:
            c = t[self.i]
            if c in _WS:
                self.i += 1
            elif c == "#" or t.startswith("//", self.i):
                j = t.find("\n", self.i)
                self.i = n if j < 0 else j
            else:
                break

    def skip_space(self):
        """Spaces, comments and new lines."""
        while True:
            self.skip_line_space()
            if self.peek() == "\n":
                self.i += 1
            else:
                return

    # -- blocks ---------------------------------------------------------------
    def parse_top(self) -> ConfMap:
        m = ConfMap()
        self.scopes.append(m)
        self.block_body(m, None, 0)
        self.scopes.pop()
        return m

    def block_body(self, m: ConfMap, open_at: Optional[int], depth: int):
        """Entries until EOF (top level) or the `}` closing the block opened at
        open_at."""
        while True:
            self.skip_space()
            c = self.peek()
            if c == "":
                if open_at is not None:
                    self.error("unexpected end of file: block opened at %d:%d is not closed"
                               % self.pos(open_at)[1:])
                return
            if c == "}":
                if open_at is None:
                    self.error("unexpected '}' (no block is open)")
                self.i += 1
                return
            self.entry(m, depth)
            self.end_of_entry(open_at is not None)

    def end_of_entry(self, in_block: bool):
        self.skip_line_space()
        c = self.peek()
        if c in ("\n", ";", ","):
            self.i += 1
        elif c == "" or (c == "}" and in_block):
            pass
        else:
            self.error("expected a new line, ';' or %s after a value, got %s"
                       % ("'}'" if in_block else "end of file", _char_name(c)))

    def entry(self, m: ConfMap, depth: int):
        kpos = self.pos()
        c = self.peek()
        if c in ('"', "'"):
            key = self.quoted(c)
            bare = False
        else:
            mt = _BARE_KEY.match(self.text, self.i)
            if not mt:
                self.error("expected a key, got %s" % _char_name(c))
            key = mt.group()
            self.i = mt.end()
            bare = True
        after_key = self.i
        self.skip_line_space()
        c = self.peek()
        if c == "\n" and not self.text[after_key:self.i].strip(_WS):
            # nats-server's lexer skips any white space after a key, new
            # lines too: a block may open on the next line (`websocket\n{`,
            # as nats.py's test configs write it). A comment there is no
            # white space to Go (`key # c\n{` is its parse error too).
            j = self.i
            while j < self.n and self.text[j] in " \t\r\n":
                j += 1
            if j < self.n and self.text[j] == "{":
                self.i = j
                c = "{"
        if bare and key == "include" and c not in (":", "=", "", "\n", "{", "["):
            self.include(m, kpos)
            return
        if c in (":", "="):
            self.i += 1
            self.skip_line_space()
            c = self.peek()
        if c in ("", "\n", "}", "]", ",", ";"):
            self.error("expected a value for %r, got %s" % (key, _char_name(c)))
        vpos = self.pos()
        m.put(key, self.value(depth + 1), kpos, vpos)

    # -- values ---------------------------------------------------------------
    def value(self, depth: int):
        c = self.peek()
        start = self.i
        if c == "{":
            self.check_depth(depth)
            self.i += 1
            m = ConfMap()
            self.scopes.append(m)
            self.block_body(m, start, depth)
            self.scopes.pop()
            return m
        if c == "[":
            self.check_depth(depth)
            return self.array(depth)
        if c in ('"', "'"):
            return self.quoted(c)
        if c in ("", "\n", "}", "]", ",", ";") or self.at_comment():
            self.error("expected a value, got %s" % _char_name(c))
        mt = _BARE_VALUE.match(self.text, self.i)
        word = mt.group()
        self.i = mt.end()
        if word.startswith("$"):
            name = word[1:]
            if name.startswith(BCRYPT_PREFIXES):
                return word
            return self.variable(name, start)
        return self.classify(word, start)

    def check_depth(self, depth: int):
        if depth > MAX_DEPTH:
            self.error("blocks and arrays nested deeper than %d" % MAX_DEPTH)

    def array(self, depth: int) -> ConfList:
        open_at = self.i
        where = "%d:%d" % self.pos(open_at)[1:]
        self.i += 1
        arr = ConfList()
        while True:
            self.skip_space()
            c = self.peek()
            if c == "]":
                self.i += 1
                return arr
            if c == "":
                self.error("unexpected end of file: array opened at %s is not closed" % where)
            if c == "}":
                self.error("unexpected '}' in the array opened at %s (missing ']'?)" % where)
            if c in (",", ";"):
                self.error("expected an array element, got %r" % c)
            arr.pos.append(self.pos())
            arr.append(self.value(depth + 1))
            self.skip_line_space()
            c = self.peek()
            if c in (",", "\n"):
                self.i += 1
            elif c == "]":
                pass
            elif c == "":
                self.error("unexpected end of file: array opened at %s is not closed" % where)
            elif c == "}":
                self.error("unexpected '}' in the array opened at %s (missing ']'?)" % where)
            else:
                self.error("expected ',' or ']' after an array element, got %s" % _char_name(c))

    def quoted(self, quote: str) -> str:
        """A '...' string (taken as written) or a "..." string (with \\t \\n
        \\r \\" \\\\ \\xXX escapes, as nats-server allows)."""
        t = self.text
        self.i += 1
        out = []
        while True:
            if self.i >= self.n or t[self.i] == "\n":
                self.error("string not closed before %s" % _char_name(self.peek()))
            c = t[self.i]
            if c == quote:
                self.i += 1
                return "".join(out)
            if c == "\\" and quote == '"':
                e = t[self.i + 1:self.i + 2]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    self.i += 2
                    continue
                if e == "x":
                    hexd = t[self.i + 2:self.i + 4]
                    if len(hexd) == 2 and all(h in "0123456789abcdefABCDEF" for h in hexd):
                        out.append(chr(int(hexd, 16)))
                        self.i += 4
                        continue
                    self.error("invalid \\x escape: two hex digits expected")
                self.error("invalid escape %s: only \\t \\n \\r \\\" \\\\ and \\xXX are allowed"
                           % ("\\" + e if e and e != "\n" else "at end of line"))
            out.append(c)
            self.i += 1

    def classify(self, word: str, start: int):
        low = word.lower()
        if low in _BOOLS:
            return _BOOLS[low]
        if _INT.match(word):
            return self.int_in_range(int(word), word, start)
        mt = _SIZED.match(word)
        if mt and mt.group(2).lower() in _SIZE_SUFFIXES:
            v = int(mt.group(1)) * _SIZE_SUFFIXES[mt.group(2).lower()]
            return SizedInt(self.int_in_range(v, word, start), word)
        if _FLOAT.match(word):
            return float(word)
        return word

    def int_in_range(self, v: int, word: str, start: int) -> int:
        if not INT64_MIN <= v <= INT64_MAX:
            self.error("integer %s is out of range" % word, start)
        return v

    # -- variables ------------------------------------------------------------
    def variable(self, name: str, start: int):
        if not _VAR_NAME.match(name):
            self.error("invalid variable reference %r" % ("$" + name), start)
        for m in reversed(self.scopes):
            if name in m:
                m.used.add(name)
                return m[name]
        env = os.environ.get(name)
        if env is None:
            self.error("variable reference for %r can not be found" % name, start)
        return self.env_value(name, env, start)

    def env_value(self, name: str, text: str, start: int):
        """An environment value is read as if written in the file."""
        if self.env_depth >= MAX_ENV_DEPTH:
            self.error("environment variables nested deeper than %d at $%s"
                       % (MAX_ENV_DEPTH, name), start)
        if text.strip(_WS) == "":
            return ""
        key = (name, self.env_depth)
        if key in self.state.env_values:
            return self.state.env_values[key]
        sub = _Parser(text, "$" + name, self.state, self.env_depth + 1)
        try:
            sub.skip_line_space()
            v = sub.value(1)
            sub.skip_line_space()
            if sub.i < sub.n:
                sub.error("unexpected %s after the value" % _char_name(sub.peek()))
        except ConfigError as e:
            raise ConfigError("environment variable %s: %s" % (name, e), self.pos(start)) from None
        self.state.env_values[key] = v
        return v

    # -- include ----------------------------------------------------------------
    def include(self, m: ConfMap, kpos: Pos):
        at = self.i
        c = self.peek()
        if c in ('"', "'"):
            name = self.quoted(c)
        else:
            mt = _BARE_VALUE.match(self.text, self.i)    # None before `}`, `,`, `;`
            name = mt.group() if mt else ""
            if mt:
                self.i = mt.end()
        if not name:
            self.error("include needs a file name", at)
        if "\0" in name:       # os.path and open() raise ValueError on NUL
            self.error("include file name contains a NUL character", at)
        st = self.state
        if len(st.stack) >= MAX_INCLUDE_DEPTH:
            self.error("includes nested deeper than %d" % MAX_INCLUDE_DEPTH, at)
        st.includes += 1
        if st.includes > MAX_INCLUDES:
            self.error("more than %d includes" % MAX_INCLUDES, at)
        base = os.getcwd() if self.file == "<string>" else os.path.dirname(self.file)
        path = os.path.join(base, name)
        try:
            real = os.path.realpath(path)
        except ValueError as e:     # a name the OS cannot take
            self.error("cannot include %r: %s" % (name, e), at)
        if real in st.stack:
            chain = [os.path.basename(p) for p in st.stack[st.stack.index(real):]]
            self.error("include cycle: %s -> %s" % (" -> ".join(chain), os.path.basename(real)), at)
        try:
            text = _read(path)
        except OSError as e:
            self.error("cannot include %r: %s" % (name, e.strerror or e), at)
        except ConfigError as e:
            raise ConfigError("in included file %r: %s" % (name, e), self.pos(at)) from None
        except ValueError as e:     # e.g. a name that cannot be encoded
            self.error("cannot include %r: %s" % (name, e), at)
        st.stack.append(real)
        try:
            sub = _Parser(text, path, st)
            inc = sub.parse_top()
        finally:
            st.stack.pop()
        for k, v in inc.items():
            m.put(k, v, inc.key_pos[k], inc.value_pos[k])
        m.used |= inc.used


def _read(path: str) -> str:
    with open(path, "rb") as f:
        data = f.read()
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        before = data[:e.start].decode("utf-8", "replace")
        line = before.count("\n") + 1
        col = len(before) - (before.rfind("\n") + 1) + 1
        raise ConfigError("invalid UTF-8 byte", Pos(path, line, col)) from None


def parse(text: str, filename: str = "<string>") -> ConfMap:
    """Parse config text. Includes are found relative to filename's folder
    (the current folder for "<string>")."""
    st = _State()
    if filename != "<string>":
        st.stack.append(os.path.realpath(filename))
    return _Parser(text, filename, st).parse_top()


def parse_file(path: str) -> ConfMap:
    """Parse a config file; a missing or unreadable file is a ConfigError."""
    try:
        text = _read(path)
    except OSError as e:
        raise ConfigError("error opening config file %s: %s" % (path, e.strerror or e)) from None
    return parse(text, path)
