"""Input attribution: which parts of the input made the model produce a token, and how faithfully.

Methods (``method=``): ``saliency``, ``input_x_gradient``, ``integrated_gradients``, ``occlusion``,
``attention``, ``attention_rollout``, ``context_ablation``. Every result carries its faithfulness
(comprehensiveness, sufficiency, deletion AUC) unless turned off. See docs/attribution.md.
"""

from whyllm.methods.attribution.evaluate import evaluate
from whyllm.methods.attribution.explain import explain
from whyllm.methods.attribution.registry import METHODS, methods
from whyllm.methods.attribution.step import explain_step

__all__ = ["METHODS", "evaluate", "explain", "explain_step", "methods"]
