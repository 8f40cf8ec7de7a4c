"""Plots and the self-contained run report that the evaluate step writes."""
