#!/usr/bin/env python3
"""ClusterLab image builder: python3 build.py <verb> (build, config, stages, boot)."""

import sys

from clusterlab.cli import main

sys.exit(main())
