"""Network definitions; no I/O here."""

from productgan.models.dcgan import Discriminator, Generator, check_image_size, eval_mode, init_weights

__all__ = ["Generator", "Discriminator", "init_weights", "check_image_size", "eval_mode"]
