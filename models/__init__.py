"""Recommender algorithms and the artifact format.

The bottom floor: imports numpy, scipy, implicit and scikit-learn only, never the service.
"""

from models.artifact import ArtifactError, ModelBundle, load, read_manifest, save
from models.base import Interactions, NotFittedError, Recommender, top_k
from models.blend import MODES, Blend
from models.content import ContentSimilarity
from models.factorization import ALS, BPR
from models.neighbours import CoPurchase, ItemKNN
from models.popularity import BuyAgain, Popularity

__all__ = [
    "ALS",
    "BPR",
    "MODES",
    "ArtifactError",
    "Blend",
    "BuyAgain",
    "CoPurchase",
    "ContentSimilarity",
    "Interactions",
    "ItemKNN",
    "ModelBundle",
    "NotFittedError",
    "Popularity",
    "Recommender",
    "load",
    "read_manifest",
    "save",
    "top_k",
]
