"""Layer 4, the plugin contract: the kind base classes, the contexts they receive, the hook
specifications and the plugin manager."""
