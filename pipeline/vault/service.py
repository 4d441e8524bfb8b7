"""The key vault as a service (``omnistitch vault``): a stand-in for a KMS with immediate key
deletion, bound to 127.0.0.1 by default, for the connectors (issue), the worker (fetch, shred)
and the operators' tools.

HTTP/JSON, every call authenticated by a bearer token (``OMNISTITCH_VAULT_TOKEN``; only its
SHA-256 is held, compared in constant time). No access log: ids and tags are not personal data,
but nothing about a request needs to be written down either.

``POST /v1/issue``  {"keys": [{"id": "e:...", "tags": ["x|..."]}]}  ->  {"keys": {id: b64|null}}
``POST /v1/fetch``  {"ids": [...]}   ->  {"keys": {id: b64|null}}   (null: shredded; unknown ids
                                                                    are left out)
``POST /v1/shred``  {"ids": [...], "tags": [...]}  ->  {"shredded": n}
``GET  /health``    (no token)
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from aiohttp import web

from pipeline.exceptions import VaultError
from pipeline.vault.store import KeyStore

log = logging.getLogger("omnistitch.vault")

MAX_BODY_BYTES = 4 * 1024 * 1024


def _b64(key: bytes | None) -> str | None:
    return None if key is None else base64.b64encode(key).decode()


def _strings(value: Any, what: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise VaultError(f"{what} must be a list of strings")
    return value


def vault_app(store: KeyStore, token: str) -> web.Application:
    if len(token) < 16:
        raise VaultError("the vault token must have at least 16 characters")
    wanted = hashlib.sha256(token.encode()).digest()
    # One writer thread: issue and shred are ordered, RocksDB calls leave the event loop free.
    pool = ThreadPoolExecutor(1, thread_name_prefix="vault-store")

    @web.middleware
    async def guard(request: web.Request, handler: Any) -> web.StreamResponse:
        if request.path == "/health":
            response: web.StreamResponse = await handler(request)
            return response
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").encode()
        if not hmac.compare_digest(hashlib.sha256(given).digest(), wanted):
            return web.json_response({"error": "unauthorised"}, status=401)
        try:
            response = await handler(request)
            return response
        except VaultError as exc:
            return web.json_response({"error": str(exc)}, status=400)
        except (json.JSONDecodeError, UnicodeDecodeError, AttributeError, TypeError, KeyError):
            return web.json_response({"error": "the body is not the expected JSON"}, status=400)

    async def run(call: Any, *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(pool, call, *args)

    async def issue(request: web.Request) -> web.Response:
        body = await request.json()
        requests = [
            (str(item["id"]), _strings(item.get("tags", []), "tags")) for item in body["keys"]
        ]
        keys = await run(store.issue, requests)
        return web.json_response({"keys": {k: _b64(v) for k, v in keys.items()}})

    async def fetch(request: web.Request) -> web.Response:
        ids = _strings((await request.json())["ids"], "ids")
        keys = await run(store.fetch, ids)
        return web.json_response({"keys": {k: _b64(v) for k, v in keys.items()}})

    async def shred(request: web.Request) -> web.Response:
        body = await request.json()
        ids, tags = _strings(body.get("ids", []), "ids"), _strings(body.get("tags", []), "tags")
        shredded = await run(store.shred, ids, tags)
        log.info("vault: shredded %d keys (%d ids, %d tags asked)", shredded, len(ids), len(tags))
        return web.json_response({"shredded": shredded})

    async def health(_request: web.Request) -> web.Response:
        return web.json_response({"status": "ok"})

    async def closed(_app: web.Application) -> None:
        pool.shutdown(wait=True)
        store.close()

    app = web.Application(middlewares=[guard], client_max_size=MAX_BODY_BYTES)
    app.router.add_post("/v1/issue", issue)
    app.router.add_post("/v1/fetch", fetch)
    app.router.add_post("/v1/shred", shred)
    app.router.add_get("/health", health)
    app.on_cleanup.append(closed)
    return app


def serve(store: KeyStore, token: str, host: str, port: int) -> None:
    """Run until SIGTERM/SIGINT."""
    log.info("vault: serving on %s:%d", host, port)
    web.run_app(vault_app(store, token), host=host, port=port, access_log=None, print=None)
