"""python -m edge_server -> the qwen-edge CLI."""

import sys

from edge_server.cli import main

sys.exit(main())
