"""Metric-learning losses: each a plain function and a `keras.losses.Loss` class.

All take `y_true` = integer labels `[B]` or `[B, 1]` and `y_pred` = embeddings `[B, D]`.
The triplet family (triplet, quadruplet, angular), the pair losses (contrastive,
multi-similarity, lifted structure), the log-sum-exp losses (circle, N-pairs, NT-Xent,
SupCon) and the losses with trainable class weights (proxy-anchor, proxy-NCA, ArcFace,
CosFace, sub-center ArcFace: `class_weights.py` says where the weights live).
"""

from keras_triplet.losses.angular import AngularLoss, angular_loss
from keras_triplet.losses.base import MetricLoss
from keras_triplet.losses.circle import CircleLoss, circle_loss
from keras_triplet.losses.class_weights import ClassWeightLoss, ClassWeights
from keras_triplet.losses.contrastive import ContrastiveLoss, contrastive_loss
from keras_triplet.losses.lifted_structure import (
    GeneralizedLiftedStructureLoss,
    LiftedStructureLoss,
    generalized_lifted_structure_loss,
    lifted_structure_loss,
)
from keras_triplet.losses.margin_softmax import (
    ArcFaceLoss,
    CosFaceLoss,
    SubCenterArcFaceLoss,
    arcface_loss,
    cosface_loss,
    sub_center_arcface_loss,
)
from keras_triplet.losses.multi_similarity import MultiSimilarityLoss, multi_similarity_loss
from keras_triplet.losses.npairs import NPairsLoss, npairs_loss
from keras_triplet.losses.ntxent import NTXentLoss, ntxent_loss
from keras_triplet.losses.proxy import ProxyAnchorLoss, ProxyNCALoss, proxy_anchor_loss, proxy_nca_loss
from keras_triplet.losses.quadruplet import QuadrupletLoss, quadruplet_loss
from keras_triplet.losses.supcon import SupConLoss, supcon_loss
from keras_triplet.losses.triplet import TripletLoss, triplet_loss

__all__ = [
    "MetricLoss",
    "TripletLoss",
    "triplet_loss",
    "QuadrupletLoss",
    "quadruplet_loss",
    "AngularLoss",
    "angular_loss",
    # log-sum-exp family
    "CircleLoss",
    "circle_loss",
    "LiftedStructureLoss",
    "lifted_structure_loss",
    "GeneralizedLiftedStructureLoss",
    "generalized_lifted_structure_loss",
    "NPairsLoss",
    "npairs_loss",
    "NTXentLoss",
    "ntxent_loss",
    "SupConLoss",
    "supcon_loss",
    # pair losses
    "ContrastiveLoss",
    "contrastive_loss",
    "MultiSimilarityLoss",
    "multi_similarity_loss",
    # losses with trainable class weights (proxies, class centres)
    "ClassWeightLoss",
    "ClassWeights",
    "ProxyAnchorLoss",
    "proxy_anchor_loss",
    "ProxyNCALoss",
    "proxy_nca_loss",
    "ArcFaceLoss",
    "arcface_loss",
    "CosFaceLoss",
    "cosface_loss",
    "SubCenterArcFaceLoss",
    "sub_center_arcface_loss",
]
