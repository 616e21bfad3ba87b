"""ArcFace face alignment: 5 points from the 68-point layout, similarity-warped to the 112x112 template.

ArcFace models (insightface's ``w600k_r50``, ``glintr100``, ...) were trained on faces warped so that
the eye centres, nose tip and mouth corners land on fixed pixels of a 112x112 image; an embedding of a
face aligned any other way is measured off the training distribution. The template below is the
``arcface_dst`` reference of insightface (``python-package/insightface/utils/face_align.py``), the
5-point layout of Deng et al., "ArcFace: Additive Angular Margin Loss for Deep Face Recognition"
(CVPR 2019), inherited from SphereFace's 96x112 crop shifted by 8 px in x.
"""

from __future__ import annotations

import cv2
import numpy as np

#: Target pixels (x, y) in the 112x112 crop, in image order: the eye on the image's left (the subject's
#: right eye), the other eye, nose tip, left mouth corner, right mouth corner.
ARCFACE_TEMPLATE_112 = np.array(
    [
        [38.2946, 51.6963],
        [73.5318, 51.5014],
        [56.0252, 71.7366],
        [41.5493, 92.3655],
        [70.7299, 92.2041],
    ],
    dtype=np.float64,
)

ARCFACE_SIZE = 112


def five_points_from_68(points68: np.ndarray) -> np.ndarray:
    """(68, 2) iBUG points -> (5, 2) ArcFace points: eye centres (mean of 36-41, 42-47), nose tip 30,
    mouth corners 48 and 54 (the same layout a 5-point detector such as RetinaFace outputs)."""
    p = np.asarray(points68, dtype=np.float64)
    if p.shape != (68, 2):
        raise ValueError(f"expected (68, 2) landmarks, got {p.shape}")
    return np.stack([p[36:42].mean(0), p[42:48].mean(0), p[30], p[48], p[54]])


def similarity_transform(src: np.ndarray, dst: np.ndarray) -> np.ndarray:
    """Least-squares similarity mapping ``src`` onto ``dst`` as the 2x3 matrix for ``cv2.warpAffine``:
    Umeyama's estimator, the one insightface uses, computed by the project's one solver
    (:func:`talkface.core.alignment.estimate_similarity`)."""
    from talkface.core.alignment import estimate_similarity

    return estimate_similarity(src, dst)


def align_arcface(image: np.ndarray, points68: np.ndarray, size: int = ARCFACE_SIZE) -> np.ndarray:
    """Warp an RGB uint8 image so the face's 5 points sit on the ArcFace template (``size`` x ``size``).

    Pixels outside the source are black, as in insightface's ``norm_crop``.
    """
    template = ARCFACE_TEMPLATE_112 * (size / ARCFACE_SIZE)
    mat = similarity_transform(five_points_from_68(points68), template)
    return cv2.warpAffine(image, mat, (size, size), flags=cv2.INTER_LINEAR, borderValue=0.0)
