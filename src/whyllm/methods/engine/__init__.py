"""The engine under the methods: what more than one method needs, written once.

* :mod:`~whyllm.methods.engine.args`: argument resolution (target/foil/top token, layer, head and
  position selection) with one error wording.
* :mod:`~whyllm.methods.engine.sweep`: recorded runs, metrics read off the residual stream, and the
  batched sweep that activation patching and causal tracing specialise with typed cells.
* :mod:`~whyllm.methods.engine.direct`: the direct-logit decomposition of the residual stream shared by
  components and attention.
* :mod:`~whyllm.methods.engine.sampling`: decoding settings and the distribution they sample from.
* :mod:`~whyllm.methods.engine.progress`: the one progress protocol of long methods.
* :mod:`~whyllm.methods.engine.registry`: the name -> entry table type every registry uses.

Method modules import from here (and from :mod:`whyllm.model`, :mod:`whyllm.results`), never from each
other.
"""
