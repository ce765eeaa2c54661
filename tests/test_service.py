"""The gRPC service on an in-process grpc.aio server (its own loop thread) with a fake model
that honours the engine's contract (per-step callback, CancelToken polled per "block")."""

from __future__ import annotations

import io
import threading
import time

import grpc
import numpy as np
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from PIL import Image
from server_util import (
    FakeModel,
    ServerThread,
    bad_requests,
    event_kinds,
    fake_image,
    status_details,
    test_config,
)

from edge_server import _engine
from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc
from edge_server.engine import INLINE_PREVIEW_PIXELS
from edge_server.pipeline import SizeLimits
from edge_server.server import max_request_bytes
from edge_server.service import CHUNK_BYTES, SERVICE_NAME

pytestmark = pytest.mark.timeout(60)


def stub_for(st: ServerThread) -> tuple[grpc.Channel, pb_grpc.ImageGenerationStub]:
    ch = grpc.insecure_channel(st.address)
    return ch, pb_grpc.ImageGenerationStub(ch)


def req(**kw) -> pb.GenerateRequest:
    kw.setdefault("prompt", "a lighthouse at dusk")
    kw.setdefault("width", 64)
    kw.setdefault("height", 64)
    return pb.GenerateRequest(**kw)


def wait_until(pred, timeout=5.0, interval=0.005) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if pred():
            return True
        time.sleep(interval)
    return pred()


def _refused(call, reason: str):
    """The RpcError of a call refused with RESOURCE_EXHAUSTED before any response message, and
    its ErrorInfo (whose reason must be `reason`)."""
    got = []
    with pytest.raises(grpc.RpcError) as ei:
        for m in call:
            got.append(m)
    assert got == []  # refused before any response message
    e = ei.value
    assert e.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, e
    info = next(x for x in status_details(e) if x.DESCRIPTOR.name == "ErrorInfo")
    assert info.reason == reason
    return e, info


def health(ch: grpc.Channel, service: str = SERVICE_NAME) -> int:
    return health_pb2_grpc.HealthStub(ch).Check(
        health_pb2.HealthCheckRequest(service=service), timeout=5).status


@pytest.fixture(scope="module")
def shared():
    """One server for the read-only cases (validation, info, event order)."""
    model = FakeModel(step_s=0.002, limits=SizeLimits(max_steps=50, max_images=4,
                                                      max_pixels=1024 * 1024))
    cfg = test_config(generation={"max_prompt_chars": 200})
    with ServerThread(cfg, model) as st:
        ch, stub = stub_for(st)
        yield st, stub, model
        ch.close()


# ---- event order and payloads ------------------------------------------------------------


def test_event_order_and_done(shared):
    _st, stub, model = shared
    rs = list(stub.Generate(req(steps=5, seed=11, request_id="r-1"), timeout=10))
    kinds = event_kinds(rs)
    assert kinds[:2] == ["queued", "started"]
    assert kinds[2:7] == ["step"] * 5
    assert kinds[7:-1] and set(kinds[7:-1]) == {"image_chunk"}
    assert kinds[-1] == "done"
    assert all(r.request_id == "r-1" for r in rs)
    assert rs[0].queued.position == 0
    s = rs[1].started
    assert (s.seed, s.width, s.height, s.steps, s.num_images) == (11, 64, 64, 5, 1)
    assert [r.step.step for r in rs[2:7]] == [1, 2, 3, 4, 5]
    assert all(r.step.total_steps == 5 for r in rs[2:7])
    sig = [r.step.sigma for r in rs[2:7]]
    assert sig == sorted(sig, reverse=True)
    d = rs[-1].done
    assert list(d.seeds) == [11] and d.steps == 5 and d.num_images == 1
    assert len(d.timings.step_ms) == 5 and d.timings.engine_ms > 0
    assert d.timings.total_ms >= d.timings.engine_ms
    assert not d.prompt_truncated
    assert model.calls[-1]["seed"] == 11 and model.calls[-1]["steps"] == 5


def test_defaults_and_multiple_images(shared):
    _st, stub, model = shared
    rs = list(stub.Generate(req(num_images=2, seed=7), timeout=10))
    steps = [r.step for r in rs if r.HasField("step")]
    n = model.default_steps
    assert [(s.image_index, s.step) for s in steps] == [(i, k) for i in (0, 1)
                                                         for k in range(1, n + 1)]
    chunks = [r.image_chunk for r in rs if r.HasField("image_chunk")]
    assert {c.image_index: c.seed for c in chunks} == {0: 7, 1: 8}
    for i in (0, 1):  # each image's own seed in its PNG text
        img = Image.open(io.BytesIO(b"".join(c.data for c in chunks if c.image_index == i)))
        assert img.text["seed"] == str(7 + i) and f"Seed: {7 + i}" in img.text["parameters"]
    assert list(rs[-1].done.seeds) == [7, 8]
    call = model.calls[-1]
    assert call["true_cfg_scale"] == 1.0 and call["negative_prompt"] is None
    rs = list(stub.Generate(req(negative_prompt="blurry"), timeout=10))
    assert model.calls[-1]["true_cfg_scale"] == 4.0  # diffusers' default once a negative exists
    assert model.calls[-1]["negative_prompt"] == "blurry"
    assert rs[1].started.seed < 2**63  # random when unset, reported


def test_started_reports_the_cfg_applied_and_the_largest_seed(shared):
    _st, stub, model = shared
    rs = list(stub.Generate(req(true_cfg_scale=7.0), timeout=10))  # no negative: no guidance
    assert rs[1].started.true_cfg_scale == 1.0 and model.calls[-1]["true_cfg_scale"] == 1.0
    rs = list(stub.Generate(req(true_cfg_scale=7.0, negative_prompt="blurry"), timeout=10))
    assert rs[1].started.true_cfg_scale == 7.0
    rs = list(stub.Generate(req(seed=2**64 - 1), timeout=10))  # one image: seed 2^64 - 1 fits
    assert rs[1].started.seed == 2**64 - 1 and list(rs[-1].done.seeds) == [2**64 - 1]


def test_work_units_count_both_passes_of_true_cfg():
    from edge_server.engine import GenerateJob

    plain = GenerateJob(prompt="x", width=512, height=512, steps=4, seed=0)
    cfg = GenerateJob(prompt="x", width=512, height=512, steps=4, seed=0,
                      negative_prompt="blurry", true_cfg_scale=4.0)
    assert plain.work_units == 5 * 0.25 and cfg.work_units == 9 * 0.25


def test_chunks_reassemble_to_the_engine_image(shared):
    _st, stub, _model = shared
    w, h = 1024, 768  # RAW_RGB8: 2.25 MiB -> three chunks of <= 1 MiB
    rs = list(stub.Generate(req(width=w, height=h, steps=1, seed=5,
                                output_format=pb.IMAGE_FORMAT_RAW_RGB8), timeout=20))
    chunks = [r.image_chunk for r in rs if r.HasField("image_chunk")]
    assert len(chunks) == 3 and all(len(c.data) <= CHUNK_BYTES for c in chunks)
    assert [c.last for c in chunks] == [False, False, True]
    assert [c.offset for c in chunks] == [0, CHUNK_BYTES, 2 * CHUNK_BYTES]
    data = b"".join(c.data for c in chunks)
    assert len(data) == chunks[-1].total_size == w * h * 3
    assert (chunks[0].width, chunks[0].height) == (w, h)
    got = np.frombuffer(data, np.uint8).reshape(h, w, 3)
    np.testing.assert_array_equal(got, np.asarray(fake_image(5, w, h)))


def test_request_id_made_when_empty(shared):
    _st, stub, _model = shared
    ids = []
    for _ in range(2):
        rs = list(stub.Generate(req(), timeout=10))
        assert len({r.request_id for r in rs}) == 1
        ids.append(rs[0].request_id)
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids) and ids[0] != ids[1]


def test_png_output_has_parameters(shared):
    _st, stub, _model = shared
    rs = list(stub.Generate(req(seed=99, steps=3, prompt="ünïcode prompt"), timeout=10))
    data = b"".join(r.image_chunk.data for r in rs if r.HasField("image_chunk"))
    img = Image.open(io.BytesIO(data))
    assert img.format == "PNG"
    np.testing.assert_array_equal(np.asarray(img), np.asarray(fake_image(99, 64, 64)))
    assert img.text["prompt"] == "ünïcode prompt"
    assert img.text["seed"] == "99" and img.text["steps"] == "3"
    assert img.text["model"] == "fake-qwen"
    assert "Seed: 99" in img.text["parameters"]


@pytest.mark.parametrize("fmt,pil",
                         [(pb.IMAGE_FORMAT_JPEG, "JPEG"), (pb.IMAGE_FORMAT_WEBP, "WEBP")])
def test_lossy_output_formats(shared, fmt, pil):
    _st, stub, _model = shared
    rs = list(stub.Generate(req(steps=1, output_format=fmt, output_quality=70), timeout=10))
    data = b"".join(r.image_chunk.data for r in rs if r.HasField("image_chunk"))
    assert Image.open(io.BytesIO(data)).format == pil
    assert rs[-2].image_chunk.format == fmt


def test_previews_encoded_and_raw_latent(shared):
    st, stub, _model = shared
    st.model.step_s = 0.03  # slow enough that no preview is superseded
    try:
        rs = list(stub.Generate(req(width=256, height=128, steps=4, preview=pb.PreviewOptions(
            format=pb.PREVIEW_FORMAT_PNG, every_n_steps=2)), timeout=10))
        steps = [r.step for r in rs if r.HasField("step")]
        with_img = [s for s in steps if s.preview_image]
        assert [s.step for s in with_img] == [2, 4]
        s = with_img[0]
        assert s.preview_format == pb.PREVIEW_FORMAT_PNG
        im = Image.open(io.BytesIO(s.preview_image))
        assert im.size == (s.preview_width, s.preview_height) == (32, 16)  # latent size
        assert rs[-1].done.previews_sent == 2

        rs = list(stub.Generate(req(width=128, height=64, steps=2, preview=pb.PreviewOptions(
            format=pb.PREVIEW_FORMAT_RAW_LATENT)), timeout=10))
        steps = [r.step for r in rs if r.HasField("step")]
        assert all(list(s.latent_shape) == [16, 8, 16] for s in steps)
        x0 = np.frombuffer(steps[-1].raw_latent, "<f2").reshape(16, 8, 16)
        np.testing.assert_allclose(x0, 1.0)  # the fake's x0 at the last step

        rs = list(stub.Generate(req(width=512, height=512, steps=1, preview=pb.PreviewOptions(
            format=pb.PREVIEW_FORMAT_JPEG, max_side=40)), timeout=10))
        s = next(r.step for r in rs if r.HasField("step"))
        assert max(s.preview_width, s.preview_height) == 40
        # a latent over INLINE_PREVIEW_PIXELS is encoded on an encode thread: same result
        rs = list(stub.Generate(req(width=1024, height=768, steps=1, preview=pb.PreviewOptions(
            format=pb.PREVIEW_FORMAT_PNG)), timeout=10))
        s = next(r.step for r in rs if r.HasField("step"))
        assert INLINE_PREVIEW_PIXELS < 128 * 96
        assert Image.open(io.BytesIO(s.preview_image)).size == (128, 96)
    finally:
        st.model.step_s = 0.002


def test_model_info(shared):
    _st, stub, model = shared
    info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    assert info.name == "fake-qwen" and info.path == model.path
    assert info.default_steps == model.default_steps
    assert info.limits.max_steps == 50 and info.limits.multiple == 16
    assert info.limits.max_pixels == 1024 * 1024 and info.limits.max_prompt_chars == 200
    comps = {c.name: c for c in info.components}
    assert comps["transformer"].present and comps["transformer"].dtype == "f32"
    assert comps["text_encoder"].dtype == "bf16"
    assert info.isa == "fake" and info.version and info.engine_version == _engine.version()
    assert info.max_concurrent == 1 and info.max_queue == 8
    assert pb.PREVIEW_FORMAT_RAW_LATENT in info.preview_formats
    assert info.backend == "cpu" and info.threads == model.threads
    assert not info.HasField("lora")


def test_model_info_reports_the_lora():
    model = FakeModel(lora="/models/Qwen-Image-Lightning-4steps.safetensors", lora_scale=0.75,
                      threads=3)
    model.is_lightning = True  # type: ignore[attr-defined]
    with ServerThread(test_config(), model) as st:
        ch, stub = stub_for(st)
        with ch:
            info = stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)
    assert info.lora.path == model.lora and info.lora.scale == 0.75 and info.lora.lightning
    assert info.threads == 3


# ---- validation --------------------------------------------------------------------------

BAD = bad_requests(SizeLimits(max_steps=50, max_images=4, max_pixels=1024 * 1024),
                   max_prompt_chars=200)


@pytest.mark.parametrize("name,fields,field", BAD, ids=[b[0] for b in BAD])
def test_invalid_argument_names_the_field(shared, name, fields, field):
    _st, stub, model = shared
    n_calls = len(model.calls)
    call = stub.Generate(req(**fields), timeout=5)
    with pytest.raises(grpc.RpcError) as ei:
        next(call)  # no message before the status
    e = ei.value
    assert e.code() == grpc.StatusCode.INVALID_ARGUMENT
    (bad,) = [d for d in status_details(e) if d.DESCRIPTOR.name == "BadRequest"]
    violations = {v.field: v.description for v in bad.field_violations}
    assert field in violations, violations
    assert any(ch.isdigit() for ch in violations[field]) or "empty" in violations[field]
    assert len(model.calls) == n_calls  # the engine never saw it


def test_the_longest_prompts_reach_validation():
    """gRPC's receive limit leaves room for every prompt validation could take, so a prompt
    one character too long is INVALID_ARGUMENT naming the field even when it is over 4 MiB of
    UTF-8; only messages beyond that room are refused by gRPC itself (RESOURCE_EXHAUSTED)."""
    cfg = test_config(generation={"max_prompt_chars": 1_000_000})
    assert max_request_bytes(cfg) == 8_000_000 + (64 << 10)
    model = FakeModel(step_s=0.001)
    with ServerThread(cfg, model) as st:
        ch, stub = stub_for(st)
        with ch:
            long = "\U0001F600" * 1_100_000  # 4.4 MB of UTF-8: over a fixed 4 MiB limit
            with pytest.raises(grpc.RpcError) as ei:
                next(stub.Generate(req(prompt=long), timeout=30))
            assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            (bad,) = [d for d in status_details(ei.value) if d.DESCRIPTOR.name == "BadRequest"]
            assert [v.field for v in bad.field_violations] == ["prompt"]
            with pytest.raises(grpc.RpcError) as ei:
                next(stub.Generate(req(prompt="x" * 9_000_000), timeout=30))
            assert ei.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            assert not model.calls


@pytest.mark.parametrize("data,field", [
    (b"\x0a\x04\xff cat", "prompt"),                 # field 1, not UTF-8
    (b"\x0a\x01x\x12\x02\xed\xa0", "negative_prompt"),  # a UTF-16 surrogate
    (b"\x0a\x01x\x62\x03\xc0\x80x", "request_id"),     # an overlong NUL
    (b"\xff\xff\xff\xff", "request"),               # a varint that never ends
    (b"\x0a\x10abc", "request"),                     # a length past the end
], ids=["prompt", "negative", "request-id", "varint", "length"])
def test_malformed_request_bytes_are_invalid_argument(shared, data, field):
    """gRPC answers UNKNOWN when the deserializer raises; these must be INVALID_ARGUMENT with
    the field named (or "request" when the bytes do not parse at all)."""
    st, _stub, model = shared
    n_calls = len(model.calls)
    with grpc.insecure_channel(st.address) as ch:
        call = ch.unary_stream(f"/{SERVICE_NAME}/Generate", request_serializer=None,
                               response_deserializer=pb.GenerateResponse.FromString)
        with pytest.raises(grpc.RpcError) as ei:
            next(call(data, timeout=5))
        e = ei.value
        assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, e.details()
        (bad,) = [d for d in status_details(e) if d.DESCRIPTOR.name == "BadRequest"]
        assert [v.field for v in bad.field_violations] == [field]
        info = ch.unary_unary(f"/{SERVICE_NAME}/GetModelInfo", request_serializer=None,
                              response_deserializer=pb.ModelInfo.FromString)
        with pytest.raises(grpc.RpcError) as ei:
            info(b"\xff\xff", timeout=5)
        assert ei.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert len(model.calls) == n_calls


def test_every_bad_field_is_reported_at_once(shared):
    _st, stub, _model = shared
    with pytest.raises(grpc.RpcError) as ei:
        list(stub.Generate(req(prompt="", width=65, steps=999), timeout=5))
    (bad,) = [d for d in status_details(ei.value) if d.DESCRIPTOR.name == "BadRequest"]
    assert [v.field for v in bad.field_violations] == ["prompt", "width", "steps"]
    assert "[64, 2048]" in bad.field_violations[1].description


def test_bad_requests_do_not_disturb_a_running_generation(shared):
    st, stub, _model = shared
    st.model.step_s = 0.02
    try:
        good = stub.Generate(req(steps=10, seed=1), timeout=10)
        first = next(good)
        for _name, fields, _f in BAD[:8]:
            with pytest.raises(grpc.RpcError):
                list(stub.Generate(req(**fields), timeout=5))
        rest = list(good)
        assert first.HasField("queued") and rest[-1].HasField("done")
        assert event_kinds(rest).count("step") == 10
    finally:
        st.model.step_s = 0.002


# ---- queueing, overload, cancellation ----------------------------------------------------


def test_queue_positions_and_overload_rejection():
    model = FakeModel(step_s=0.05)
    cfg = test_config(server={"max_queue": 2})
    with ServerThread(cfg, model) as st:
        ch, stub = stub_for(st)
        a = stub.Generate(req(steps=8), timeout=20)
        assert next(a).queued.position == 0
        assert next(a).HasField("started")
        b = stub.Generate(req(steps=1), timeout=20)
        c = stub.Generate(req(steps=1), timeout=20)
        assert next(b).queued.position == 1
        qc = next(c).queued
        assert (qc.position, qc.queue_depth) == (2, 2)
        e, info = _refused(stub.Generate(req(steps=1), timeout=20), "QUEUE_FULL")
        details = status_details(e)
        assert info.metadata["max_queue"] == "2"
        assert any(x.DESCRIPTOR.name == "RetryInfo" for x in details)
        # c moves up once a finishes and b starts
        list(a)
        rest_c = list(c)
        assert rest_c[0].queued.position == 1
        assert event_kinds(rest_c)[1:3] == ["started", "step"]
        assert list(b)[-1].HasField("done")
        assert model.max_active == 1  # single flight
        assert st.server.metrics.value("qwen_edge_generations_total", {"outcome": "rejected"}) == 1
        ch.close()


def test_client_cancel_stops_the_engine_and_the_next_request_starts_at_once():
    model = FakeModel(step_s=0.25, block_s=0.005)  # a "block" is 5 ms
    with ServerThread(test_config(), model) as st:
        ch, stub = stub_for(st)
        a = stub.Generate(req(steps=40), timeout=30)
        kinds = []
        for m in a:
            kinds.append(m.WhichOneof("event"))
            if kinds[-1] == "step":
                break
        b = stub.Generate(req(steps=1), timeout=30)
        assert next(b).queued.position == 1
        t_cancel = time.perf_counter()
        a.cancel()
        started = next(b)
        t_started = time.perf_counter()
        assert started.HasField("started")
        # the fake polls its token every 5 ms ("a block"); allow for a loaded CI machine
        assert model.cancelled_at and model.cancelled_at[0] - t_cancel < 0.2
        assert t_started - t_cancel < 0.5
        assert list(b)[-1].HasField("done")
        assert wait_until(lambda: st.server.metrics.value(
            "qwen_edge_generations_total", {"outcome": "cancelled"}) == 1)
        assert model.max_active == 1
        ch.close()


def test_a_client_that_stops_reading_is_cancelled_after_the_write_timeout():
    """A stalled reader would keep the engine (and its images) forever: once a message has
    waited write_timeout_s for the client, the call is cancelled and the engine freed."""
    model = FakeModel(step_s=0.001)
    cfg = test_config(server={"write_timeout_s": 0.3})
    with ServerThread(cfg, model) as st:
        ch, stub = stub_for(st)
        with ch:
            # two 2048x2048 RAW_RGB8 images: 24 MB, past what the client's transport takes in
            # without the application reading
            stalled = stub.Generate(req(width=2048, height=2048, steps=2, num_images=2,
                                        output_format=pb.IMAGE_FORMAT_RAW_RGB8), timeout=30)
            assert wait_until(lambda: st.server.metrics.value(
                "qwen_edge_generations_total", {"outcome": "stalled"}) == 1, timeout=10)
            with pytest.raises(grpc.RpcError) as ei:  # once it reads again: the status
                list(stalled)
            assert ei.value.code() == grpc.StatusCode.CANCELLED
            assert "write_timeout_s" in ei.value.details()
            assert list(stub.Generate(req(steps=1), timeout=10))[-1].HasField("done")
            assert st.server.metrics.value("qwen_edge_in_flight") == 0


def test_deadline_stops_the_engine_promptly():
    model = FakeModel(step_s=0.25, block_s=0.005)
    with ServerThread(test_config(), model) as st:
        ch, stub = stub_for(st)
        t0 = time.perf_counter()
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.Generate(req(steps=40), timeout=0.6))
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
        assert wait_until(lambda: model.active == 0, timeout=1.0)
        assert model.cancelled_at and model.cancelled_at[0] - t0 < 0.6 + 0.4
        assert wait_until(lambda: st.server.metrics.value(
            "qwen_edge_generations_total", {"outcome": "deadline_exceeded"}) == 1)
        rs = list(stub.Generate(req(steps=1), timeout=5))  # the engine is free again
        assert rs[-1].HasField("done")
        ch.close()


def _refused_for_deadline(call) -> grpc.RpcError:
    e, _ = _refused(call, "WOULD_MISS_DEADLINE")
    assert "deadline" in e.details()
    return e


def test_deadline_admission_refuses_what_cannot_finish_in_time():
    model = FakeModel(step_s=0.05)
    with ServerThread(test_config(), model) as st:
        ch, stub = stub_for(st)
        for _ in range(2):  # two generations measure the engine's speed
            assert list(stub.Generate(req(steps=2), timeout=10))[-1].HasField("done")
        n_calls = len(model.calls)
        _refused_for_deadline(stub.Generate(req(steps=20), timeout=0.3))  # needs ~1 s
        assert len(model.calls) == n_calls  # the engine never saw it
        assert list(stub.Generate(req(steps=20), timeout=10))[-1].HasField("done")
        # behind a long generation, a short request with a short deadline is refused too
        a = stub.Generate(req(steps=30), timeout=20)
        assert next(a).HasField("queued") and next(a).HasField("started")
        _refused_for_deadline(stub.Generate(req(steps=1), timeout=0.5))
        assert list(stub.Generate(req(steps=1), timeout=10))[-1].HasField("done")  # time enough
        assert list(a)[-1].HasField("done")
        assert st.server.metrics.value("qwen_edge_generations_total", {"outcome": "rejected"}) == 2
        ch.close()


def test_deadline_admission_can_be_turned_off():
    model = FakeModel(step_s=0.05)
    with ServerThread(test_config(server={"deadline_admission": False}), model) as st:
        ch, stub = stub_for(st)
        for _ in range(2):
            list(stub.Generate(req(steps=2), timeout=10))
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.Generate(req(steps=20), timeout=0.3))
        assert ei.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED  # admitted, then stopped
        ch.close()


def test_an_idle_engine_frees_its_kept_memory():
    """Generations keep their activation memory for the next one; the server frees it
    (model.trim) once the engine has been idle for model.idle_trim_s, not during a burst."""
    model = FakeModel(step_s=0.01)
    with ServerThread(test_config(model={"idle_trim_s": 0.4}), model) as st:
        ch, stub = stub_for(st)
        for _ in range(4):  # back to back, well within 0.4 s of each other
            assert list(stub.Generate(req(steps=2), timeout=10))[-1].HasField("done")
        assert model.trims == []
        end = time.monotonic() + 10
        while not model.trims and time.monotonic() < end:
            time.sleep(0.02)
        assert len(model.trims) == 1 and model.trims[0] - model.finished_at[-1] >= 0.35
        time.sleep(0.6)
        assert len(model.trims) == 1  # once per idle period
        ch.close()


def test_a_queued_client_that_leaves_frees_its_place():
    model = FakeModel(step_s=0.05)
    with ServerThread(test_config(server={"max_queue": 1}), model) as st:
        ch, stub = stub_for(st)
        a = stub.Generate(req(steps=6), timeout=20)
        next(a)
        b = stub.Generate(req(steps=1), timeout=20)
        assert next(b).queued.position == 1
        b.cancel()
        assert wait_until(lambda: st.server.adapter.queue_depth == 0, timeout=2)
        c = stub.Generate(req(steps=1), timeout=20)  # would be RESOURCE_EXHAUSTED otherwise
        assert next(c).queued.position == 1
        assert list(c)[-1].HasField("done") and list(a)[-1].HasField("done")
        assert len(model.calls) == 2
        ch.close()


@pytest.mark.parametrize("exc,code,reason", [
    (_engine.OutOfMemory(4, "arena: out of memory"), grpc.StatusCode.RESOURCE_EXHAUSTED,
     "OUT_OF_MEMORY"),
    (_engine.Unsupported(5, "no such ISA"), grpc.StatusCode.FAILED_PRECONDITION, "UNSUPPORTED"),
    (RuntimeError("secret internals"), grpc.StatusCode.INTERNAL, "INTERNAL"),
])
def test_engine_errors_map_to_status_codes(exc, code, reason):
    model = FakeModel(fail_with=exc)
    with ServerThread(test_config(), model) as st:
        ch, stub = stub_for(st)
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.Generate(req(), timeout=5))
        assert ei.value.code() == code
        assert "secret" not in ei.value.details()
        info = next(x for x in status_details(ei.value) if x.DESCRIPTOR.name == "ErrorInfo")
        assert info.reason == reason
        model.fail_with = None  # the server is still fine
        assert list(stub.Generate(req(), timeout=5))[-1].HasField("done")
        ch.close()


# ---- health: load and drain --------------------------------------------------------------


def test_health_and_unavailable_while_loading():
    model = FakeModel(load_s=1.0)
    st = ServerThread(test_config(), model).start(wait_loaded=False)
    try:
        ch, stub = stub_for(st)
        assert health(ch) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert health(ch, "") == health_pb2.HealthCheckResponse.NOT_SERVING
        for call in (lambda: list(stub.Generate(req(), timeout=5)),
                     lambda: stub.GetModelInfo(pb.GetModelInfoRequest(), timeout=5)):
            with pytest.raises(grpc.RpcError) as ei:
                call()
            assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
            assert any(d.DESCRIPTOR.name == "RetryInfo" for d in status_details(ei.value))
        watch = health_pb2_grpc.HealthStub(ch).Watch(
            health_pb2.HealthCheckRequest(service=SERVICE_NAME), timeout=10)
        seen = []
        for r in watch:
            seen.append(r.status)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                watch.cancel()
                break
        assert seen[0] == health_pb2.HealthCheckResponse.NOT_SERVING
        assert seen[-1] == health_pb2.HealthCheckResponse.SERVING
        assert list(stub.Generate(req(), timeout=5))[-1].HasField("done")
        ch.close()
    finally:
        st.stop(grace=0)


def test_drain_finishes_running_work_and_rejects_the_rest():
    model = FakeModel(step_s=0.05)
    st = ServerThread(test_config(), model).start()
    ch, stub = stub_for(st)
    try:
        a = stub.Generate(req(steps=12), timeout=20)  # ~0.6 s
        next(a)
        b = stub.Generate(req(steps=1), timeout=20)
        assert next(b).queued.position == 1
        stopper = threading.Thread(target=st.stop, kwargs={"grace": 10.0})
        stopper.start()
        assert wait_until(lambda: st.server.adapter.state == "draining")
        assert health(ch) == health_pb2.HealthCheckResponse.NOT_SERVING
        assert health(ch, "") == health_pb2.HealthCheckResponse.NOT_SERVING
        with pytest.raises(grpc.RpcError) as ei:
            list(b)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        with pytest.raises(grpc.RpcError) as ei:
            list(stub.Generate(req(), timeout=5))
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        rest = list(a)  # the running one completes within the grace period
        assert rest[-1].HasField("done")
        stopper.join(10)
        assert not stopper.is_alive()
    finally:
        ch.close()
        st.stop(grace=0)


def test_drain_cancels_running_work_after_the_grace_period():
    model = FakeModel(step_s=0.25, block_s=0.005)
    st = ServerThread(test_config(), model).start()
    ch, stub = stub_for(st)
    try:
        a = stub.Generate(req(steps=40), timeout=30)
        next(a)
        next(a)
        t0 = time.perf_counter()
        stopper = threading.Thread(target=st.stop, kwargs={"grace": 0.3})
        stopper.start()
        with pytest.raises(grpc.RpcError) as ei:
            list(a)
        assert ei.value.code() == grpc.StatusCode.UNAVAILABLE
        stopper.join(10)
        assert time.perf_counter() - t0 < 3.0
        assert model.active == 0 and model.cancelled_at
    finally:
        ch.close()
        st.stop(grace=0)
