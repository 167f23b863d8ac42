"""The guardrail evaluator, sans-IO: what each rule finds, redact/truncate/flag, text split across
chunks, chunking invariance (hypothesis), and the hold limits (window, max hold, deadline)."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from trio_router.streaming.guardrails import GuardrailConfig, Limits, StreamGuard, Verdict, compile_policy
from trio_router.streaming.guardrails.policy import GuardrailPolicy, operation_policy
from trio_router.streaming.guardrails.rules import card_valid, luhn_valid, phone_valid

UNLIMITED = Limits(window_tokens=10**9, max_hold=math.inf, deadline_margin=0)


def policy(**config: object) -> GuardrailPolicy:
    compiled = compile_policy(GuardrailConfig.model_validate(config))
    assert compiled is not None
    return compiled


DEFAULT = policy(governance=[{"name": "confidential", "keywords": ["confidential", "internal only"]}])
REDACT_ALL = policy(pii={kind: "redact" for kind in ("email", "ssn", "credit_card", "phone", "ipv4", "ipv6")})


def run(
    chunks: list[str], rules: GuardrailPolicy = DEFAULT, limits: Limits = UNLIMITED
) -> tuple[str, list[Verdict], Verdict | None]:
    """Everything forwarded, every verdict, and the severing verdict if any."""
    guard = StreamGuard(rules, limits)
    out: list[str] = []
    verdicts: list[Verdict] = []
    for chunk in chunks:
        step = guard.feed(chunk, 0.0)
        out.append(step.text)
        verdicts += step.verdicts
        if step.severed:
            return "".join(out), verdicts, step.severed
    step = guard.finish()
    return "".join(out) + step.text, verdicts + step.verdicts, step.severed


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to john.smith+tag@mail.example.co.uk today", "email"),
        ("my ssn is 123-45-6789.", "ssn"),
        ("pay with 4111 1111 1111 1111 now", "credit_card"),
        ("card 5500-0000-0000-0004", "credit_card"),
        ("call (555) 123-4567 or", "phone"),
        ("call +44 20 7946 0958 now", "phone"),
        ("host 192.168.10.254.", "ipv4"),
        ("v6 2001:db8::8a2e:370:7334 up", "ipv6"),
        ("loopback ::1.", "ipv6"),
    ],
)
def test_each_pii_kind_is_found_and_redacted(text: str, kind: str) -> None:
    forwarded, verdicts, severed = run([text], REDACT_ALL)
    assert [v.kind for v in verdicts] == [kind]
    assert f"[REDACTED:{kind}]" in forwarded and severed is None
    found = verdicts[0]
    assert text[: found.start] + f"[REDACTED:{kind}]" + text[found.end :] == forwarded


@pytest.mark.parametrize(
    "text",
    [
        "4111 1111 1111 1112",  # fails the Luhn check
        "000-12-3456 and 123-00-4567",  # invalid SSN areas and groups
        "version 1.2.3.4.5 and 999.1.1.1",
        "12:30:45 and deadbeef:cafe",  # times and hex words with colons are not IPv6
        "user@localhost and a@b",  # no top-level domain
        "order 12345 shipped",
    ],
)
def test_near_misses_pass_untouched(text: str) -> None:
    assert run([text], REDACT_ALL) == (text, [], None)


def test_luhn() -> None:
    assert luhn_valid("4111111111111111") and luhn_valid("79927398713")
    assert not luhn_valid("4111111111111112")


def test_a_match_split_across_chunks_is_caught() -> None:
    forwarded, verdicts, _ = run(["mail jo", "hn@exa", "mple.com now"])
    assert forwarded == "mail [REDACTED:email] now"
    assert (verdicts[0].start, verdicts[0].end) == (5, 21)  # offsets in the original text


def test_only_what_might_become_a_match_is_held() -> None:
    guard = StreamGuard(DEFAULT, UNLIMITED)
    assert guard.feed("The answer is ", 0).text == "The answer is"  # the trailing space could start a phone number
    assert guard.feed("forty two", 0).text == " forty "  # "two" might still become an email's local part
    assert guard.held == "two"
    assert guard.finish().text == "two"


def test_truncate_severs_right_before_the_match_and_nothing_follows() -> None:
    forwarded, verdicts, severed = run(["aws key AK", "IAABCDEFGHIJKLMNOP and then", " more text"])
    assert forwarded == "aws key "
    assert severed is not None and severed.kind == "aws-access-key" and severed.action == "truncate"
    assert verdicts == [severed]
    guard = StreamGuard(DEFAULT, UNLIMITED)
    guard.feed("AKIAABCDEFGHIJKLMNOP ", 0)
    assert guard.feed("anything", 0).text == "" and guard.finish().text == ""


def test_governance_keywords_are_whole_words_case_insensitive_and_flagged() -> None:
    forwarded, verdicts, _ = run(["This is CONFIDENT", "IAL and internal\n  only; not unconfidential."])
    assert forwarded == "This is CONFIDENTIAL and internal\n  only; not unconfidential."  # flag forwards
    assert [(v.kind, v.action, v.start, v.end) for v in verdicts] == [
        ("confidential", "flag", 8, 20),
        ("confidential", "flag", 25, 40),
    ]


def test_rule_order_decides_between_matches_at_the_same_place() -> None:
    rules = policy(
        governance=[{"name": "ids", "keywords": ["555 123 4567"], "action": "redact"}], pii={"phone": "redact"}
    )
    assert run(["call 555 123 4567."], rules)[0] == "call [REDACTED:ids]."


# Pieces that make matches, near misses and boundaries likely in generated text.
PIECES = st.sampled_from(
    [
        "john@example.com",
        "a.b@c.io",
        "@",
        ".",
        " ",
        "-",
        "4111 1111 1111 1111",
        "4111",
        "123-45-6789",
        "(555) 123-4567",
        "+1 ",
        "10.0.0.1",
        "::1",
        "fe80::",
        ":",
        "confidential",
        "internal only",
        "internal",
        "AKIA",
        "ABCDEFGHIJKLMNOP",
        "-----BEGIN RSA PRIVATE KEY-----",
        "x",
        "7",
        "\n",
    ]
)
TEXTS = st.lists(st.one_of(PIECES, st.text(max_size=4)), max_size=25).map("".join)


def split(text: str, cuts: list[int]) -> list[str]:
    points = sorted({0, len(text), *(cut % (len(text) + 1) for cut in cuts)})
    return [text[a:b] for a, b in itertools.pairwise(points)]


@settings(max_examples=400, deadline=None)
@given(TEXTS, st.lists(st.integers(min_value=0), max_size=30), st.sampled_from([DEFAULT, REDACT_ALL]))
def test_chunking_invariance(text: str, cuts: list[int], rules: GuardrailPolicy) -> None:
    """However a text is split into chunks, what is forwarded, what is found and where the stream
    is severed are exactly what the unsplit text gives."""
    assert run(split(text, cuts), rules) == run([text], rules)


WORDS = st.sampled_from(["the", "quick", "5", "6", "17", "version", "and", "then", "2.1", "x", "fox"])
FILLER = st.lists(WORDS, min_size=30, max_size=70).map(" ".join)
SECRETS = st.sampled_from(["4111 1111 1111 1111", "john.smith@example.com", "123-45-6789", "(555) 123-4567"])


@settings(max_examples=300, deadline=None)
@example(filler=" ".join(["the"] * 40), secret="4111 1111 1111 1111", at=60, cuts=list(range(0, 200, 4)))
@given(FILLER, SECRETS, st.integers(min_value=0), st.lists(st.integers(min_value=0), max_size=120))
def test_chunking_invariance_with_the_default_limits(filler: str, secret: str, at: int, cuts: list[int]) -> None:
    """The default window, streams far longer than it (in ordinary prose the last word is always
    held), PII at any offset, any split (one character a chunk included): the same as the whole
    text. Counting the window per unbroken hold forced a flush every ~20 chunks, which let a
    card number split across it through."""
    at %= len(filler) + 1
    text = f"{filler[:at]} to {secret} now {filler[at:]}"  # words around it: a digit beside it makes another number
    limits = Limits()  # window_tokens and the rest as configured by default (time never advances here)
    assert run(split(text, cuts), REDACT_ALL, limits) == run([text], REDACT_ALL)
    assert secret not in run(split(text, cuts), REDACT_ALL, limits)[0]


@settings(max_examples=200, deadline=None)
@given(TEXTS, st.lists(st.integers(min_value=0), max_size=30))
def test_nothing_is_lost_or_invented(text: str, cuts: list[int]) -> None:
    """With only flag rules, the forwarded text is the input, byte for byte."""
    flags = policy(
        governance=[{"name": "c", "keywords": ["confidential"]}],
        blocked=[],
        pii={kind: "flag" for kind in ("email", "ssn", "credit_card", "phone", "ipv4", "ipv6")},
    )
    assert run(split(text, cuts), flags)[0] == text


def test_the_window_forces_held_text_out() -> None:
    guard = StreamGuard(DEFAULT, Limits(window_tokens=3, max_hold=math.inf, deadline_margin=0))
    assert guard.feed("abc", 0).text == ""  # could be an email's local part
    assert guard.feed("def", 0).text == ""
    assert guard.feed("ghi", 0).text == ""
    assert guard.feed("jkl", 0).text == "abcdefghijkl"  # the fourth chunk while held: out it goes
    assert guard.forced_flushes == 1


def test_held_text_leaves_after_max_hold_and_before_the_deadline() -> None:
    guard = StreamGuard(DEFAULT, Limits(window_tokens=100, max_hold=2.0, deadline_margin=0.5), deadline=10.0)
    assert guard.feed("hello", 5.0).text == "" and guard.flush_due() == 7.0
    assert guard.feed("world", 6.0).text == ""
    assert guard.feed("again", 7.0).text == "helloworldagain"  # a feed at the due time forces it
    guard.feed("tail", 9.0)
    assert guard.flush_due() == 9.5  # the deadline margin comes before max_hold
    assert guard.flush().text == "tail" and guard.flush_due() is None
    assert guard.feed("late", 9.6).text == "late"  # inside the margin nothing is held at all


def test_a_forced_flush_still_decides_complete_matches() -> None:
    guard = StreamGuard(DEFAULT, Limits(window_tokens=100, max_hold=1.0, deadline_margin=0))
    assert guard.feed("to bob@example.org", 0.0).text == "to "  # ".org" might go on: ".org.uk"
    assert guard.flush().text == "[REDACTED:email]"


def test_policy_configuration_errors_are_precise() -> None:
    cache: dict[str, GuardrailPolicy | None] = {}
    base = GuardrailConfig()
    with pytest.raises(ValueError, match="unbounded length"):
        policy(blocked=[{"name": "any", "pattern": "secret.*"}])
    with pytest.raises(ValueError, match="can match empty text"):
        policy(blocked=[{"name": "empty", "pattern": "a?"}])
    with pytest.raises(ValueError, match="not a valid regular expression"):
        policy(blocked=[{"name": "bad", "pattern": "(unclosed"}])
    with pytest.raises(ValueError, match=r"x-guardrails: pii: Value error, unknown PII kinds \['passport'\]"):
        operation_policy(base, {"pii": {"passport": "redact"}}, cache)
    with pytest.raises(ValueError, match="must be true, false or a policy mapping"):
        operation_policy(base, "yes", cache)
    assert operation_policy(base, False, cache) is None
    assert operation_policy(base, True, cache) is operation_policy(base, None, cache)  # compiled once
    bounded = policy(blocked=[{"name": "ticket", "pattern": r"TICKET-\d{1,6}(?=\b)", "action": "redact"}])
    assert run(["see TICK", "ET-12", "345 now"], bounded)[0] == "see [REDACTED:ticket] now"


ORDINARY = """\
Count along: 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20, then 5 6 7 8 9 10 11 12 13 14 15 16 17.
We shipped on 2026-12-03 at 12:30:45 (03.12.2026, 12/03/2026); the years 1990 1991 1992 1993 were slow.
Install Python 3.11.7 or v1.2.3-rc.1; HTTP/1.1 200 OK on port 8080; build 20261203 took 1234567 ms.
The server at 10.0.0.1 talks to 192.168.1.254 and ::1; version 1.2.3.4.5 is old.
Order #1234567890 cost $1,234.56, order 0123456789 is pending; 1,000,000 users, 0.5 of them active.
ISBN 978-3-16-148410-0, UUID 123e4567-e89b-12d3-a456-426614174000, zip 94103-1234, room 101.
Coordinates 48.8566, 2.3522; the ratio 16:9; scores 4 4 4 4 3 3 3 3 2 2 2 2 1 1 1 1; pi is 3.14159265358979.
Tracking 1Z999AA10123456784, account 2020 2021 2022 2023, serial 0000-0000-0000-0000, lot 123-456-7890-12.
"""


def test_ordinary_text_has_no_false_positives_for_the_redact_kinds() -> None:
    """Numbers, dates, versions, IPs (flagged, not redacted), identifiers: nothing redacted."""
    default = policy()
    forwarded, verdicts, _ = run([ORDINARY], default)
    redacted = [(v.kind, ORDINARY[v.start : v.end]) for v in verdicts if v.action == "redact"]
    assert redacted == [] and forwarded == ORDINARY


@pytest.mark.parametrize(
    "number",
    ["4111 1111 1111 1111", "5555-5555-5555-4444", "3782 822463 10005", "6011111111111117", "3530 1113 3330 0000",
     "2223 0031 2200 3222", "4012888888881881"],
)  # fmt: skip
def test_real_card_numbers_of_each_network_are_still_redacted(number: str) -> None:
    assert run([f"card {number} ok"], REDACT_ALL)[0] == "card [REDACTED:credit_card] ok"


def test_a_card_number_needs_an_issuer_a_length_and_a_consistent_grouping() -> None:
    for near_miss in ["9111 1111 1111 1111", "4111-1111 1111-1111", "41 11 11 11 11 11 11 11", "1234567812345670"]:
        assert card_valid(near_miss) is False, near_miss
    assert phone_valid("(415) 555-2671") and not phone_valid("1234567890") and phone_valid("+44 20 7946 0958")
