"""The maths of tuneforge's Gaussian-process searcher: arrays in, arrays out, no Ray.

kernel.py (Matérn-5/2 ARD), gp.py (MAP fit, posterior), acquisition.py (log EI, UCB),
optimize.py (acquisition maximisation on mixed spaces), outputs.py (output warping),
bo.py (one step: observations in, the next point out). The Tune adapter is ``gp_searcher.py``.
"""
