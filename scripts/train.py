#!/usr/bin/env python3
"""Train a VapSR model: the same as ``vapsr-video train`` (see ``--help``)."""

import sys

from vapsr_video.cli.main import main

sys.exit(main(["train", *sys.argv[1:]]))
