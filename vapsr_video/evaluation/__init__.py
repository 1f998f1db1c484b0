"""Measuring super-resolution quality the way the papers do."""
