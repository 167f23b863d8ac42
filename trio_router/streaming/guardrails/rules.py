"""Guardrail rules: what each one matches, and how much trailing text it needs held back.

A streaming scanner can only forward text that no later chunk could turn into (part of) a match.
Each rule therefore carries a *hold*: a regex that finds, at the end of the text seen so far,
the earliest position where a match might still be in progress. Everything before that point is
decided. Three kinds of hold cover every rule:

- a *run* hold, for patterns whose matches consist only of characters from a known alphabet
  (an email is ``[A-Za-z0-9._%+@-]``): a match still in progress lies inside the trailing run of
  that alphabet, so only that run (typically the last word) is held;
- a *prefix* hold, for keywords: the longest suffix that is the beginning of some keyword;
- a *width* hold, for user patterns with no alphabet: their longest possible match (computed
  from the pattern at startup; unbounded patterns are refused).

Matches are decided by the stdlib ``re`` engine: leftmost match first, ties to the rule listed
first (governance keywords, then blocked patterns, then PII), and a validator (Luhn for cards,
the ``ipaddress`` parser for IPv6) may veto a candidate, after which the rule looks again one
character further on.
"""

from __future__ import annotations

import functools
import ipaddress
import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Literal

Action = Literal["redact", "truncate", "flag"]
Category = Literal["governance", "blocked", "pii"]


@dataclass(frozen=True, slots=True)
class Hold:
    """Where, near the end of the text seen so far, a match might still be in progress: the
    trailing run of ``chars`` (found with ``str.rstrip``, no regex), or where ``pattern`` matches
    at the end, or (neither) anywhere; never more than ``span`` characters back (0: no limit).
    ``StreamGuard._hold_point`` computes it (once per token, so inlined there)."""

    chars: str | None = None
    pattern: re.Pattern[str] | None = None
    span: int = 0


def merge_holds(holds: Iterable[Hold]) -> tuple[Hold, ...]:
    """One hold per distinct alphabet or pattern, with the widest span: rules that share an
    alphabet (the four digit-based PII kinds) cost one ``rstrip`` together."""
    merged: dict[tuple[str | None, re.Pattern[str] | None], int] = {}
    for hold in holds:
        key = (hold.chars, hold.pattern)
        previous = merged.get(key)
        merged[key] = 0 if hold.span == 0 or previous == 0 else max(previous or 0, hold.span)
    return tuple(Hold(chars, pattern, span) for (chars, pattern), span in merged.items())


Trigger = str | re.Pattern[str] | None  # text every match contains: no search where it is absent


@dataclass(frozen=True, slots=True)
class Rule:
    name: str  # unique in a policy: "pii.email", "blocked.aws-access-key", "governance.confidential"
    category: Category
    kind: str  # what was found: "email", "credit_card", the blocked pattern's or keyword rule's name
    action: Action
    pattern: re.Pattern[str]
    hold: Hold
    trigger: Trigger = None
    validate: Callable[[str], bool] | None = None


# Characters that can occur in a match of each PII pattern; a hold keeps the trailing run of them.
_DIGITS_ALPHABET = r"0-9 ().+\-"  # SSN, cards, phone numbers, IPv4 all fit in this one
_EMAIL_ALPHABET = r"A-Za-z0-9._%+@\-"
_IPV6_ALPHABET = r"0-9A-Fa-f:."

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
PII_PATTERNS: dict[str, tuple[str, str]] = {
    # kind: (pattern, alphabet). Lookarounds inspect only the character next to a match.
    "email": (
        r"(?<![A-Za-z0-9._%+\-])[A-Za-z0-9._%+\-]{1,64}@[A-Za-z0-9\-]{1,63}(?:\.[A-Za-z0-9\-]{1,63}){0,8}"
        r"\.[A-Za-z]{2,24}(?![A-Za-z0-9\-])",
        _EMAIL_ALPHABET,
    ),
    "ssn": (
        r"(?<![0-9\-])(?!000|666|9[0-9][0-9])[0-9]{3}-(?!00)[0-9]{2}-(?!0000)[0-9]{4}(?![0-9\-])",
        _DIGITS_ALPHABET,
    ),
    "credit_card": (r"(?<![0-9\-])(?:[0-9][ \-]?){12,18}[0-9](?![0-9])", _DIGITS_ALPHABET),
    "phone": (
        r"(?<![0-9A-Za-z_+])(?:\+?1[ .\-]?)?(?:\([0-9]{3}\)|[0-9]{3})[ .\-]?[0-9]{3}[ .\-]?[0-9]{4}(?![0-9A-Za-z_])"
        r"|(?<![0-9A-Za-z_+])\+[1-9](?:[ .\-]?[0-9]){7,14}(?![0-9A-Za-z_])",
        _DIGITS_ALPHABET,
    ),
    "ipv4": (rf"(?<![0-9A-Za-z_.])(?:{_OCTET}\.){{3}}{_OCTET}(?![0-9A-Za-z_]|\.[0-9])", _DIGITS_ALPHABET),
    # Candidates end in a hex digit or colon, so a sentence's full stop is not taken for part of one.
    "ipv6": (r"(?<![0-9A-Za-z_:.])[0-9A-Fa-f:.]{1,44}[0-9A-Fa-f:](?![0-9A-Za-z_:]|\.[0-9A-Fa-f])", _IPV6_ALPHABET),
}
PII_KINDS = tuple(PII_PATTERNS)


def luhn_valid(candidate: str) -> bool:
    """A card number's check digit (ISO/IEC 7812): rules out most digit runs that are not cards."""
    digits = [int(c) for c in candidate if c.isdigit()]
    total = 0
    for position, digit in enumerate(reversed(digits)):
        if position % 2:
            digit = digit * 2 - 9 if digit > 4 else digit * 2
        total += digit
    return total % 10 == 0


# How card numbers are written: one run of digits, or groups of four (the last may be shorter),
# or American Express's and Diners Club's 4-6-5 and 4-6-4. "5 6 7 8 9 10 11 12 13 14" is none.
_CARD_GROUPS = re.compile(
    r"[0-9]{13,19}"
    r"|[0-9]{4}([ \-])[0-9]{4}(?:\1[0-9]{4}){1,2}(?:\1[0-9]{1,4})?"  # one separator throughout
    r"|[0-9]{4}([ \-])[0-9]{6}\2[0-9]{4,5}"
)
# Issuer prefixes (IIN ranges) and the lengths each network issues.
_CARD_NETWORKS = (
    (re.compile(r"4"), (13, 16, 19)),  # Visa
    (re.compile(r"5[1-5]|2(?:22[1-9]|2[3-9][0-9]|[3-6][0-9]{2}|7[01][0-9]|720)"), (16,)),  # Mastercard
    (re.compile(r"3[47]"), (15,)),  # American Express
    (re.compile(r"6(?:011|4[4-9]|5)"), (16, 17, 18, 19)),  # Discover
    (re.compile(r"3(?:0[0-5]|[689])"), (14, 15, 16, 17, 18, 19)),  # Diners Club
    (re.compile(r"35(?:2[89]|[3-8][0-9])"), (16, 17, 18, 19)),  # JCB
    (re.compile(r"62"), (16, 17, 18, 19)),  # UnionPay
    (re.compile(r"5[06-9]|6[0-9]"), (12, 13, 14, 15, 16, 17, 18, 19)),  # Maestro
)


def card_valid(candidate: str) -> bool:
    """A card number as cards are numbered and written: a known issuer prefix with one of its
    lengths, the usual grouping, and the Luhn check digit."""
    if _CARD_GROUPS.fullmatch(candidate) is None:
        return False
    digits = candidate.replace(" ", "").replace("-", "")
    issued = any(prefix.match(digits) and len(digits) in lengths for prefix, lengths in _CARD_NETWORKS)
    return issued and luhn_valid(digits)


def phone_valid(candidate: str) -> bool:
    """A North American number's area code begins with 2-9 (so 0123456789 or 1234567890 in a
    list of digits is not one); international numbers (+ and a country code) are taken as written."""
    digits = "".join(c for c in candidate if c.isdigit())
    if candidate.startswith("+") and not digits.startswith("1"):
        return True
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return len(digits) != 10 or digits[0] in "23456789"


def ipv6_valid(candidate: str) -> bool:
    if candidate.count(":") < 2:
        return False
    try:
        ipaddress.IPv6Address(candidate)
    except ValueError:
        return False
    return True


_VALIDATORS: dict[str, Callable[[str], bool]] = {
    "credit_card": card_valid,
    "phone": phone_valid,
    "ipv6": ipv6_valid,
}
_DIGIT = re.compile("[0-9]")
_TRIGGERS: dict[str, Trigger] = {"email": "@", "ipv6": ":", "ssn": _DIGIT, "credit_card": _DIGIT, "phone": _DIGIT}


_ASCII = "".join(map(chr, range(128)))


@functools.cache
def _every_character() -> str:
    return "".join(map(chr, range(0xD800))) + "".join(map(chr, range(0xE000, 0x110000)))  # no surrogates


@functools.cache
def run_hold(alphabet: str, span: int) -> Hold:
    """The hold for matches made of ``alphabet`` (a character class body such as ``A-Z0-9``)."""
    # Without class shorthands or code escapes (\w, \d, \u00e9: a backslash and a letter or digit),
    # an ASCII class body names only ASCII characters, and 128 candidates are enough to test.
    ascii_only = alphabet.isascii() and not re.search(r"\\[A-Za-z0-9]", alphabet)
    members = re.findall(f"[{alphabet}]", _ASCII if ascii_only else _every_character())
    if len(members) <= 512:  # rstrip with a small set of characters is the fast path
        return Hold(chars="".join(members), span=span)
    return Hold(pattern=re.compile(f"[{alphabet}]+\\Z"), span=span)


def pii_rule(kind: str, action: Action) -> Rule:
    pattern, alphabet = PII_PATTERNS[kind]
    longest = _width(pattern)[1]
    assert longest is not None, f"the {kind} pattern must be bounded"
    return Rule(
        name=f"pii.{kind}",
        category="pii",
        kind=kind,
        action=action,
        pattern=re.compile(pattern),
        # A match still in progress began at most `longest` characters back (plus one for lookaheads):
        # a run longer than that (a 64 KB word) is not held in full.
        hold=run_hold(alphabet, longest + 1),
        trigger=_TRIGGERS.get(kind, _DIGIT if alphabet == _DIGITS_ALPHABET else None),
        validate=_VALIDATORS.get(kind),
    )


def keyword_rule(name: str, keywords: Iterable[str], action: Action) -> Rule:
    """Whole words or phrases, case-insensitive (``internal only`` does not match ``internal-only``)."""
    words = sorted({" ".join(k.split()).lower() for k in keywords if k.strip()}, key=len, reverse=True)
    if not words:
        raise ValueError(f"governance rule {name!r} has no keywords")
    for word in words:
        if not (word[0].isalnum() and word[-1].isalnum()):
            raise ValueError(f"governance keyword {word!r} must begin and end with a letter or digit")
    alternatives = "|".join(r"\s+".join(re.escape(part) for part in word.split()) for word in words)
    prefixes = "|".join(_prefix_regex(word) for word in words)
    return Rule(
        name=f"governance.{name}",
        category="governance",
        kind=name,
        action=action,
        pattern=re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE),
        # A suffix that begins a keyword (the whole keyword too: the next character decides \b);
        # no span limit, as whitespace runs inside a phrase have no bound.
        hold=Hold(pattern=re.compile(rf"(?<!\w)(?:{prefixes})\Z", re.IGNORECASE)),
    )


def _prefix_regex(word: str) -> str:
    """``abc`` -> ``a(?:b(?:c)?)?``: any non-empty prefix; spaces in phrases stand for any whitespace."""
    regex = ""
    for char in reversed(word):
        piece = r"\s+" if char == " " else re.escape(char)
        regex = f"{piece}(?:{regex})?" if regex else piece
    return regex


def pattern_rule(
    name: str,
    pattern: str,
    action: Action,
    alphabet: str | None,
    max_length: int | None,
    trigger: str | None = None,
) -> Rule:
    """A blocked pattern. Its hold is the trailing run of ``alphabet`` when given (least latency),
    else its longest possible match, from ``max_length`` or computed from the pattern. ``trigger``
    is text every match contains (the pattern is not searched where it is absent)."""
    try:
        compiled = re.compile(pattern)
    except re.error as exc:
        raise ValueError(f"blocked pattern {name!r} is not a valid regular expression: {exc}") from None
    low, high = _width(pattern)
    if low == 0:
        raise ValueError(f"blocked pattern {name!r} can match empty text")
    width = max_length if max_length is not None else high
    span = 0 if width is None else width + 1  # and the character after a match, for lookaheads
    if alphabet is not None:
        try:
            hold = run_hold(alphabet, span)
        except re.error as exc:
            raise ValueError(
                f"blocked pattern {name!r}: alphabet {alphabet!r} is not a character class body: {exc}"
            ) from None
    elif width is None:
        raise ValueError(
            f"blocked pattern {name!r} can match text of unbounded length, so a stream could never be "
            "forwarded past it: bound its repetitions ({1,200} instead of + or *), or set max_length or alphabet"
        )
    else:
        hold = Hold(span=span)  # everything within the last `span` characters
    return Rule(
        name=f"blocked.{name}",
        category="blocked",
        kind=name,
        action=action,
        pattern=compiled,
        hold=hold,
        trigger=trigger,
    )


def _width(pattern: str) -> tuple[int, int | None]:
    """(shortest, longest or None if unbounded) match of ``pattern``, lookarounds counted as
    consumed text so that a width also covers what they inspect."""
    from re import _parser  # the stdlib's own width computation

    low = int(_parser.parse(pattern).getwidth()[0])
    try:
        high = int(_parser.parse(re.sub(r"\(\?<?[=!]", "(?:", pattern)).getwidth()[1])
    except re.error:  # the rewrite broke an escaped parenthesis: be as careful as the plain width
        high = int(_parser.parse(pattern).getwidth()[1])
    return low, None if high >= min(_parser.MAXREPEAT, 65535) else high
