"""Tables and figures that compare attacks and defenses (the privacy-utility trade-off of the
noise defenses): they read several attacks' results, so they sit above the attacks in the layer
order (tests/test_layers.py)."""
