"""Activation: audiences evaluated on the profiles (omnistitch activate), docs/audiences.md."""
