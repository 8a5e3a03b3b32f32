"""A web page and REST API over an exported generator (``productgan serve``)."""

from productgan.serve.app import DEFAULT_MAX_IMAGES, create_app, serve

__all__ = ["DEFAULT_MAX_IMAGES", "create_app", "serve"]
