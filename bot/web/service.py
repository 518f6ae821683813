"""The engine behind the web API: opened once in the background, questions answered on a bounded pool.

The answer objects are the ones `speechqa ask --json` prints (`compose(...).to_dict()`), so the API
follows whatever the answer layer adds. Retrieval runs on its own threads, never on the event loop,
and at most `max_pending` questions wait for them: beyond that a client is told to come back.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict
from typing import Any, TypeVar

from embeddings.errors import SpeechQAError
from embeddings.retrieval.retrieve import Retriever, validate_question

from ..answer import compose
from ..config import AnswerSettings, Config
from ..session import paragraph_view

logger = logging.getLogger(__name__)

# The engine ranks `fusion.candidates` passages (50 by default); paging stops there.
MAX_RESULTS = 50
T = TypeVar("T")


class Unavailable(SpeechQAError):
    """No index to answer from yet (being built) or any more (it failed to open)."""


class Busy(SpeechQAError):
    """More questions are waiting than `max_pending` allows."""


class NotFound(SpeechQAError):
    """No passage has the requested id (in the index currently served)."""


def ask(retriever: Retriever, question: str, settings: AnswerSettings) -> dict[str, Any]:
    """Exactly what `speechqa ask --json` prints for `question`."""
    question = validate_question(question, settings.max_question_chars)
    return compose(retriever.search(question, top_k=settings.top_k), settings).to_dict()


def more(retriever: Retriever, question: str, offset: int, settings: AnswerSettings) -> dict[str, Any]:
    """The page of results after the first `offset`, ranked and numbered as in the full list."""
    question = validate_question(question, settings.max_question_chars)
    end = min(offset + settings.top_k, MAX_RESULTS)
    result = retriever.search(question, top_k=end)
    return compose(result, settings, hits=result.hits[offset:end]).to_dict()


def paragraph(retriever: Retriever, passage_id: str) -> dict[str, Any]:
    """The whole paragraph of a passage with its neighbours, and where the passage sits in it."""
    passage = retriever.passage(passage_id, shown=True)  # the text the hit showed, to mark in its paragraph
    if passage is None:
        raise NotFound(f"no passage {passage_id!r} in the index", "ask again: the index may have been rebuilt")
    view = asdict(paragraph_view(retriever, passage, 1))
    del view["number"]  # a citation's number belongs to one answer; the page knows it
    start = view["text"].find(passage.text)
    view["passage"] = [start, start + len(passage.text)] if start >= 0 else None
    return {"passage_id": passage_id, "speech_id": passage.speech_id, "title": passage.title, **view}


def speeches(retriever: Retriever) -> list[dict[str, Any]]:
    listed = [
        {
            "speech_id": speech.speech_id,
            "title": speech.title,
            "subtitle": speech.subtitle,
            "source": speech.source,
            "paragraphs": len(speech.paragraphs),
            "passages": len(retriever.speeches.passage_rows(speech.speech_id)),
        }
        for speech in retriever.speeches.values()
    ]
    return sorted(listed, key=lambda item: (item["title"], item["speech_id"]))


class Service:
    """One engine per process; `load` opens it, `run` answers with it."""

    def __init__(self, config: Config, opener: Callable[[], Retriever]) -> None:
        self.config = config
        self._opener = opener
        self.retriever: Retriever | None = None
        self.problem = ""  # why the index could not be opened, once that has happened
        self._pool = ThreadPoolExecutor(config.web.retrieval_threads, thread_name_prefix="speechqa-web")
        self._waiting = 0

    @property
    def status(self) -> str:
        return "ready" if self.retriever is not None else "failed" if self.problem else "building"

    async def load(self) -> None:
        """Open (building when needed) the index; until this returns, questions get 503."""
        try:
            retriever = await asyncio.get_running_loop().run_in_executor(self._pool, self._opener)
        except SpeechQAError as error:
            self.problem = f"{error} (next: {error.hint})" if error.hint else str(error)
        except OSError as error:
            self.problem = f"{error.strerror or error}" + (f" ({error.filename})" if error.filename else "")
        except Exception:
            # Left unhandled, a failure here would leave the server "building" for ever.
            logger.exception("opening the index failed")
            self.problem = "an unexpected error"
        if self.problem:
            logger.error("the index could not be opened: %s", self.problem)
            return
        self.retriever = retriever
        logger.info(
            "ready: %d speeches, %d passages, %s", len(retriever.speeches), len(retriever.passages), retriever.mode
        )

    async def run(self, call: Callable[..., T], *args: Any) -> T:
        """`call(retriever, *args)` on the retrieval pool, or `Unavailable`/`Busy` at once."""
        retriever = self.retriever
        if retriever is None:
            if self.problem:
                # The reason names paths and models: it goes to the operator's log, not to every client.
                raise Unavailable("the index could not be opened", "the server's log says why; fix it and restart")
            raise Unavailable("the index is being built", "try again in a few seconds")
        if self._waiting >= self.config.web.max_pending:
            raise Busy("too many questions are waiting", "try again in a moment")
        self._waiting += 1
        try:
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._pool, functools.partial(call, retriever, *args))
        finally:
            self._waiting -= 1

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)
