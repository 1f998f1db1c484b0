"""Image arithmetic: MATLAB-compatible resizing, colour conversions for metrics."""
