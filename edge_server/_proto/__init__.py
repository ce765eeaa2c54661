"""Generated protobuf / gRPC code for protos/edge_server/_proto/imagegen.proto (qwen_edge.v1).

Never edit the *_pb2* files by hand: run `python protos/generate.py` (grpcio-tools pinned there).

Why committed rather than generated at build time: edge devices install the wheel (or the source
tree) without protoc or grpcio-tools, IDEs and type checkers see the .pyi, and API changes show up
in review as a diff of generated code. tests/test_server_protos.py regenerates into a temporary
folder and fails when these files are stale. The generated modules check the protobuf and grpcio
runtime versions at import; pyproject.toml's floors equal the generator's versions.

Only edge_server.service, edge_server.server, edge_server.client and the tests import this package.
"""
