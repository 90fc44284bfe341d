#!/usr/bin/env python3
"""mkpasswd: make a bcrypt hash for a password or token in the server config.

    python3 tools/mkpasswd.py            # new random password and its hash
    python3 tools/mkpasswd.py -p         # hash a password you type (no echo)
    echo secret | python3 tools/mkpasswd.py -p    # ... or read it from stdin
    python3 tools/mkpasswd.py --cost 12  # slower hash (default 11)

Hashes start with $2a$, as nats-server's mkpasswd prints, because older
verifiers only know that prefix (the algorithm is the same as $2b$ for
passwords up to 72 bytes). Standalone on purpose: it needs only bcrypt.
"""

import argparse
import getpass
import secrets
import sys

PASSWORD_LENGTH = 22
# nats-server's alphabet for generated passwords.
PASSWORD_CHARS = ("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                  "0123456789!@#$%^&*()-_=+,.?/:;{}[]~")
DEFAULT_COST = 11
MIN_COST, MAX_COST = 4, 31
MAX_PASSWORD_BYTES = 72  # bcrypt ignores anything after this
BCRYPT_MISSING = "bcrypt password hashes need the bcrypt package: pip install bcrypt"


class UsageError(Exception):
    pass


def gen_password(length: int = PASSWORD_LENGTH) -> str:
    return "".join(secrets.choice(PASSWORD_CHARS) for _ in range(length))


def read_password(stdin=None) -> str:
    """From the terminal without echo (asked twice), else one line of stdin."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Enter Password: ")
        second = getpass.getpass("Reenter Password: ")
        if first != second:
            raise UsageError("passwords do not match")
        return first
    line = stdin.readline()
    if not line:
        raise UsageError("no password given on stdin")
    return line.rstrip("\r\n")


def make_hash(bcrypt, password: str, cost: int) -> str:
    data = password.encode("utf-8")
    if len(data) > MAX_PASSWORD_BYTES:
        raise UsageError("password is longer than %d bytes; bcrypt would ignore the rest"
                         % MAX_PASSWORD_BYTES)
    salt = bcrypt.gensalt(rounds=cost, prefix=b"2a")
    return bcrypt.hashpw(data, salt).decode("ascii")


def _cost(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError("cost must be a number, got %r" % text) from None
    if not MIN_COST <= value <= MAX_COST:
        raise argparse.ArgumentTypeError("cost must be between %d and %d" % (MIN_COST, MAX_COST))
    return value


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="mkpasswd",
                                     description="Generate a bcrypt hash for the server config.")
    parser.add_argument("-p", "--password", action="store_true",
                        help="read the password from the terminal (no echo) or stdin")
    parser.add_argument("-c", "--cost", type=_cost, default=DEFAULT_COST,
                        help="bcrypt cost, %d to %d (default %d)" % (MIN_COST, MAX_COST, DEFAULT_COST))
    args = parser.parse_args(argv)
    try:
        import bcrypt
    except ImportError:
        print("mkpasswd: " + BCRYPT_MISSING, file=sys.stderr)
        return 1
    try:
        if args.password:
            password = read_password()
        else:
            password = gen_password()
            print("pass: %s" % password)
        print("bcrypt hash: %s" % make_hash(bcrypt, password, args.cost))
    except UsageError as e:
        print("mkpasswd: %s" % e, file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        print("", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
