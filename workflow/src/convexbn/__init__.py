"""convexbn: exact convex programs for BatchNorm ReLU networks and the tools to reproduce the paper.

Objective convention used everywhere (docs/math.md §1):
    BN(h) = γ·Jh/‖Jh‖ + α·c·1,  c = 1/√n by default (the bias column of U'),
    objective = ½‖f(X) − Y‖²_F + (β/2) Σ_j (γ_j² + α_j² + ‖v_j‖²).
"""

__version__ = "0.1.0"
