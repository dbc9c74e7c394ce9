"""Constants shared by the server tests."""

TOKEN = "test-token-0123456789"
BASE = "http://127.0.0.1:8000"
PROMPT = "When Mary and John went to the store, John gave a drink to"
CORRUPTED = "When Mary and John went to the store, Mary gave a drink to"
XSS = "</script><img src=x onerror=alert(1)><script>alert(2)</script> & \"quotes\""


def our_hooks(hf) -> int:
    """Forward hooks on ``hf`` other than transformers' own output-capturing ones.

    transformers 5 installs permanent ``output_capturing_hook``s the first time attention weights are
    requested (``output_attentions=True``); they are not whyllm's.
    """
    return sum(
        1 for m in hf.modules() for h in [*m._forward_hooks.values(), *m._forward_pre_hooks.values()]
        if "output_capturing_hook" not in getattr(h, "__qualname__", "")
    )
