"""The streaming video pipeline: decode, upscale on the device, encode, keep everything else."""
