"""productgan: Deep Convolutional GANs for product imagery."""

from productgan.generator.sampler import Sampler, load_generator

__version__ = "0.1.0"
__all__ = ["load_generator", "Sampler", "__version__"]
