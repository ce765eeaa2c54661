#!/usr/bin/env python3
"""The smallest useful qwen-edge client: stream one generation, save previews and the image.

    qwen-edge serve /path/to/model &            # or: qwen-edge demo-model /tmp/demo
    python examples/python_client.py "a lighthouse at dusk" --server 127.0.0.1:50051

Needs the qwen-edge package installed (for the generated stubs in edge_server._proto).
"""

import argparse
import pathlib

import grpc

from edge_server._proto import imagegen_pb2 as pb
from edge_server._proto import imagegen_pb2_grpc as pb_grpc


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("prompt")
    ap.add_argument("--server", default="127.0.0.1:50051", help="host:port or unix:/path")
    ap.add_argument("--out", default="image.png")
    ap.add_argument("--previews", default="previews", help="folder for per-step JPEGs")
    ap.add_argument("--steps", type=int, default=0, help="0 = the model's default")
    ap.add_argument("--seed", type=int)
    ap.add_argument("--token", help="bearer token, if the server wants one")
    args = ap.parse_args()

    request = pb.GenerateRequest(
        prompt=args.prompt,
        steps=args.steps,
        output_format=pb.IMAGE_FORMAT_PNG,
        preview=pb.PreviewOptions(format=pb.PREVIEW_FORMAT_JPEG, max_side=256),
    )
    if args.seed is not None:
        request.seed = args.seed
    metadata = [("authorization", f"Bearer {args.token}")] if args.token else []

    previews = pathlib.Path(args.previews)
    previews.mkdir(exist_ok=True)
    image = bytearray()
    with grpc.insecure_channel(args.server) as channel:
        stub = pb_grpc.ImageGenerationStub(channel)
        for response in stub.Generate(request, metadata=metadata, timeout=600):
            event = response.WhichOneof("event")
            if event == "queued":
                print(f"queued at position {response.queued.position}")
            elif event == "started":
                s = response.started
                print(f"started {s.width}x{s.height}, {s.steps} steps, seed {s.seed}")
            elif event == "step":
                s = response.step
                print(f"step {s.step}/{s.total_steps}  sigma {s.sigma:.3f}")
                if s.preview_image:
                    (previews / f"step{s.step:03d}.jpg").write_bytes(s.preview_image)
            elif event == "image_chunk":
                image += response.image_chunk.data  # chunks of <= 1 MiB, in order
                if response.image_chunk.last:
                    pathlib.Path(args.out).write_bytes(image)
                    print(f"saved {args.out}")
            elif event == "done":
                t = response.done.timings
                print(f"done in {t.total_ms:.0f} ms (denoise {t.denoise_ms:.0f} ms)")


if __name__ == "__main__":
    main()
