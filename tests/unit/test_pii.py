"""Presidio PII detection over a blank spaCy pipeline, with no network access."""

from __future__ import annotations

import logging

import pytest

from agents.ports import PiiDetector
from connectors.pii import SUPPORTED_ENTITIES, PiiSettings, PresidioPiiDetector

PLAIN_PROSE = [
    "To bake bread, mix 500 g of flour with 350 ml of water, 10 g of salt and 7 g of yeast. "
    "Knead for 10 minutes, let it rise for 1-2 hours and bake at 230 C for 35 minutes.",
    "A Kafka topic with 12 partitions and replication factor 3 tolerates two broker "
    "failures; version 3.7.1 added tiered storage.",
    "In 2023 revenue grew 12.5% to $4,500,000, and the review is on 2024-05-17 at 10:30.",
    "Run setup.py, read README.md and edit config.sh before deploying the app.",
]


@pytest.fixture(scope="module")
def detector() -> PresidioPiiDetector:
    return PresidioPiiDetector()


def found(detector: PresidioPiiDetector, text: str) -> list[tuple[str, str]]:
    return [(f.entity_type, text[f.start : f.end]) for f in detector.find(text)]


def test_implements_the_port(detector: PresidioPiiDetector) -> None:
    assert isinstance(detector, PiiDetector)


def test_the_first_email_match_logs_no_error(caplog: pytest.LogCaptureFixture) -> None:
    fresh = PresidioPiiDetector()
    text = "Write to jane.doe@example.com for access."
    with caplog.at_level(logging.DEBUG):
        findings = fresh.find(text)
    assert [(f.entity_type, text[f.start : f.end]) for f in findings] == [
        ("EMAIL_ADDRESS", "jane.doe@example.com")
    ]
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("My card is 4111 1111 1111 1111, expiring soon.", ("CREDIT_CARD", "4111 1111 1111 1111")),
        ("Call my phone on (212) 555-0198 tomorrow.", ("PHONE_NUMBER", "(212) 555-0198")),
        ("Ring +44 20 7946 0958 after lunch.", ("PHONE_NUMBER", "+44 20 7946 0958")),
        ("Pay into DE89370400440532013000 today.", ("IBAN_CODE", "DE89370400440532013000")),
        ("The database lives at 192.168.1.20 now.", ("IP_ADDRESS", "192.168.1.20")),
        ("My social security number is 536-22-8726.", ("US_SSN", "536-22-8726")),
    ],
)
def test_finds_each_kind_of_pii(
    detector: PresidioPiiDetector, text: str, expected: tuple[str, str]
) -> None:
    assert expected in found(detector, text)


def test_a_card_number_with_a_bad_checksum_is_not_a_card(detector: PresidioPiiDetector) -> None:
    assert found(detector, "My card is 4111 1111 1111 1112.") == []


@pytest.mark.parametrize("text", PLAIN_PROSE)
def test_plain_prose_has_no_pii(detector: PresidioPiiDetector, text: str) -> None:
    assert detector.find(text) == []


def test_findings_are_ordered_with_offsets_and_scores(detector: PresidioPiiDetector) -> None:
    text = "Email bob@example.org or call 212-555-0198."
    findings = detector.find(text)
    assert [f.entity_type for f in findings] == ["EMAIL_ADDRESS", "PHONE_NUMBER"]
    assert all(0.0 < f.score <= 1.0 for f in findings)


def test_context_words_raise_the_score(detector: PresidioPiiDetector) -> None:
    (bare,) = detector.find("Reach me at 212-555-0198.")
    (with_context,) = detector.find("My phone number is 212-555-0198.")
    assert with_context.score > bare.score


def test_min_score_filters_weak_matches() -> None:
    strict = PresidioPiiDetector(PiiSettings(min_score=0.9))
    assert strict.find("Reach me at 212-555-0198.") == []
    assert [f.entity_type for f in strict.find("Card 4111 1111 1111 1111.")] == ["CREDIT_CARD"]


def test_urls_are_opt_in_and_need_a_scheme() -> None:
    with_urls = PresidioPiiDetector(PiiSettings(entities=SUPPORTED_ENTITIES))
    text = "See https://example.com/profile/jane or edit setup.py."
    assert found(with_urls, text) == [("URL", "https://example.com/profile/jane")]


def test_empty_text_has_no_findings(detector: PresidioPiiDetector) -> None:
    assert detector.find("   ") == []


def test_unknown_entities_are_refused() -> None:
    with pytest.raises(ValueError, match="PERSON"):
        PresidioPiiDetector(PiiSettings(entities=("PERSON",)))
