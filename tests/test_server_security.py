"""Bearer tokens, TLS, mutual TLS and unix sockets (loopback / unix only, certificates
generated per test run)."""

from __future__ import annotations

import os
import stat

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from server_util import FakeModel, ServerThread, make_pki, test_config

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc
from edge_server.auth import TokenAuthInterceptor

pytestmark = pytest.mark.timeout(60)

TOKEN = "s3cret-robot-token"
REQ = pb.GenerateRequest(prompt="a bridge", width=64, height=64, steps=1)


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return make_pki(tmp_path_factory.mktemp("pki"))


def info(ch: grpc.Channel, **kw) -> pb.ModelInfo:
    return pb_grpc.ImageGenerationStub(ch).GetModelInfo(pb.GetModelInfoRequest(), timeout=5, **kw)


def code_of(fn) -> grpc.StatusCode:
    with pytest.raises(grpc.RpcError) as ei:
        fn()
    return ei.value.code()


def test_token_check_is_exact():
    it = TokenAuthInterceptor(["abc", "longer-token"])
    assert it.check([("authorization", "Bearer abc")])
    assert it.check([("authorization", "bearer longer-token")])
    assert it.check([("x", "y"), ("authorization", "Bearer  abc ")])
    for bad in ("Bearer ab", "Bearer abcd", "Basic abc", "abc", "Bearer ", ""):
        assert not it.check([("authorization", bad)]), bad
    assert not it.check([])
    assert not it.check(None)
    with pytest.raises(ValueError):
        TokenAuthInterceptor([])


def test_bearer_tokens_over_unix_and_loopback(tmp_path):
    sock = tmp_path / "g.sock"
    cfg = test_config(server={"listen": (f"unix:{sock}", "127.0.0.1:0"),
                              "unix_socket_mode": "600"},
                      auth={"tokens": (TOKEN, "other")})
    with ServerThread(cfg, FakeModel()) as st:
        assert stat.S_ISSOCK(os.stat(sock).st_mode)
        assert stat.S_IMODE(os.stat(sock).st_mode) == 0o600
        for target in (f"unix:{sock}", st.address):
            with grpc.insecure_channel(target) as ch:
                stub = pb_grpc.ImageGenerationStub(ch)
                assert code_of(lambda ch=ch: info(ch)) == grpc.StatusCode.UNAUTHENTICATED
                bad = [("authorization", "Bearer wrong")]
                assert code_of(lambda ch=ch, bad=bad: info(ch, metadata=bad)) == \
                    grpc.StatusCode.UNAUTHENTICATED
                with pytest.raises(grpc.RpcError) as ei:
                    list(stub.Generate(REQ, timeout=5))
                assert ei.value.code() == grpc.StatusCode.UNAUTHENTICATED
                good = [("authorization", f"Bearer {TOKEN}")]
                assert info(ch, metadata=good).name == "fake-qwen"
                rs = list(stub.Generate(REQ, timeout=5, metadata=good))
                assert rs[-1].HasField("done")
                # probes need no secret
                h = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=5)
                assert h.status == health_pb2.HealthCheckResponse.SERVING
    assert not sock.exists()  # removed on stop


def test_unix_socket_refuses_to_steal_a_live_socket(tmp_path):
    sock = tmp_path / "g.sock"
    cfg = test_config(server={"listen": (f"unix:{sock}",)})
    with ServerThread(cfg, FakeModel()), pytest.raises(OSError, match="another process"):
        ServerThread(cfg, FakeModel()).start()
    # a stale file left by a crash is replaced
    import socket

    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(sock))
    s.close()
    with ServerThread(cfg, FakeModel()) as st, grpc.insecure_channel(f"unix:{sock}") as ch:
        assert info(ch).name == "fake-qwen"
        assert st.server.ports == {f"unix:{sock}": 0}


def tls_channel(pki, port: int, *, ca=True, client_cert=False, token: str | None = None):
    root = pki["ca"].read_bytes() if ca else None
    key = pki["client_key"].read_bytes() if client_cert else None
    chain = pki["client_cert"].read_bytes() if client_cert else None
    creds = grpc.ssl_channel_credentials(root, key, chain)
    if token:
        creds = grpc.composite_channel_credentials(
            creds, grpc.access_token_call_credentials(token))
    return grpc.secure_channel(f"localhost:{port}", creds)


def test_tls_with_token(pki):
    cfg = test_config(tls={"cert_file": str(pki["server_cert"]),
                           "key_file": str(pki["server_key"])},
                      auth={"tokens": (TOKEN,)})
    with ServerThread(cfg, FakeModel()) as st:
        port = st.server.ports["127.0.0.1:0"]
        with tls_channel(pki, port, token=TOKEN) as ch:
            assert info(ch).name == "fake-qwen"
            rs = list(pb_grpc.ImageGenerationStub(ch).Generate(REQ, timeout=5))
            assert rs[-1].HasField("done")
        with tls_channel(pki, port) as ch:  # TLS but no token
            assert code_of(lambda: info(ch)) == grpc.StatusCode.UNAUTHENTICATED
        with tls_channel(pki, port, ca=False, token=TOKEN) as ch:  # unknown CA
            assert code_of(lambda: info(ch)) == grpc.StatusCode.UNAVAILABLE
        with grpc.insecure_channel(f"127.0.0.1:{port}") as ch:  # plaintext to a TLS port
            assert code_of(lambda: info(ch)) == grpc.StatusCode.UNAVAILABLE


def test_mutual_tls(pki):
    cfg = test_config(tls={"cert_file": str(pki["server_cert"]),
                           "key_file": str(pki["server_key"]),
                           "client_ca_file": str(pki["ca"]), "require_client_auth": True})
    with ServerThread(cfg, FakeModel()) as st:
        port = st.server.ports["127.0.0.1:0"]
        with tls_channel(pki, port, client_cert=True) as ch:
            assert info(ch).name == "fake-qwen"
        with tls_channel(pki, port, client_cert=False) as ch:
            assert code_of(lambda: info(ch)) == grpc.StatusCode.UNAVAILABLE
