"""Applications served by trio-router: the reference Pet Store (petstore.py)."""
