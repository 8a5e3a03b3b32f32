"""What a run is measured to be: `evaluation.py` scores its generator on held-out images (the
``evaluate`` command and its JSON reports), `html.py` the self-contained HTML page of a run
(``report``)."""
