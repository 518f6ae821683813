"""Domain errors: each says what went wrong and, where there is one, the command that fixes it."""

from __future__ import annotations

REBUILD_HINT = "rebuild it with: speechqa index"


class SpeechQAError(Exception):
    """Base for errors a user can act on; front-ends show `str(error)` and `hint`, never a traceback."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.hint = hint


class UnreadableSpeech(SpeechQAError):
    """One file of the corpus cannot be read; the rest of the corpus still loads."""


class CorpusError(SpeechQAError):
    """The corpus folder as a whole is unusable (missing, empty, nothing readable)."""


class IndexError_(SpeechQAError):
    """The built index is missing, stale or damaged."""


class ModelUnavailable(SpeechQAError):
    """The configured embedding or rerank model cannot be loaded."""


class BadQuestion(SpeechQAError):
    """The question cannot be searched (empty, too long, nothing searchable in it)."""


class ConfigError(SpeechQAError):
    """A config file or value is wrong; the message names the key and the allowed values."""


class SearchUnavailable(SpeechQAError):
    """The search backend (a Milvus server or cluster) cannot be reached or did not answer in time.

    Front-ends say that search is unavailable for now and try again on the next question: nothing
    of the index is lost, and no restart is needed once the backend is back.
    """
