"""The bundled codecs' training recipes, registered in ``vqcodec.train.config.RECIPES`` on import.

One module per codec, each with a ``build(config)`` builder and an ``export(module, config, trainer)``
hook: ``image`` (residual-VQ image codec), ``image_sq`` (scalar-quantized image codec), ``video``
(temporal part on top of an image model). Their configs are in ``vqcodec/train/configs/``.
"""

from vqcodec.train.recipes import image, image_sq, video

__all__ = ["image", "image_sq", "video"]
