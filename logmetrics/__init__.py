"""logmetrics: LiteLLM proxy records -> Prometheus metrics and live terminal views.

Imports nothing outside the standard library, so that `logmetrics.litellm_callback` can be
imported inside LiteLLM's environment without logmetrics' own dependencies.
"""

__version__ = "0.1.0"
