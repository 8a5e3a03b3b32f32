"""The explore wing, above the run layer: tools over a trained generator.

`latent.py` image names, saved vectors, walks and variants; `projection.py` a photo into the
generator; `neighbours.py` the nearest training images and the copy flag; `synth.py` (with
`guardrails.py`) labelled synthetic training sets; `commands.py` the writers the CLI and the
server call. They read runs through `productgan.run` and score through `productgan.evaluator`.
"""
