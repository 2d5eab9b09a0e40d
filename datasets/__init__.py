"""Generators and loaders of data sets (import as ``infragym.datasets``)."""
