"""Layer 6, a run: the scenario, the simulation built from it, results and reports."""
