"""Ray actors that run the discovery loop (the only package that imports Ray). Arrives with the loop."""
