"""stdfusion-tf: STDFusionNet (Ma et al., IEEE TIM 2021) in Keras 3.

    from stdfusion_tf import load_model
    model = load_model("checkpoint/Fusion.model-29")   # TF1 release or .weights.h5
    fused = model((ir, vi))                            # [N, H, W, 1] in [-1, 1]

Names are imported lazily, so that ``stdfusion_tf.metrics`` (NumPy/SciPy)
works without Keras or TensorFlow.
"""

import importlib

_EXPORTS = {
    "STDFusionNet": "model", "ResBlock": "model",
    "load_model": "loading", "read_weights": "loading",
    "save_keras_weights": "checkpoints", "InputError": "errors",
}
__all__ = sorted(_EXPORTS)


def __getattr__(name):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__),
                       name)
    raise AttributeError(f"module 'stdfusion_tf' has no attribute {name!r}")
