"""The demo: benign synthetic pictures standing in for listed images."""
