"""``python -m vapsr_video.vapoursynth``: print the folder holding the native plugin.

For development installs: ``export VAPOURSYNTH_EXTRA_PLUGIN_PATH=$(python -m vapsr_video.vapoursynth)``.
"""

import sys

from vapsr_video.errors import VapsrError
from vapsr_video.vapoursynth.plugin import plugin_path

try:
    print(plugin_path().parent)
except VapsrError as exc:
    print(f"vapsr-video: error: {exc}", file=sys.stderr)
    sys.exit(exc.exit_code)
