"""The JSON API: ask, more results, a paragraph in context, the speeches, health.

Every error is `{"error": {"code", "message", "hint"}}` with its HTTP status: 400 for a question
that cannot be searched or a request that does not fit, 404, 500, and 503 while the index is being
built or too many questions are waiting; guard.py adds 401, 413 and 429 in the same shape.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import APIRouter, FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from starlette.exceptions import HTTPException

from embeddings.errors import BadQuestion, SearchUnavailable, SpeechQAError
from embeddings.retrieval.retrieve import validate_question

from . import service as engine
from .guard import error_body
from .service import MAX_RESULTS, Busy, NotFound, Service, Unavailable

logger = logging.getLogger(__name__)
router = APIRouter(prefix="/api")
EXAMPLE = "工匠日是怎么设立的？"
# Answers are the answer layer's own dicts, not response models: a field it adds reaches clients unchanged.
ANSWER_DOC = "The answer object of `speechqa ask --json`: direct_answer, hits (citations), found, confidence, mode."


class Question(BaseModel):
    question: str = Field(description="a question in Chinese", examples=[EXAMPLE])


class MoreQuestion(Question):
    offset: int = Field(ge=0, lt=MAX_RESULTS, description="how many results were shown already")


def _service(request: Request) -> Service:
    service: Service = request.app.state.service
    return service


def _checked(question: str, service: Service) -> str:
    """The question as the engine will search it, or a 400 naming what is wrong with it."""
    limit = service.config.answer.max_question_chars
    try:
        question = validate_question(question, limit)
    except BadQuestion as error:
        stripped = question.strip()
        code = "empty_question" if not stripped else "question_too_long" if len(stripped) > limit else "no_words"
        raise _ApiError(400, code, error) from None
    logger.debug("question %r", question)
    return question


@router.post("/ask", summary="Answer a question", description=ANSWER_DOC)
async def ask(body: Question, request: Request) -> dict[str, Any]:
    service = _service(request)
    answer = await service.run(engine.ask, _checked(body.question, service), service.config.answer)
    # Joins the request's one log line (guard.py): how long the question was, never what it said.
    request.state.outcome = f"chars={len(body.question)} found={answer['found']} hits={len(answer['hits'])}"
    return answer


@router.post("/more", summary="The next results for a question", description=ANSWER_DOC)
async def more(body: MoreQuestion, request: Request) -> dict[str, Any]:
    service = _service(request)
    return await service.run(engine.more, _checked(body.question, service), body.offset, service.config.answer)


@router.get("/paragraphs/{passage_id}", summary="The whole paragraph of a hit, with the ones around it")
async def paragraph(passage_id: str, request: Request) -> dict[str, Any]:
    service = _service(request)
    return await service.run(engine.paragraph, passage_id)


@router.get("/speeches", summary="The indexed speeches")
async def speeches(request: Request) -> dict[str, Any]:
    listed = await _service(request).run(engine.speeches)
    return {"speeches": listed}


@router.get("/health", summary="ready, building or failed (503 until ready)")
async def health(request: Request) -> JSONResponse:
    service = _service(request)
    status = service.status
    body: dict[str, Any] = {"status": status}
    if service.retriever is not None:
        # The engine's notice names models and paths: it is for the operator's log, not for anyone asking.
        body.update(mode=service.retriever.mode, passages=len(service.retriever.passages))
    return JSONResponse(body, status_code=200 if status == "ready" else 503)


class _ApiError(Exception):
    def __init__(self, status: int, code: str, error: SpeechQAError) -> None:
        super().__init__(str(error))
        self.status, self.code, self.error = status, code, error


def _json(status: int, code: str, message: str, hint: str = "", headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(error_body(code, message, hint), status_code=status, headers=headers)


def install(app: FastAPI) -> None:
    """Add the routes and turn every failure into the API's error shape."""
    app.include_router(router)

    async def api_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, _ApiError)
        return _json(exc.status, exc.code, str(exc.error), exc.error.hint)

    async def domain_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, SpeechQAError)
        if isinstance(exc, NotFound):
            return _json(404, "not_found", str(exc), exc.hint)
        if isinstance(exc, Unavailable | Busy | SearchUnavailable):  # the page retries these by itself
            retry = "1" if isinstance(exc, Busy) else "5"
            code = {Busy: "busy", SearchUnavailable: "search_unavailable"}.get(type(exc), "unavailable")
            return _json(503, code, str(exc), exc.hint, {"Retry-After": retry})
        logger.error("request failed: %s", exc)
        return _json(500, "engine_error", str(exc), exc.hint)

    async def bad_request(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        where = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return _json(400, "bad_request", f"the request does not fit the API ({where})", "see /api/openapi.json")

    async def http_error(_: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, HTTPException)
        code = "not_found" if exc.status_code == 404 else f"http_{exc.status_code}"
        return _json(exc.status_code, code, str(exc.detail), "", dict(exc.headers or {}))

    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        # uvicorn logs the traceback; the client gets the API's error shape, not a plain-text 500.
        return _json(500, "internal", "the server failed to answer", "try again; if it persists, tell the admin")

    app.add_exception_handler(Exception, unexpected)
    app.add_exception_handler(_ApiError, api_error)
    app.add_exception_handler(SpeechQAError, domain_error)
    app.add_exception_handler(RequestValidationError, bad_request)
    app.add_exception_handler(HTTPException, http_error)
