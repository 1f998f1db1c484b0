"""The VapourSynth filter: ``core.vapsr.Upscale`` and its pure-Python twin."""
