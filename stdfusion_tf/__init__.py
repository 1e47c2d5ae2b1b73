"""stdfusion-tf: STDFusionNet (Ma et al., IEEE TIM 2021) in Keras 3.

    from stdfusion_tf import load_model
    model = load_model("checkpoint/Fusion.model-29")   # TF1 release or .weights.h5
    fused = model((ir, vi))                            # [N, H, W, 1] in [-1, 1]
"""

from .checkpoints import load_model, read_weights, save_keras_weights
from .errors import InputError
from .model import ResBlock, STDFusionNet

__all__ = ["STDFusionNet", "ResBlock", "load_model", "read_weights",
           "save_keras_weights", "InputError"]
