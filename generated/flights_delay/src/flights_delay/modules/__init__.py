"""Composable model components, one concept per module (template-owned).

Shape legend used in every docstring: B batch, F feature vectors, D embedding dim, E events, X experts.
"""
