#!/usr/bin/env python3
"""ClusterLab image builder: python3 build.py <verb> (build, config, stages, boot)."""

import sys
from pathlib import Path

# the node agent's packages: the builder checks the cards' cluster settings with their schema
sys.path.insert(1, str(Path(__file__).resolve().parent / "node"))

from clusterlab.cli import main  # noqa: E402

sys.exit(main())
