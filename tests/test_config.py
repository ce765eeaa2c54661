"""Server configuration: TOML < environment < flags, validation messages naming the key."""

from __future__ import annotations

import pytest

from edge_server.config import (
    DEFAULT_LISTEN,
    Config,
    ConfigError,
    is_loopback,
    keys,
    load_config,
    parse_listen,
)


def write(tmp_path, text: str):
    p = tmp_path / "config.toml"
    p.write_text(text)
    return p


def test_defaults_are_local_only():
    cfg = load_config(env={}, overrides={"model.path": "/m"})
    assert cfg.server.listen == DEFAULT_LISTEN == ("127.0.0.1:50051",)
    assert all(parse_listen(a)[0] == "unix" or is_loopback(parse_listen(a)[1])
               for a in cfg.server.listen)
    assert cfg.server.max_concurrent == 1 and cfg.server.max_queue == 8
    assert cfg.metrics.port == 0 and not cfg.tls_enabled and cfg.auth.tokens == ()


def test_shorthands_and_the_demo_default(tmp_path):
    assert load_config(env={}).model.path == ""  # no model: the demo model is served
    p = write(tmp_path, 'model = "/models/q"\nlora = "/models/l.safetensors"\n'
                        '[server]\nmax_queue = 1\n')
    cfg = load_config(p, env={}, validate=False)
    assert (cfg.model.path, cfg.model.lora, cfg.server.max_queue) == (
        "/models/q", "/models/l.safetensors", 1)
    cfg = load_config(env={"QWEN_EDGE_MODEL": "/a", "QWEN_EDGE_LORA": "/b"}, validate=False)
    assert (cfg.model.path, cfg.model.lora) == ("/a", "/b")
    cfg = load_config(env={"QWEN_EDGE_MODEL": "/a", "QWEN_EDGE_MODEL_PATH": "/c"})
    assert cfg.model.path == "/c"  # the canonical name wins


def test_precedence_toml_env_flags(tmp_path):
    p = write(tmp_path, """
[model]
path = "/models/a"
threads = 4
[server]
listen = ["unix:/run/q.sock", "127.0.0.1:7000"]
max_queue = 3
grace_s = 5
unix_socket_mode = 0o600
[generation]
default_width = 512
""")
    env = {"QWEN_EDGE_SERVER_MAX_QUEUE": "5", "QWEN_EDGE_MODEL_THREADS": "2",
           "QWEN_EDGE_SERVER_REFLECTION": "off"}
    cfg = load_config(p, env=env, overrides={"model.threads": 1, "server.grace_s": None})
    assert cfg.model.path == "/models/a"
    assert cfg.server.listen == ("unix:/run/q.sock", "127.0.0.1:7000")
    assert cfg.server.max_queue == 5  # env over TOML
    assert cfg.model.threads == 1  # flag over env
    assert cfg.server.grace_s == 5.0  # None flags are ignored
    assert cfg.server.reflection is False
    assert cfg.unix_socket_mode == 0o600
    assert cfg.generation.default_width == 512 and cfg.generation.default_height == 1024


def test_config_file_from_env_and_list_env(tmp_path):
    p = write(tmp_path, '[model]\npath = "/m"\n')
    cfg = load_config(env={"QWEN_EDGE_CONFIG": str(p),
                           "QWEN_EDGE_SERVER_LISTEN": "unix:/a.sock, [::1]:9000"})
    assert cfg.server.listen == ("unix:/a.sock", "[::1]:9000")


def test_paths_expand_variables(tmp_path, monkeypatch):
    monkeypatch.setenv("RUNTIME_DIRECTORY", "/run/qwen-edge")
    monkeypatch.setenv("MODELS", str(tmp_path))
    cfg = load_config(env={}, overrides={"model.path": "${MODELS}/q",
                                         "server.listen": ("unix:${RUNTIME_DIRECTORY}/g.sock",)})
    assert cfg.model.path == f"{tmp_path}/q"
    assert cfg.server.listen == ("unix:/run/qwen-edge/g.sock",)


def test_tokens_from_file_and_env_not_from_toml(tmp_path):
    tf = tmp_path / "tokens"
    tf.write_text("# robots\nalpha-1\n\nbeta-2  # second\nalpha-1\n")
    cfg = load_config(env={"QWEN_EDGE_AUTH_TOKENS": "gamma-3, delta-4"},
                      overrides={"model.path": "/m", "auth.token_file": str(tf)})
    assert cfg.auth.tokens == ("alpha-1", "beta-2", "gamma-3", "delta-4")
    p = write(tmp_path, '[model]\npath = "/m"\n[auth]\ntokens = ["x"]\n')
    with pytest.raises(ConfigError, match=r"unknown key auth\.tokens"):
        load_config(p, env={})


def test_a_token_file_without_tokens_is_an_error(tmp_path):
    """Fail closed: an empty (or comments-only) token file must not start an open server."""
    tf = tmp_path / "tokens"
    for text in ("", "# tokens go here\n\n   \n"):
        tf.write_text(text)
        with pytest.raises(ConfigError, match=r"auth\.token_file .* holds no token"):
            load_config(env={}, overrides={"model.path": "/m", "auth.token_file": str(tf),
                                           "server.listen": ("0.0.0.0:50051",)})


ERRORS = [
    ({"server.listen": ("nonsense",)}, "server.listen"),
    ({"server.listen": ("127.0.0.1:99999",)}, "0..65535"),
    ({"server.listen": ()}, "server.listen needs at least one"),
    ({"server.max_queue": -1}, "server.max_queue"),
    ({"server.max_concurrent": 0}, "server.max_concurrent"),
    ({"server.grace_s": float("nan")}, "server.grace_s"),
    ({"server.unix_socket_mode": "999"}, "server.unix_socket_mode"),
    ({"server.log_format": "xml"}, "server.log_format"),
    ({"generation.default_width": 100}, "generation.default_width"),
    ({"generation.output_quality": 0}, "generation.output_quality"),
    ({"tls.cert_file": "/c.pem"}, "tls.cert_file and tls.key_file"),
    ({"tls.require_client_auth": True}, "tls.require_client_auth needs"),
    ({"metrics.port": 70000}, "metrics.port"),
]


@pytest.mark.parametrize("overrides,message", ERRORS, ids=[e[1] for e in ERRORS])
def test_validation_names_the_key(overrides, message):
    base = {"model.path": "/m"}
    with pytest.raises(ConfigError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_config(env={}, overrides={**base, **overrides})


def test_type_errors_name_the_key_and_source(tmp_path):
    msg = r"server\.max_queue \(from \$QWEN_EDGE_SERVER_MAX_QUEUE\)"
    with pytest.raises(ConfigError, match=msg):
        load_config(env={"QWEN_EDGE_SERVER_MAX_QUEUE": "many"}, overrides={"model.path": "/m"})
    p = write(tmp_path, '[model]\npath = 3\n')
    with pytest.raises(ConfigError, match=r"model\.path .* expected a string"):
        load_config(p, env={})
    p = write(tmp_path, '[server]\nlisten_addr = "x"\n')
    with pytest.raises(ConfigError, match=r"unknown key server\.listen_addr .*listen"):
        load_config(p, env={})
    p = write(tmp_path, '[sever]\nx = 1\n')
    with pytest.raises(ConfigError, match=r"unknown section \[sever\]"):
        load_config(p, env={})
    p = write(tmp_path, '[model\n')
    with pytest.raises(ConfigError, match="config file"):
        load_config(p, env={})
    with pytest.raises(ConfigError, match=r"cannot read|No such file"):
        load_config(tmp_path / "missing.toml", env={})
    with pytest.raises(ConfigError, match="unknown configuration key"):
        load_config(env={}, overrides={"model.path": "/m", "server.nope": 1})


def test_tls_files_must_be_readable(tmp_path):
    with pytest.raises(ConfigError, match=r"tls\.cert_file: cannot read"):
        load_config(env={}, overrides={"model.path": "/m", "server.listen": ("127.0.0.1:1",),
                                       "tls.cert_file": str(tmp_path / "c"),
                                       "tls.key_file": str(tmp_path / "k")})


def test_tokens_over_plaintext_network_are_refused(tmp_path):
    env = {"QWEN_EDGE_AUTH_TOKENS": "t0ken"}
    ok_local = load_config(env=env, overrides={
        "model.path": "/m", "server.listen": ("unix:/tmp/x.sock", "127.0.0.1:1", "[::1]:2")})
    assert ok_local.auth.tokens == ("t0ken",)
    with pytest.raises(ConfigError, match="clear text"):
        load_config(env=env, overrides={"model.path": "/m", "server.listen": ("0.0.0.0:50051",)})
    cfg = load_config(env=env, overrides={"model.path": "/m", "server.listen": ("0.0.0.0:50051",),
                                          "auth.allow_insecure_tokens": True})
    assert cfg.auth.allow_insecure_tokens
    with pytest.raises(ConfigError, match="whitespace"):
        Config().replace(model={"path": "/m"}, auth={"tokens": ("a b",)}).validate()


def test_parse_listen_and_loopback():
    assert parse_listen("unix:/run/a.sock") == ("unix", "/run/a.sock", 0)
    assert parse_listen("unix:///run/a.sock") == ("unix", "/run/a.sock", 0)
    assert parse_listen("[::1]:50051") == ("tcp", "::1", 50051)
    assert parse_listen("localhost:0") == ("tcp", "localhost", 0)
    for host, want in [("127.0.0.1", True), ("127.8.9.1", True), ("::1", True),
                       ("localhost", True), ("0.0.0.0", False), ("192.168.1.4", False),
                       ("example.com", False), ("::", False)]:
        assert is_loopback(host) is want, host


def test_every_key_has_an_env_form():
    names = {k: "QWEN_EDGE_" + k.replace(".", "_").upper() for k in keys()}
    assert names["server.max_queue"] == "QWEN_EDGE_SERVER_MAX_QUEUE"
    assert names["tls.client_ca_file"] == "QWEN_EDGE_TLS_CLIENT_CA_FILE"
