"""napari-medseg: human-in-the-loop deep-learning segmentation of medical volumes.

Importing this package pulls in only the pure core (numpy); napari and Qt live in
``napari_medseg.ui`` and the npe2 entry points.
"""

__version__ = "0.1.0"

from napari_medseg.io.volume import Volume

__all__ = ["Volume", "__version__"]
