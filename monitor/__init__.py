"""camnet: monitoring daemon for village cameras and WiFi access points."""

__version__ = "0.1.0"
