"""The audit tools: read a run's artifacts, never write the chain's. ``report`` (the run's
reproducibility page), ``explain`` (trace any id through the funnel), ``verify`` (the run's bytes
against a lock) and ``compare`` (two datasets side by side)."""
