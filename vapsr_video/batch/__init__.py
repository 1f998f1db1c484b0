"""Resumable batch jobs over media archives, on every local device or on Ray."""
