"""Learning components and their baselines (import as ``infragym.models``)."""
