from vapsr_video.cli.main import entry

entry()
