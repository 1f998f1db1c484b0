"""Training VapSR from a folder of high-resolution images."""
