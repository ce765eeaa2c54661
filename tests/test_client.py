"""`qwen-edge generate` (edge_server.client) against an in-process server with a fake model."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image
from server_util import FakeModel, ServerThread, env, fake_image, make_pki, test_config

from edge_server.cli import main
from edge_server.client import (
    ClientError,
    bar,
    fmt_eta,
    is_local_target,
    make_channel,
    output_paths,
    parse_size,
    with_png_metadata,
)

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def server():
    with ServerThread(test_config(), FakeModel(step_s=0.005)) as st:
        yield st


def run(capsys, *argv: str) -> tuple[int, str]:
    rc = main(["generate", *argv])
    return rc, capsys.readouterr().err


def test_generate_writes_png_with_parameters_and_previews(server, tmp_path, capsys):
    out = tmp_path / "a" / "cat.png"
    rc, err = run(capsys, "a cat", "--server", server.address, "-o", str(out), "--seed", "42",
                  "--steps", "5", "--size", "128x64", "--previews", str(tmp_path / "pv"))
    assert rc == 0, err
    assert "started: 128x64, 5 steps, seed 42" in err and "step 5/5" in err
    assert "ETA" in err and "sigma" in err and f"wrote {out}" in err
    img = Image.open(out)
    assert img.size == (128, 64)
    np.testing.assert_array_equal(np.asarray(img), np.asarray(fake_image(42, 128, 64)))
    assert img.text["prompt"] == "a cat" and img.text["seed"] == "42"
    assert img.text["steps"] == "5" and img.text["model"] == "fake-qwen"
    previews = sorted(p.name for p in (tmp_path / "pv").iterdir())
    assert previews and all(p.startswith("img0-step") and p.endswith(".jpg") for p in previews)
    assert "img0-step005.jpg" in previews  # the last step always has one


def test_several_images_formats_and_raw_latents(server, tmp_path, capsys):
    rc, err = run(capsys, "x", "--server", server.address, "-o", str(tmp_path / "o.jpg"),
                  "-n", "2", "--seed", "3", "--steps", "2", "--size", "64x64", "--previews",
                  str(tmp_path / "pv"), "--preview-format", "raw_latent", "-q")
    assert rc == 0 and err == ""
    assert [Image.open(p).format for p in output_paths(tmp_path / "o.jpg", 2)] == ["JPEG"] * 2
    lat = np.load(tmp_path / "pv" / "img1-step002.npy")
    assert lat.shape == (16, 8, 8) and lat.dtype == np.float16
    rc, _ = run(capsys, "x", "--server", server.address, "-o", str(tmp_path / "o.rgb"),
                "--size", "64x80", "--seed", "9", "-q")
    raw = (tmp_path / "o.rgb").read_bytes()
    assert rc == 0 and raw == np.asarray(fake_image(9, 64, 80)).tobytes()


def test_errors_are_reported_with_fields(server, tmp_path, capsys):
    rc, err = run(capsys, "x", "--server", server.address, "-o", str(tmp_path / "o.png"),
                  "--size", "100x64", "--steps", "999")
    assert rc == 1
    assert "INVALID_ARGUMENT" in err and "width: 100" in err and "steps: 999" in err
    rc, err = run(capsys, "x", "--server", server.address, "-o", str(tmp_path / "o.tiff"))
    assert rc == 2 and "format" in err
    rc, err = run(capsys, "x", "--server", server.address, "--size", "big")
    assert rc == 2 and "WIDTHxHEIGHT" in err
    rc, err = run(capsys, "x", "--server", "unix:/nonexistent/q.sock", "--timeout", "2",
                  "-o", str(tmp_path / "o.png"))
    assert rc == 1 and "UNAVAILABLE" in err


def test_tokens_tls_and_the_plaintext_refusal(tmp_path, capsys):
    pki = make_pki(tmp_path)
    tf = tmp_path / "token"
    tf.write_text("# robot\nrobot-token\n")
    cfg = test_config(server={"listen": ("127.0.0.1:0", f"unix:{tmp_path}/g.sock")},
                      tls={"cert_file": str(pki["server_cert"]),
                           "key_file": str(pki["server_key"])},
                      auth={"tokens": ("robot-token",)})
    with ServerThread(cfg, FakeModel(step_s=0.001)) as st:
        port = st.server.ports["127.0.0.1:0"]
        tls = ["--server", f"localhost:{port}", "--ca", str(pki["ca"]), "--steps", "1",
               "--size", "64x64", "-q"]
        rc, err = run(capsys, "x", *tls, "-o", str(tmp_path / "a.png"), "--token-file", str(tf))
        assert rc == 0, err
        rc, err = run(capsys, "x", *tls, "-o", str(tmp_path / "b.png"))
        assert rc == 1 and "UNAUTHENTICATED" in err
        with env(QWEN_EDGE_TOKEN="robot-token"):  # plaintext is fine on a unix socket
            rc, err = run(capsys, "x", "--server", f"unix:{tmp_path}/g.sock", "--steps", "1",
                          "--size", "64x64", "-q", "-o", str(tmp_path / "c.png"))
        assert rc == 0, err
    rc, err = run(capsys, "x", "--server", "10.11.12.13:50051", "--token-file", str(tf))
    assert rc == 2 and "refusing to send the bearer token" in err


def test_helpers():
    assert parse_size("1024x768") == (1024, 768) and parse_size("64X64") == (64, 64)
    with pytest.raises(ClientError):
        parse_size("1024")
    for t in ("unix:/run/q.sock", "127.0.0.1:1", "localhost:50051", "[::1]:5", "dns:///localhost:1"):
        assert is_local_target(t), t
    for t in ("10.0.0.2:1", "robot.local:50051", "[2001:db8::1]:5"):
        assert not is_local_target(t), t
    with pytest.raises(ClientError, match="clear text"):
        make_channel("192.168.0.9:50051", token="t")
    ch, md = make_channel("192.168.0.9:50051", token="t", allow_insecure_token=True)
    assert md == [("authorization", "Bearer t")]
    ch.close()
    with pytest.raises(ClientError, match="go together"):
        make_channel("localhost:1", cert_file="c.pem")
    assert bar(5, 10, width=10) == "[#####-----]  50%"
    assert fmt_eta(3.25) == "3.2s" and fmt_eta(125) == "2m05s"
    assert output_paths(__import__("pathlib").Path("d/o.png"), 2)[1].name == "o-1.png"


def test_png_metadata_is_added_when_the_server_sent_none():
    buf = io.BytesIO()
    fake_image(1, 16, 16).save(buf, "PNG")
    plain = buf.getvalue()
    tagged = with_png_metadata(plain, {"prompt": "p", "seed": "1", "steps": "4", "model": "m"})
    img = Image.open(io.BytesIO(tagged))
    assert img.text == {"prompt": "p", "seed": "1", "steps": "4", "model": "m"}
    np.testing.assert_array_equal(np.asarray(img), np.asarray(fake_image(1, 16, 16)))
    assert with_png_metadata(tagged, {"prompt": "p"}) == tagged  # already there: untouched
