"""ferry: distributed, multi-backend image and block storage for edge clouds."""

__version__ = "0.1.0"
