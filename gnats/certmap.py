"""tls { verify_and_map }: which configured user a client certificate names.

nats-server (auth.go checkClientTLSCertSubject) tries, in this order, each
email SAN, each DNS SAN and each URI SAN as a user name; then the subject as
an LDAP distinguished name, equal to a user name parsed as a DN (attribute
types case-insensitive, values exact), first in the same RDN order, then in
any order; then the subject as Go's pkix RDNSequence string with the DC
components appended, and without them. The first user found wins; none is
an Authorization Violation.

The certificate comes as Python's `SSLSocket.getpeercert()` dict (subject in
ASN.1 order, long attribute names). Attribute types Go's pkix.Name does not
keep (emailAddress, DC, UID) are left out of the pkix string, as in Go;
the DN comparison uses the short names below and the long name otherwise,
which can differ from go-ldap for exotic attribute types.
"""

from typing import Dict, List, Optional, Tuple

_SHORT = {"commonName": "CN", "countryName": "C", "organizationName": "O",
          "organizationalUnitName": "OU", "localityName": "L",
          "stateOrProvinceName": "ST", "streetAddress": "STREET", "postalCode": "POSTALCODE",
          "serialNumber": "SERIALNUMBER", "domainComponent": "DC", "userId": "UID"}
# pkix.Name.ToRDNSequence's order (String() then prints it reversed)
_PKIX_ORDER = ("C", "ST", "L", "STREET", "POSTALCODE", "O", "OU", "CN", "SERIALNUMBER")
_PKIX_SINGLE = ("CN", "SERIALNUMBER")       # one string each in pkix.Name: last wins


def _subject(cert: dict) -> List[Tuple[Tuple[str, str], ...]]:
    """The subject's RDNs in certificate order, each a tuple of (TYPE, value)."""
    out = []
    for rdn in cert.get("subject", ()) or ():
        out.append(tuple((_SHORT.get(t, t), v) for t, v in rdn))
    return out


def _escape(v: str) -> str:
    """Go pkix's escaping of a value in RDNSequence.String()."""
    out = []
    last = len(v) - 1
    for i, c in enumerate(v):
        if c in ',+"\\<>;' or (c == " " and i in (0, last)) or (c == "#" and i == 0):
            out.append("\\")
        out.append(c)
    return "".join(out)


def pkix_string(cert: dict) -> str:
    """Go's cert.Subject.ToRDNSequence().String() for this certificate."""
    values: Dict[str, List[str]] = {}
    for rdn in _subject(cert):
        for t, v in rdn:
            values.setdefault(t, []).append(v)
    seq = []
    for t in _PKIX_ORDER:
        vs = values.get(t, [])
        if t in _PKIX_SINGLE:
            vs = vs[-1:]
        seq.extend("%s=%s" % (t, _escape(v)) for v in vs)
    return ",".join(reversed(seq))


def _dcs(cert: dict) -> str:
    return ",".join("DC=%s" % v for rdn in _subject(cert) for t, v in rdn if t == "DC")


def parse_dn(text: str) -> Optional[List[frozenset]]:
    """An RFC 4514 DN as a list of RDNs (frozensets of (TYPE, value)), most
    specific first as written; None when text is not a DN."""
    if not isinstance(text, str) or "=" not in text:
        return None
    rdns, rdn, cur, key = [], set(), [], None
    i = 0
    while i <= len(text):
        c = text[i] if i < len(text) else ","
        if c == "\\" and i + 1 < len(text):
            nxt = text[i + 1:i + 3]
            if len(nxt) == 2 and all(h in "0123456789abcdefABCDEF" for h in nxt):
                cur.append(chr(int(nxt, 16)))
                i += 3
                continue
            cur.append(text[i + 1])
            i += 2
            continue
        if c == "=" and key is None:
            key = "".join(cur).strip().upper()
            cur = []
        elif c in ",+":
            if not key:
                return None
            rdn.add((key, "".join(cur).strip()))
            key, cur = None, []
            if c != "+":
                rdns.append(frozenset(rdn))
                rdn = set()
        else:
            cur.append(c)
        i += 1
    return rdns or None


def cert_user(cert: dict, users: Dict[str, object]):
    """The entry of `users` (name -> entry) this certificate names, or None."""
    if not isinstance(cert, dict):
        return None
    sans = cert.get("subjectAltName", ()) or ()
    for kind in ("email", "DNS", "URI"):
        for k, v in sans:
            if k == kind and v in users:
                return users[v]
    subject = _subject(cert)
    if subject:
        cert_dn = [frozenset((t.upper(), v) for t, v in rdn) for rdn in reversed(subject)]
        parsed = [(name, parse_dn(name)) for name in users]
        parsed = [(n, dn) for n, dn in parsed if dn]
        for name, dn in parsed:
            if dn == cert_dn:
                return users[name]
        for name, dn in parsed:
            if sorted(dn, key=sorted) == sorted(cert_dn, key=sorted):
                return users[name]
    rdn = pkix_string(cert)
    dcs = _dcs(cert)
    for name in ((rdn + "," + dcs) if dcs else None, rdn):
        if name and name in users:
            return users[name]
    return None
