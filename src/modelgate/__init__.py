"""Modelgate: a serverless release control plane for AI model configurations."""

__version__ = "0.1.0"
