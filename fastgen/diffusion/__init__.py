"""The diffusion processes, one module per family: pure torch math that never imports a network.

A *predictor* is any callable; the samplers only call it. Each module documents the predictor
signature it expects.
"""
