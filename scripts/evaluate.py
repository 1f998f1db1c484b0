#!/usr/bin/env python3
"""Same as ``vapsr-video eval``: PSNR/SSIM of VapSR weights on Set5, Set14 and B100.

Example: python scripts/evaluate.py --weights VapSR_X4.pth --sets Set5 Set14 --reference
"""

import sys

from vapsr_video.cli.evaluate import main
from vapsr_video.cli.main import run_guarded

if __name__ == "__main__":
    sys.exit(run_guarded(main, sys.argv[1:]))
