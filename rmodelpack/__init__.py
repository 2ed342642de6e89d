"""rmodelpack: package a trained R model as a secure, autoscaled REST scoring service."""

__version__ = "0.1.0"
