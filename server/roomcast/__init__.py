"""roomcast: a real-time collaboration server on FastAPI."""

__version__ = "0.1.0"
