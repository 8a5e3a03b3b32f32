"""The generator wing, below the run layer: what a trained generator is once it leaves training.

`export.py` the export format (model.safetensors + config.json, ``write_export`` /
``read_export``), `sampler.py` the Sampler (``Sampler.from_pretrained`` / ``save_pretrained``),
`latents.py` what names an image (seeded noise, labels, temperature), `statistics.py` measured
BatchNorm statistics, `card.py` and `card_sections.py` the model card, `grid.py` image grids and
PNGs, `output.py` images written to a file or folder, `onnx.py` the ONNX export. Nothing here
imports the training code, a run folder or the evaluator.
"""

from productgan.generator.sampler import Sampler, load_generator

__all__ = ["Sampler", "load_generator"]
