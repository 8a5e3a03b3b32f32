"""A web page and REST API over an exported generator (``productgan serve``)."""

from productgan.serve.app import create_app, serve

__all__ = ["create_app", "serve"]
