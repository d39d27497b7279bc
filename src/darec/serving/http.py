"""The HTTP server of a trained run: a FastAPI app over a :class:`Recommender` (docs/serving.md).

Model-agnostic: every model goes through the Recommender and its sessions (DARec's streamed
users run one step per event through the models' ``stream_start``/``stream_step`` hooks).
The endpoints are plain functions, so they run in the server's thread pool (bodies are parsed
and validated on the event loop); one lock serializes the model calls (sessions mutate cached
state, and a small CPU gains nothing from interleaving them). ``POST /items`` encodes new items
outside that lock and extends the catalog inside it, so every request sees a whole catalog."""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
import json
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import Annotated, Any

import torch
from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, PlainTextResponse
from fastapi.security import APIKeyHeader
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from darec.errors import ConfigError, DarecError, DuplicateIdError, UnknownIdError
from darec.serving.prometheus import RequestMetrics
from darec.serving.recommend import Recommendation, Recommender, Session
from darec.serving.schemas import (
    AddedItemsReply,
    EventRequest,
    Health,
    Id,
    Item,
    ItemInfo,
    NewItems,
    Problem,
    Recommendations,
    RecommendRequest,
)

__all__ = ["create_app", "is_loopback"]


def _problem(status: int, code: str, detail: Any) -> JSONResponse:
    return JSONResponse({"error": code, "detail": detail}, status_code=status)


KEY_HEADER = APIKeyHeader(name="X-API-Key", auto_error=False, description="The server's key.")
HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large"}
ADD_RESPONSES: dict[int | str, dict[str, Any]] = {
    409: {"description": "An id already in the catalog, or a model that cannot add items."},
    413: {"description": "A body over the server's limit."},
    422: {"description": "Too many items, an id given twice, or an item without text."},
}


def is_loopback(host: str) -> bool:
    """Whether ``host`` only listens on this machine (127.0.0.0/8, ::1 or localhost)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class _Sessions:
    """Streamed users, least recently used first; the oldest is dropped beyond ``size``."""

    def __init__(self, size: int) -> None:
        self.size = size
        self._by_user: OrderedDict[str, Session] = OrderedDict()

    def get(self, user: str) -> Session | None:
        session = self._by_user.get(user)
        if session is not None:
            self._by_user.move_to_end(user)
        return session

    def put(self, user: str, session: Session) -> None:
        self._by_user[user] = session
        self._by_user.move_to_end(user)
        while len(self._by_user) > self.size:
            self._by_user.popitem(last=False)

    def __len__(self) -> int:
        return len(self._by_user)


class _Guard:
    """ASGI middleware: refuses bodies over ``max_body`` bytes (413, before any parsing) and
    records every request's endpoint, status and latency in ``metrics``."""

    def __init__(self, app: ASGIApp, max_body: int, metrics: RequestMetrics) -> None:
        self.app, self.max_body, self.metrics = app, max_body, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        start = time.perf_counter()
        status = 500  # unless a response starts

        async def send_seen(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            body = await self._read_body(scope, receive)
            if body is None:
                await self._reply(send_seen, 413, "payload_too_large", self._too_large())
                return
            replayed = False

            async def replay() -> Message:
                nonlocal replayed
                if replayed:
                    return await receive()  # e.g. a client disconnect
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}

            await self.app(scope, replay, send_seen)
        finally:
            route = scope.get("route")
            endpoint = getattr(route, "path", "unmatched")
            self.metrics.observe(scope["method"], endpoint, status, time.perf_counter() - start)

    def _too_large(self) -> str:
        return f"the request body is over the limit of {self.max_body} bytes"

    async def _read_body(self, scope: Scope, receive: Receive) -> bytes | None:
        """The whole body, or None when it is over the limit (stops reading at the limit)."""
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_body:
            return None
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                break
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_body:
                return None
            chunks.append(chunk)
            more = message.get("more_body", False)
        return b"".join(chunks)

    @staticmethod
    async def _reply(send: Send, status: int, code: str, detail: str) -> None:
        body = json.dumps({"error": code, "detail": detail}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})


def create_app(
    recommender: Recommender,
    api_key: str | None = None,
    max_body_bytes: int = 1 << 20,
    max_k: int = 1000,
    max_sessions: int = 10_000,
    max_new_items: int = 100,
    event_threads: int = 1,
) -> FastAPI:
    """The FastAPI app serving ``recommender``. With ``api_key``, every endpoint but /health
    wants it in the ``X-API-Key`` header. Requests over ``max_body_bytes`` get 413, ``k`` over
    ``max_k`` 422; at most ``max_sessions`` streamed users are kept (least recently used go);
    ``POST /items`` takes at most ``max_new_items`` items a request (422 beyond). A streamed
    event runs on ``event_threads`` torch threads (0: as many as the other requests)."""
    if event_threads < 0:
        raise ConfigError(f"event_threads must be >= 0, got {event_threads}")
    recommender.dataset()  # known users and titles: read now, so a missing dataset fails here
    app = FastAPI(
        title="DARec",
        summary=f"Sequential recommendation with a trained {recommender.cfg.model.name} run.",
        version="1",
    )
    metrics = RequestMetrics()
    app.add_middleware(_Guard, max_body=max_body_bytes, metrics=metrics)

    @app.exception_handler(Problem)
    async def _on_problem(request: Request, exc: Problem) -> JSONResponse:
        return _problem(exc.status, exc.code, exc.detail)

    @app.exception_handler(UnknownIdError)
    async def _on_unknown(request: Request, exc: UnknownIdError) -> JSONResponse:
        return _problem(404, "unknown_id", str(exc))

    @app.exception_handler(DarecError)
    async def _on_darec(request: Request, exc: DarecError) -> JSONResponse:
        return _problem(400, "bad_request", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _on_invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors()]
        return _problem(422, "invalid_request", errors)

    @app.exception_handler(HTTPException)
    async def _on_http(request: Request, exc: HTTPException) -> JSONResponse:
        code = HTTP_CODES.get(exc.status_code, "http_error")
        return _problem(exc.status_code, code, exc.detail)

    def check_key(key: Annotated[str | None, Depends(KEY_HEADER)]) -> None:
        if api_key is None:
            return
        if key is None or not hmac.compare_digest(key.encode(), api_key.encode()):
            raise Problem(401, "unauthorized", "missing or wrong X-API-Key header")

    service = _Service(recommender, max_k, _Sessions(max_sessions), max_new_items, event_threads)
    router = APIRouter(dependencies=[Depends(check_key)] if api_key is not None else [])
    _add_routes(router, service)
    app.include_router(router)

    @app.get("/health", tags=["server"])
    def health() -> Health:
        """Liveness: the model and how many items and streamed users it holds (no key needed)."""
        return Health(
            status="ok",
            model=recommender.cfg.model.name,
            items=len(recommender.item_ids) - 1,
            sessions=len(service.sessions),
        )

    @app.get(
        "/metrics",
        tags=["server"],
        response_class=PlainTextResponse,
        dependencies=[Depends(check_key)] if api_key is not None else [],
    )
    def prometheus() -> str:
        """Request counts by endpoint and status, and latency histograms (Prometheus text)."""
        gauges = {
            "sessions": ("Streamed users kept in memory.", float(len(service.sessions))),
            "catalog_items": ("Items the model ranks.", float(len(recommender.item_ids) - 1)),
        }
        return metrics.render(gauges)

    return app


def _add_routes(router: APIRouter, service: _Service) -> None:
    rec = service.rec

    @router.post("/recommend", tags=["recommend"])
    def recommend(body: RecommendRequest) -> Recommendations:
        """Top-k for a user of the training data (after their whole history) or after a given
        chronological item history (a new user)."""
        service.check_k(body.k)
        with service.lock:
            recs = rec.recommend(
                user=body.user,
                items=body.items,
                k=body.k,
                exclude=body.exclude,
                exclude_history=body.exclude_history,
                candidates=body.candidates,
            )
            length = len(body.items) if body.items is not None else service.known_length(body.user)
            return Recommendations(
                user=body.user, history_length=length, recommendations=service.items_out(recs)
            )

    @router.post("/users/{user}/events", tags=["stream"])
    def add_event(user: Id, body: EventRequest) -> Recommendations:
        """Record one interaction of ``user`` and answer their top-k after it. The user's stream
        is kept in memory: a user of the training data starts from their history, any other
        user from nothing; each event then costs one model step (DARec: the new step's tokens
        against the cached keys and values)."""
        service.check_k(body.k)
        with service.lock:
            for item in [body.item, *body.exclude]:  # refused before the stream changes
                rec.item_index(item)
            session = service.session_for(user)
            with service.small_call():
                session.add(body.item)
                recs = session.top(body.k, body.exclude)
            return Recommendations(
                user=user,
                history_length=len(session.history),
                recommendations=service.items_out(recs),
            )

    @router.get("/users/{user}/recommendations", tags=["stream"])
    def user_recommendations(
        user: Id, k: Annotated[int, Query(ge=1, description="How many items.")] = 10
    ) -> Recommendations:
        """Top-k for ``user`` after everything seen so far: their stream when they have one,
        else their training history (404 for a user with neither)."""
        service.check_k(k)
        with service.lock:
            session = service.sessions.get(user)
            if session is None:
                recs = rec.recommend(user=user, k=k)
                length = service.known_length(user)
            else:
                recs, length = session.top(k), len(session.history)
            return Recommendations(
                user=user, history_length=length, recommendations=service.items_out(recs)
            )

    @router.get("/items/{item}", tags=["catalog"])
    def item_info(item: Id) -> ItemInfo:
        """An item's title and text attributes."""
        with service.lock:
            attributes = rec.attributes(item)
        return ItemInfo(item=item, title=attributes.get("title"), attributes=dict(attributes))

    @router.post("/items", tags=["catalog"], status_code=201, responses=ADD_RESPONSES)
    def add_items(body: NewItems) -> AddedItemsReply:
        """Add catalog items from their text alone, without retraining (cold start; models
        that read item text: content, sasrec-text, darec). The model encodes them; they are
        ranked with the rest from the answer on, and written to the run folder like
        `darec catalog add` does, so a restart keeps them."""
        return service.add_items({new.item: new.text() for new in body.items})


class _Service:
    """What the endpoints share: the recommender, the lock around it and the sessions."""

    def __init__(
        self,
        rec: Recommender,
        max_k: int,
        sessions: _Sessions,
        max_new_items: int,
        event_threads: int,
    ) -> None:
        self.rec, self.max_k, self.sessions = rec, max_k, sessions
        self.max_new_items = max_new_items
        self.event_threads = event_threads
        self.lock = threading.Lock()  # around every model call
        self.add_lock = threading.Lock()  # one catalog addition at a time

    def add_items(self, items: dict[str, dict[str, str]]) -> AddedItemsReply:
        """Encode ``items`` (outside the model lock: requests go on meanwhile), write them to
        the run folder, then extend the live catalog under the model lock, so a request sees
        the catalog before or after, never half of it."""
        if len(items) > self.max_new_items:
            detail = [
                {
                    "loc": ["body", "items"],
                    "msg": f"at most {self.max_new_items} items a request, got {len(items)}",
                }
            ]
            raise Problem(422, "invalid_request", detail)
        try:
            self.rec.check_adds_items()
        except ConfigError as exc:
            raise Problem(409, "cannot_add_items", str(exc)) from None
        with self.add_lock:  # the catalog changes only here, so encoding reads a stable one
            try:
                added = self.rec.encode_items(items)
                self.rec.save_items(added)
            except DuplicateIdError as exc:
                raise Problem(409, "already_exists", str(exc)) from None
            except ConfigError as exc:
                raise Problem(422, "invalid_request", str(exc)) from None
            except OSError as exc:
                raise Problem(
                    500, "cannot_save", f"could not write the run folder {self.rec.run_dir}: {exc}"
                ) from None
            with self.lock:
                self.rec.extend_items(added)
                with contextlib.suppress(OSError):  # unwritable: the next start computes it
                    self.rec.save_inference_cache()
            return AddedItemsReply(added=added.item_ids, items=len(self.rec.item_ids) - 1)

    @contextlib.contextmanager
    def small_call(self) -> Iterator[None]:
        """Torch threads for a streamed event (``event_threads``; held under ``lock``). One
        token's step is a few dozen small products: on the 2-core CPU of docs/serving.md a
        second thread made the event slower over HTTP (p50 17-19 against 13-15 ms), while a
        whole history still gains from it."""
        before = torch.get_num_threads()
        if not self.event_threads or self.event_threads == before:
            yield
            return
        torch.set_num_threads(self.event_threads)
        try:
            yield
        finally:
            torch.set_num_threads(before)

    def check_k(self, k: int) -> None:
        if k > self.max_k:
            detail = [{"loc": ["k"], "msg": f"k must be <= {self.max_k}, got {k}"}]
            raise Problem(422, "invalid_request", detail)

    def items_out(self, recs: list[Recommendation]) -> list[Item]:
        title = self.rec.title
        return [Item(item=r.item, score=r.score, rank=r.rank, title=title(r.item)) for r in recs]

    def known_length(self, user: str | None) -> int:
        """How many interactions a user of the training data has."""
        ds = self.rec.dataset()
        return len(ds.sequence(ds.user_index(user or "")))

    def session_for(self, user: str) -> Session:
        """The user's session: kept, or started from their training history (a known user) or
        from nothing (a new user)."""
        session = self.sessions.get(user)
        if session is None:
            try:
                self.rec.dataset().user_index(user)
            except UnknownIdError:
                session = self.rec.session(items=())
            else:
                session = self.rec.session(user=user)
            self.sessions.put(user, session)
        return session
