"""robustmap: how far a pretrained image classifier can be trusted, per class and per model.

One module per concept; see docs/architecture.md for the map.
"""

__version__ = "0.1.0"
