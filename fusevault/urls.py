"""The one check of an http(s) URL a person typed (a peer, a CouchDB store, a relay, a link's server).

Both parsers that later read it must take it: ``urllib.parse`` (CouchDB-Python, our own splitting)
and httpx (the sync, the relay and link clients).  Each refuses its own set of mistakes, and did so
only at the first request (a port of 99999, an unclosed ``[::1``, a host ``256.1.1.1``), where
nothing turned them into a one-line refusal: an "internal error", exit 70 (attack round 49t (4)).
Here both parse it once, up front, and any mistake is ``InvalidInput`` (exit 12).
"""

from __future__ import annotations

from urllib.parse import SplitResult, urlsplit

from fusevault.errors import InvalidInput

SCHEMES = ("http", "https")


def http_url(url: str, what: str = "URL", example: str = "http://host:port/...") -> SplitResult:
    """``url`` split, if it is an http:// or https:// URL whose host and port both parsers take.

    ``what`` names it in the refusal (``relay URL``), ``example`` shows its form.  A refusal echoes
    the URL without its credentials, and no parser's words where it has some (urllib's port error
    quotes the text after the first colon: a password's start, attack round 50d (3))."""
    shown = without_credentials(url)
    secret = "@" in url
    try:
        parts = urlsplit(url)
    except ValueError as err:  # an unclosed "[", a bracketed host that is no IPv6 address
        raise InvalidInput(f"not a valid {what}: {shown} ({_reason(err, secret)})") from None
    if secret and parts.username is None:
        # An "@" the parsers do not read as the end of credentials: a password that looks like a port
        # and holds "/" or "#" ("http://admin:2024/pw@host/db" is host "admin", port 2024), whose
        # URL a later check would echo whole, or a store's config keep (attack round 51a (4)).
        raise InvalidInput(f"not a valid {what}: {shown} (an \"@\" only ends credentials, which go "
                           "in a file or the environment, not in the URL)")
    try:
        _ = parts.port  # digits, 0-65535
    except ValueError:
        raise InvalidInput(f"not a valid port in {shown} (a port is a number from 0 to 65535)") from None
    if parts.scheme not in SCHEMES or not parts.hostname:
        raise InvalidInput(f"not a valid {what}: {shown} (expected {example})")
    if not _host_name_ok(parts.hostname):
        raise InvalidInput(f"not a valid {what}: {shown} (a host name's parts are 1 to 63 characters)")
    import httpx  # here: the command's parser stays light

    try:
        # An IPv4 address out of range (256.1.1.1), a bad IPv6 one, a control character; ``host``
        # decodes an "xn--" label, which fails at every request if it is no punycode (51a lead).
        _ = httpx.URL(url).host
    except (httpx.InvalidURL, UnicodeError) as err:
        raise InvalidInput(f"not a valid {what}: {shown} ({_reason(err, secret)})") from None
    return parts


def _reason(err: Exception, secret: bool) -> str:
    """What was wrong, in a few words; none where the URL holds credentials (a parser may quote them)."""
    if secret:
        return "check its form"
    text = str(err).splitlines()[0] if str(err) else type(err).__name__
    return text[:200]


def without_credentials(url: str) -> str:
    """``url`` with everything before its last ``@`` cut out but the scheme, found by hand: the URL may
    not parse, and a password may hold ``/``, ``?`` or ``#``, or the ``//`` be mistyped (50d (3))."""
    at = url.rfind("@")
    if at < 0:
        return url
    scheme, sep, _ = url[:at].partition(":")
    prefix = f"{scheme}://" if sep and scheme.isalpha() else ""
    return f"{prefix}...@{url[at + 1:]}"


def _host_name_ok(host: str) -> bool:
    """Whether a host name is one IDNA encodes (labels of 1 to 63 characters; an IP address passes):
    ``a..b``, ``.`` or a 64-character label passed both parsers and failed at the first request with a
    UnicodeError, exit 70 (attack round 50d (4))."""
    if ":" in host:  # an IPv6 address: the parsers checked it
        return True
    name = host.removesuffix(".")  # one trailing dot: a fully qualified name; two: an empty label (51a (6))
    if not name or not all(0 < len(label) <= 63 for label in name.split(".")):
        return False
    try:
        name.encode("idna")
    except UnicodeError:
        return False
    return True
