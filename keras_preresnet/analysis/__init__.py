"""Measurements of a built model: multiply-adds (flops) and layer responses (layer_responses)."""
