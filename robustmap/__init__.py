"""robustmap: how far a pretrained image classifier can be trusted, per class and per model.

One module per concept; see docs/architecture.md for the map.
"""

__version__ = "0.1.0"

import os as _os

# TensorFlow prints start-up banners to every job's log unless told before its first import.
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
