"""PII detection with Presidio's pattern and checksum recognizers, fully offline.

No NER model is loaded: Presidio runs over a blank spaCy English pipeline (a
tokenizer, so context words such as "phone" still raise scores), and the email
recognizer validates domains against tldextract's bundled public-suffix
snapshot instead of fetching the list over the network.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING, Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from agents.ports import PiiFinding

if TYPE_CHECKING:
    from presidio_analyzer import AnalyzerEngine, EntityRecognizer
    from presidio_analyzer.nlp_engine import NlpEngine

logger = logging.getLogger(__name__)

_LANGUAGE: Final = "en"
_LEMMA_COMPONENT: Final = "guardian_lowercase_lemma"

SUPPORTED_ENTITIES: Final = (
    "EMAIL_ADDRESS",
    "PHONE_NUMBER",
    "CREDIT_CARD",
    "IBAN_CODE",
    "IP_ADDRESS",
    "US_SSN",
    "URL",
)
"""Everything the detector can find; ``URL`` matches only links with an http(s) scheme."""


class PiiSettings(BaseSettings):
    """Which entities count as PII and how confident a match must be."""

    model_config = SettingsConfigDict(env_prefix="GUARDIAN_PII_", frozen=True)

    min_score: float = Field(default=0.4, ge=0.0, le=1.0)
    entities: tuple[str, ...] = (
        "EMAIL_ADDRESS",
        "PHONE_NUMBER",
        "CREDIT_CARD",
        "IBAN_CODE",
        "IP_ADDRESS",
        "US_SSN",
    )
    """URL is off by default: links in answers are usually references, not PII."""


def _blank_nlp_engine() -> NlpEngine:
    """A Presidio spaCy engine over ``spacy.blank("en")``: tokens only, nothing downloaded."""
    import spacy
    from presidio_analyzer.nlp_engine import SpacyNlpEngine
    from spacy.language import Language
    from spacy.tokens import Doc

    if not Language.has_factory(_LEMMA_COMPONENT):

        @Language.component(_LEMMA_COMPONENT)
        def lowercase_lemma(doc: Doc) -> Doc:
            # Presidio matches context words against lemmas; a blank pipeline has none.
            for token in doc:
                token.lemma_ = token.lower_
            return doc

    class BlankSpacyNlpEngine(SpacyNlpEngine):
        def load(self) -> None:
            nlp = spacy.blank(_LANGUAGE)
            nlp.add_pipe(_LEMMA_COMPONENT)
            self.nlp = {_LANGUAGE: nlp}  # type: ignore[assignment]  # declared None until load

    return BlankSpacyNlpEngine(models=[{"lang_code": _LANGUAGE, "model_name": "blank"}])


def _offline_email_recognizer() -> EntityRecognizer:
    """Presidio's email recognizer, validating domains without network access."""
    import tldextract
    from presidio_analyzer.predefined_recognizers import EmailRecognizer

    extract = tldextract.TLDExtract(suffix_list_urls=(), cache_dir=None)
    extract("example.com")  # load the snapshot now rather than on the first email

    class OfflineEmailRecognizer(EmailRecognizer):
        def validate_result(self, pattern_text: str) -> bool:
            return bool(extract(pattern_text).fqdn)

    recognizer: EntityRecognizer = OfflineEmailRecognizer()
    return recognizer


def _url_recognizer() -> EntityRecognizer:
    """Only URLs with an http(s) scheme: bare names like ``setup.py`` are not links."""
    from presidio_analyzer.predefined_recognizers import UrlRecognizer

    schemed = [p for p in UrlRecognizer.PATTERNS if "https?://" in p.regex]
    recognizer: EntityRecognizer = UrlRecognizer(patterns=schemed)
    return recognizer


def _recognizers() -> list[EntityRecognizer]:
    from presidio_analyzer.predefined_recognizers import (
        CreditCardRecognizer,
        IbanRecognizer,
        IpRecognizer,
        PhoneRecognizer,
        UsSsnRecognizer,
    )

    return [
        _offline_email_recognizer(),
        PhoneRecognizer(),
        CreditCardRecognizer(),
        IbanRecognizer(),
        IpRecognizer(),
        UsSsnRecognizer(),
        _url_recognizer(),
    ]


def _build_analyzer() -> AnalyzerEngine:
    from presidio_analyzer import AnalyzerEngine, RecognizerRegistry

    started = time.perf_counter()
    registry = RecognizerRegistry(recognizers=_recognizers(), supported_languages=[_LANGUAGE])
    analyzer = AnalyzerEngine(
        registry=registry, nlp_engine=_blank_nlp_engine(), supported_languages=[_LANGUAGE]
    )
    logger.info("built PII analyzer in %.2fs", time.perf_counter() - started)
    return analyzer


class PresidioPiiDetector:
    """A ``PiiDetector`` over Presidio's offline recognizers. Builds lazily, once; thread-safe."""

    def __init__(self, settings: PiiSettings | None = None) -> None:
        self._settings = settings or PiiSettings()
        unknown = set(self._settings.entities) - set(SUPPORTED_ENTITIES)
        if unknown:
            raise ValueError(f"unsupported PII entities: {sorted(unknown)}")
        self._analyzer: AnalyzerEngine | None = None
        self._lock = threading.Lock()

    def load(self) -> None:
        """Build the analyzer now instead of on the first call."""
        with self._lock:
            self._loaded()

    def find(self, text: str) -> list[PiiFinding]:
        if not text.strip():
            return []
        # spaCy pipelines are not documented as thread-safe; calls take milliseconds.
        with self._lock:
            results = self._loaded().analyze(
                text=text,
                language=_LANGUAGE,
                entities=list(self._settings.entities),
                score_threshold=self._settings.min_score,
            )
        findings = [
            PiiFinding(entity_type=r.entity_type, start=r.start, end=r.end, score=r.score)
            for r in results
        ]
        return sorted(findings, key=lambda f: (f.start, f.end, f.entity_type))

    def _loaded(self) -> AnalyzerEngine:
        if self._analyzer is None:
            self._analyzer = _build_analyzer()
        return self._analyzer
