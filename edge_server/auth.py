"""Bearer-token authentication: a grpc.aio server interceptor.

Clients send `authorization: Bearer <token>` metadata (grpc.access_token_call_credentials on a
TLS channel, or plain metadata on a unix socket / loopback). Tokens come from auth.token_file
and/or QWEN_EDGE_AUTH_TOKENS (see config.py). The comparison hashes both sides with SHA-256 and
compares the digests with hmac.compare_digest against every configured token without stopping at
a match, so neither the token's content nor its length leaks through timing. Failures answer
UNAUTHENTICATED (with a `www-authenticate: Bearer` trailer) before the handler runs.

The plaintext-network refusal lives in config validation: the server does not start with
tokens on a non-loopback TCP listener without TLS unless auth.allow_insecure_tokens is set.
grpc.health.v1 is exempt by default (auth.exempt_health) so probes need no secret.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Awaitable, Callable, Iterable
from typing import Any

import grpc

log = logging.getLogger(__name__)

HEALTH_METHODS = frozenset({"/grpc.health.v1.Health/Check", "/grpc.health.v1.Health/Watch"})


def _digest(token: str | bytes) -> bytes:
    raw = token.encode("utf-8") if isinstance(token, str) else token
    return hashlib.sha256(raw).digest()


class TokenAuthInterceptor(grpc.aio.ServerInterceptor):
    """Rejects calls without a valid bearer token (except `exempt` full method names)."""

    def __init__(self, tokens: Iterable[str], exempt: Iterable[str] = HEALTH_METHODS) -> None:
        self._digests = tuple(_digest(t) for t in tokens)
        if not self._digests:
            raise ValueError("TokenAuthInterceptor needs at least one token")
        self._exempt = frozenset(exempt)

    def check(self, metadata: Iterable[tuple[str, Any]] | None) -> bool:
        """True when the metadata carries a configured bearer token."""
        value = None
        for key, v in metadata or ():
            if key == "authorization":
                value = v
                break
        if value is None:
            return False
        if isinstance(value, bytes):
            value = value.decode("utf-8", "replace")
        scheme, _, token = value.strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            return False
        got = _digest(token.strip())
        ok = False
        for d in self._digests:  # no early exit
            ok |= hmac.compare_digest(got, d)
        return ok

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        handler_call_details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler:
        method = handler_call_details.method
        if method in self._exempt or self.check(handler_call_details.invocation_metadata):
            return await continuation(handler_call_details)
        log.info("unauthenticated call rejected", extra={"kv": {"method": method}})
        handler = await continuation(handler_call_details)
        return _deny(handler)


async def _abort(context: grpc.aio.ServicerContext) -> None:
    context.set_trailing_metadata((("www-authenticate", "Bearer"),))
    await context.abort(grpc.StatusCode.UNAUTHENTICATED, "missing or invalid bearer token")


def _deny(handler: grpc.RpcMethodHandler | None) -> grpc.RpcMethodHandler:
    """A handler of the same shape as `handler` that answers UNAUTHENTICATED."""

    async def unary(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _abort(context)

    async def stream(request: Any, context: grpc.aio.ServicerContext) -> Any:
        await _abort(context)
        yield  # pragma: no cover (makes this an async generator)

    if handler is None:  # unknown method: let gRPC answer UNIMPLEMENTED... after auth
        return grpc.unary_unary_rpc_method_handler(unary)
    des, ser = handler.request_deserializer, handler.response_serializer
    if handler.unary_stream:
        return grpc.unary_stream_rpc_method_handler(stream, des, ser)
    if handler.stream_unary:
        return grpc.stream_unary_rpc_method_handler(unary, des, ser)
    if handler.stream_stream:
        return grpc.stream_stream_rpc_method_handler(stream, des, ser)
    return grpc.unary_unary_rpc_method_handler(unary, des, ser)
