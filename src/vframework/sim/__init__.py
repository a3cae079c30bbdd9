"""Layer 1, the simulation core: the discrete-event engine, named random streams, units."""
