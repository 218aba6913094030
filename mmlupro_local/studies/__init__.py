"""Studies that call the run: speed (bench) and how far two models diverge (divergence)."""
