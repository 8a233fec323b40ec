"""Classical pre-segmentation: thresholds, region growing, k-means / EM clustering, watershed,
and the lungs of a CT (:func:`lungs_ct`).

Each function takes an image (``(Z, Y, X)`` or ``(Y, X)``, intensities such as HU) and returns a
label map (``np.uint8`` unless more than 255 classes/markers) that the annotator then corrects.
Clustering classes are numbered 1..n by increasing mean intensity; 0 is "not classified" (outside
``mask``, and by default the air around the body: see :func:`outside_air_mask`).

Large volumes (a 512 x 512 x 400 CT) are handled without whole-volume calls that hold Python's
GIL for long (``np.bincount``, ``np.unique`` with inverse): these functions run in GUI worker
threads, and such a call would freeze the viewer although it runs in the background.

Concern of this module: the one place to import pre-segmentation from. It holds no code; it
re-exports the functions and constants of its parts (imports run one way, parts never import
this module):

======================  ========================================================================
presegment_intensity    window / (multi-)Otsu threshold, region growing, marker watershed,
                        intensity window, window-constrained painting
presegment_air          the air around the body (:func:`air_threshold`, :func:`outside_air_mask`)
presegment_clustering   k-means and Gaussian mixture (EM) clustering, :func:`import_clustering`
presegment_lungs        the lungs of a CT (:func:`lungs_ct`) and its tuning constants
_presegment_common      helpers shared by the above (label dtype, mask check, CT recognition)
======================  ========================================================================
"""

from __future__ import annotations

from napari_medseg.editing.presegment_air import (
    AIR_RANGE_FRACTION,
    CT_AIR_HU,
    air_threshold,
    outside_air_mask,
)
from napari_medseg.editing.presegment_clustering import (
    MAX_FIT_SAMPLES,
    gmm_segment,
    import_clustering,
    kmeans_segment,
)
from napari_medseg.editing.presegment_intensity import (
    constrain_paint,
    intensity_mask,
    region_grow,
    threshold_segment,
    watershed_segment,
)
from napari_medseg.editing.presegment_lungs import (
    GAS_INTERIOR_HU,
    LUNG_AIR_HU,
    LUNG_ANALYSIS_MM,
    MAX_AIRWAY_MM2,
    MIN_LUNG_CM2,
    MIN_LUNG_ML,
    SECOND_LUNG_FRACTION,
    lungs_ct,
)

__all__ = [
    "threshold_segment",
    "region_grow",
    "kmeans_segment",
    "gmm_segment",
    "watershed_segment",
    "intensity_mask",
    "constrain_paint",
    "outside_air_mask",
    "air_threshold",
    "import_clustering",
    "lungs_ct",
    # module constants (documented tuning, read as ``presegment.NAME``)
    "MAX_FIT_SAMPLES",
    "CT_AIR_HU",
    "AIR_RANGE_FRACTION",
    "LUNG_AIR_HU",
    "GAS_INTERIOR_HU",
    "LUNG_ANALYSIS_MM",
    "MIN_LUNG_ML",
    "MIN_LUNG_CM2",
    "SECOND_LUNG_FRACTION",
    "MAX_AIRWAY_MM2",
]
