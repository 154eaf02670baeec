"""CC-Tuning (docs/methods.md section 2): the cross-lingual connection, its training, the Transform Matrix
and fast inference.

* :mod:`.connection` - model-agnostic hooks (capture every layer's FFN output at p,
  add a vector after decoder layer 0 at p) and p from the chat template.
* :mod:`.decision` - the Decision Maker (L x d, no bias, Gumbel-softmax / argmax).
* :mod:`.training` - one training step on a batch of (x, y, x_en) triples.
* :mod:`.transform` - activations at p and the least-squares Transform Matrix.
* :mod:`.inference` - batched greedy decoding with the connection (matrix / oracle / none),
  reusing the KV cache for every position before p.
* :mod:`.loading` - :func:`load`: a trained model with its connection outside the pipeline
  (``from_pretrained`` alone gives the ``@none`` model).
"""

MODES = ("matrix", "oracle", "none")  # the connection's inference modes (evaluation rows cc_tuning@<mode>)

__all__ = ["MODES", "ConnectedModel", "load"]


def __getattr__(name):  # load / ConnectedModel on first use: the Snakefile reads MODES without importing torch
    if name in ("ConnectedModel", "load"):
        from . import loading

        return getattr(loading, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
