#!/usr/bin/env bash
# CI: build examples/cpp_client against Debian's gRPC packages and run it against a live
# `qwen-edge serve` with the demo model (unix socket with a bearer token, then loopback TCP).
# Checks: the streamed final image equals the engine's own output for the same seed, previews
# arrive, a missing token is rejected, and SIGTERM stops the server cleanly (exit 0).
# Needs: Debian (apt-get), the qwen-edge package installed (pip install '.[test]').
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
PY=${PYTHON:-python3}

echo "== system packages"
need=()
for p in cmake g++ pkg-config libgrpc++-dev libprotobuf-dev protobuf-compiler protobuf-compiler-grpc; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
fi

echo "== build the C++ client"
gen=()
command -v ninja >/dev/null && gen=(-G Ninja)
cmake -S examples/cpp_client -B build/cpp_client "${gen[@]}" -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build/cpp_client >/dev/null
CLIENT=$ROOT/build/cpp_client/qwen_edge_client

WORK=$(mktemp -d)
SERVER_PID=
cleanup() {
  if [ -n "$SERVER_PID" ] && kill -0 "$SERVER_PID" 2>/dev/null; then
    kill -TERM "$SERVER_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$SERVER_PID" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$SERVER_PID" 2>/dev/null || true
  fi
  rm -rf "$WORK"
}
trap cleanup EXIT
cd "$WORK"  # import the installed package, not the source tree

echo "== demo model + server"
"$PY" -m edge_server demo-model "$WORK/demo" >/dev/null
echo "ci-robot-token" > "$WORK/token"
PORT=$("$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
QWEN_EDGE_AUTH_TOKENS=ci-robot-token "$PY" -m edge_server serve "$WORK/demo" \
  --listen "unix:$WORK/grpc.sock" --listen "127.0.0.1:$PORT" \
  --set generation.default_width=64 --set generation.default_height=64 \
  >"$WORK/server.log" 2>&1 &
SERVER_PID=$!

"$PY" - "$WORK/grpc.sock" <<'EOF'
import sys, time, grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
end = time.monotonic() + 60
while True:
    try:
        with grpc.insecure_channel(f"unix:{sys.argv[1]}") as ch:
            r = health_pb2_grpc.HealthStub(ch).Check(health_pb2.HealthCheckRequest(), timeout=2)
            if r.status == health_pb2.HealthCheckResponse.SERVING:
                break
    except grpc.RpcError:
        pass
    if time.monotonic() > end:
        sys.exit("the server did not become SERVING")
    time.sleep(0.2)
EOF

echo "== C++ client over the unix socket (token)"
"$CLIENT" --server "unix:$WORK/grpc.sock" --token-file "$WORK/token" --prompt "a robot arm" \
  --size 128x64 --steps 4 --seed 7 --out "$WORK/out/robot.png" --previews "$WORK/previews" \
  --timeout 120

echo "== C++ client over loopback TCP (token from the environment, two images, PNG previews)"
QWEN_EDGE_TOKEN=ci-robot-token "$CLIENT" --server "127.0.0.1:$PORT" --prompt "two cups" \
  -n 2 --steps 2 --seed 100 --out "$WORK/out/cups.png" --previews "$WORK/previews_png" \
  --preview-format png --timeout 120

echo "== a missing token is rejected"
set +e
"$CLIENT" --server "unix:$WORK/grpc.sock" --prompt "x" --out "$WORK/out/x.png" 2>"$WORK/denied.txt"
rc=$?
set -e
grep -q "UNAUTHENTICATED" "$WORK/denied.txt" || { cat "$WORK/denied.txt"; exit 1; }
[ "$rc" -eq 1 ] || { echo "expected exit 1 without a token, got $rc"; exit 1; }

echo "== check the images against the engine"
"$PY" - "$WORK" <<'EOF'
import sys
from pathlib import Path
import numpy as np
from PIL import Image
import edge_server
work = Path(sys.argv[1])
model = edge_server.load_model(work / "demo")
want = model.generate("a robot arm", width=128, height=64, steps=4, seed=7).images[0]
got = Image.open(work / "out" / "robot.png")
assert got.size == (128, 64), got.size
assert got.text.get("seed") == "7" and got.text.get("prompt") == "a robot arm", got.text
np.testing.assert_array_equal(np.asarray(got.convert("RGB")), np.asarray(want))
cups = model.generate("two cups", width=64, height=64, steps=2, seed=100, num_images=2).images
for i in range(2):
    np.testing.assert_array_equal(
        np.asarray(Image.open(work / "out" / f"cups-{i}.png").convert("RGB")), np.asarray(cups[i]))
prev = sorted(p.name for p in (work / "previews").iterdir())
assert prev and all(p.endswith(".jpg") for p in prev), prev
assert any(p.endswith(".png") for p in (q.name for q in (work / "previews_png").iterdir()))
print(f"images match the engine; {len(prev)} JPEG previews written")
EOF

echo "== SIGTERM: clean shutdown"
kill -TERM "$SERVER_PID"
set +e
wait "$SERVER_PID"
rc=$?
set -e
SERVER_PID=
if [ "$rc" -ne 0 ]; then
  cat "$WORK/server.log"
  echo "server exited with $rc"
  exit 1
fi
grep -q "stopped" "$WORK/server.log"
[ ! -e "$WORK/grpc.sock" ]
echo "== C++ client OK"
