import sys

from vapsr_video.cli.main import main

sys.exit(main())
